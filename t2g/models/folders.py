"""What a folder on disk holds: a training run, a LoRA adapter, a merged HF model, a tokenizer.

Training writes these folders; inference, export and evaluation read them. Each question about a
folder (which adapter does a run serve? on which base model?) is answered here once.

    <run>/config.json            the run's resolved flags (its `model` is the base model)
    <run>/<stage>/adapter/       a stage's final LoRA adapter + tokenizer (grpo's is the final one)
    <run>/export/export.json     what the export stage wrote (its GGUFs, first one evaluated)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Training stages whose adapter a run serves, the most final first.
FINAL_FIRST = ("grpo", "sft")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def is_hf_model(folder: Path) -> bool:
    """A transformers model folder: a config.json that names a model type or architecture."""
    data = _json(Path(folder) / "config.json")
    return isinstance(data, dict) and ("model_type" in data or "architectures" in data)


def is_adapter(folder: Path) -> bool:
    return (Path(folder) / "adapter_config.json").is_file()


def has_tokenizer(folder: str | Path) -> bool:
    return any((Path(folder) / name).is_file() for name in TOKENIZER_FILES)


def adapter_base_model(adapter: Path) -> str | None:
    """The base model a PEFT adapter names in its adapter_config.json."""
    data = _json(Path(adapter) / "adapter_config.json")
    base = data.get("base_model_name_or_path") if isinstance(data, dict) else None
    return base if isinstance(base, str) and base else None


@dataclass(frozen=True)
class RunDir:
    """A training run directory (what `t2g.train.runs` writes), read back."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def is_run(self) -> bool:
        """A run has a config.json of flags (an HF model folder's config.json names a model type)."""
        return isinstance(_json(self.path / "config.json"), dict) and not is_hf_model(self.path)

    def adapter_dir(self, stage: str) -> Path:
        return self.path / stage / "adapter"

    def final_adapter(self) -> Path | None:
        """The adapter the run serves: the last training stage's that finished saving one."""
        for stage in FINAL_FIRST:
            if is_adapter(self.adapter_dir(stage)):
                return self.adapter_dir(stage)
        return None

    def recorded_model(self) -> str | None:
        """The base model as the run's flags named it (`embedded:smollm2` stays as written)."""
        if not self.is_run():
            return None
        value = _json(self.path / "config.json").get("model")
        return value if isinstance(value, str) and value else None

    def base_model(self) -> str | None:
        """The base model as a loadable name: aliases resolved the way training resolved them."""
        from t2g.models.names import resolve_model_name

        name = self.recorded_model()
        return resolve_model_name(name) if name else None

    def exported_ggufs(self) -> list[Path]:
        """The GGUFs the export stage wrote, in the order it lists them (the first is the one evaluated)."""
        manifest = _json(self.path / "export" / "export.json")
        names = manifest.get("ggufs", []) if isinstance(manifest, dict) else []
        return [self.path / "export" / name for name in names]


# Where other tools save a model inside a folder (not a t2g run's layout); looked at after a run's adapter.
MODEL_SUBDIRS = ("final", "merged", "adapter")


def model_folders(folder: str | Path) -> list[Path]:
    """Where the model to serve may sit in `folder`, most final first: the folder itself, a run's final
    adapter, then MODEL_SUBDIRS. Each may hold an adapter or an HF model; the first that does is it."""
    folder = Path(folder)
    run_adapter = RunDir(folder).final_adapter()
    return [folder] + ([run_adapter] if run_adapter else []) + [folder / sub for sub in MODEL_SUBDIRS]
