"""The `t2g` command line: `t2g <command> --flag=value ...`; `t2g <command> --help` lists a command's flags.

Every command is a flags dataclass (`t2g.flags`: each field's default, help and allowed values) and a
function of it. The commands that run a model live beside their code (`t2g.infer.extract_command`,
`t2g.eval.evaluate`, `t2g.eval.view`), `t2g generate`'s flags are `t2g.synth.config.GenerateConfig`; the small ones
are here. Fire reads the command line (`t2g.flags.read_command_line`). Bad input of any kind (a
misspelt flag, a value that does not fit, a file that is not what it should be) prints one line
`t2g: error: ...` and exits with status 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Callable

from t2g.flags import FlagError, flag, help_text, nearest, parse, read_command_line, wants_help


@dataclass
class ConvertFlags:
    """Convert a dataset (SpERT JSON, open-r1-text2graph rows, canonical JSONL) to canonical JSONL.

    Example: t2g convert --format spert --input ../shared/data/conll04/test.json --output test.jsonl
    """

    input: str = flag(help="a dataset file (.json, .jsonl), `examples` (the shipped ones) or a hub dataset name")
    output: str = flag(help="the canonical JSONL file to write")
    format: str = flag("auto", "the input's format: auto (sniffed from the file), canonical, or a converter's name "
                       "(spert, text2graph)")
    label_map: str | None = flag("auto", "SpERT labels -> type names: auto (known datasets), none (keep them), a "
                                 "map name (conll04, scierc, ade) or a JSON file")


def convert(flags: ConvertFlags) -> None:
    from t2g.data.canonical import DataError, write_jsonl
    from t2g.data.load import load_examples

    # Fire reads --label_map=None as Python's None; it means the map called none.
    examples = load_examples(flags.input, format=flags.format, label_map=flags.label_map or "none")
    try:
        n = write_jsonl(flags.output, examples)
    except OSError as exc:
        raise DataError(f"cannot write {flags.output}: {exc.strerror or exc} ({exc.filename})") from None
    print(f"wrote {n} examples to {flags.output}", file=sys.stderr)


@dataclass
class ScoreFlags:
    """Score predictions (`{"id", "graph"}` or `{"id", "completion"}` rows) against gold; prints JSON.

    Example: t2g score --gold test.jsonl --pred predictions.jsonl
    """

    gold: str = flag(help="the gold dataset (any format `t2g convert` reads)")
    pred: str = flag(help="the predictions: JSONL rows {id, graph} or {id, completion} (raw model output, parsed here)")


def score(flags: ScoreFlags) -> None:
    from t2g.data.load import load_examples
    from t2g.eval.predictions import read_predictions, score_predictions

    report = score_predictions(load_examples(flags.gold), read_predictions(flags.pred), source=flags.pred)
    print(json.dumps(report, indent=2))


@dataclass
class CompareFlags:
    """Is B better than A? F1 of both, B - A and its 95% interval from a paired bootstrap over the
    gold examples (entity, strict relation, lenient relation); prints JSON.

    Example: t2g compare --gold test.jsonl --pred_a sft/predictions.jsonl --pred_b grpo/predictions.jsonl
    """

    gold: str = flag(help="the gold dataset both prediction files answer")
    pred_a: str = flag(help="predictions of system A (the baseline)")
    pred_b: str = flag(help="predictions of system B")
    resamples: int = flag(1000, "bootstrap resamples of the gold examples")
    seed: int = flag(0, "the resampling seed")

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise FlagError(f"--resamples={self.resamples}: give a whole number of resamples, e.g. --resamples=1000")


def compare(flags: CompareFlags) -> None:
    from t2g.data.load import load_examples
    from t2g.eval.compare import paired_bootstrap
    from t2g.eval.predictions import read_predictions

    report = paired_bootstrap(load_examples(flags.gold), read_predictions(flags.pred_a), read_predictions(flags.pred_b),
                              resamples=flags.resamples, seed=flags.seed, sources=(flags.pred_a, flags.pred_b))
    print(json.dumps({"gold": flags.gold, "a": flags.pred_a, "b": flags.pred_b, **report}, indent=2))


def generate(flags: Any) -> None:
    from t2g.synth.generate import generate as run

    report = run(flags)
    if report["failed_rows"] or report.get("stopped_early"):
        sys.exit(1)  # the data is written, but incomplete: say so to scripts and CI


@dataclass
class ExportFlags:
    """Export a run directory, LoRA adapter or HF folder: merged HF, GGUF(s), Modelfile, parity.json, README.

    --llama_cpp: a llama.cpp folder (else $T2G_LLAMA_CPP, $UNSLOTH_LLAMA_CPP_PATH, ~/.unsloth/llama.cpp,
    the cache filled by `t2g fetch-llama-cpp`).

    Example: t2g export --model runs/smollm2-smoke --quant q8_0,q4_k_m   (writes runs/smollm2-smoke/export/)
    """

    model: str = flag(help="a run directory, a LoRA adapter or an HF model folder")
    out: str | None = flag(None, "the export folder (default: MODEL/export for a folder, else ./export)")
    quant: list[str] = flag(["q8_0"], "GGUF types: f32 f16 bf16 q8_0 (converter), q4_k_m q5_k_m q6_k ... (quantizer)")
    base_model: str | None = flag(None, "the base model under an adapter (default: the one it records)")
    llama_cpp: str | None = flag(None, "a llama.cpp folder with its converter (default: found, see above)")
    pretokenizer: str = flag("auto", "llama.cpp's pre-tokenizer name for an unknown tokenizer hash: auto (from the "
                             "tokenizer's structure), off, or a name")
    hf: bool = flag(True, "write the merged HF weights too")
    merged_dtype: str = flag("bf16", "dtype of the merged weights (bf16, fp16, fp32)")
    adapter_only: bool = flag(False, "copy the adapter alone, without merging")
    name: str | None = flag(None, "the GGUFs' file name stem (default: the run's or model folder's name)")
    parity_data: str = flag("examples", "the dataset the parity check extracts from")
    parity_limit: int = flag(20, "examples the parity check decodes (0 skips it)")
    parity_threshold: float = flag(0.05, "the F1 the GGUF may lose against the HF model")
    on_parity_fail: str = flag("fail", "what a failed parity check does", choices=("fail", "warn"))
    parity_max_new_tokens: int = flag(256, "tokens per parity completion")
    imatrix: str = flag("none", "k-quants (q4_k_m ...): none, or task: an importance matrix measured on --imatrix_data's "
                        "prompts and answers through the HF model (t2g.export.imatrix), so that the 4-bit error "
                        "lands where the task's inputs rarely reach", choices=("none", "task"))
    imatrix_data: str = flag("examples", "the dataset the importance matrix is measured on (any format t2g reads; "
                             "the model's own training data is best)")
    imatrix_limit: int = flag(64, "examples of --imatrix_data the matrix is measured on")
    tensor_types: str = flag("", "k-quants: PATTERN=TYPE,... gives the tensors whose GGUF name matches PATTERN (a regular "
                             "expression, e.g. ffn_down or attn_v) the type TYPE (q8_0, q6_k, f16 ...), as llama-quantize's "
                             "--tensor-type; a pattern that matches no tensor is an error")


def export(flags: ExportFlags) -> None:
    from dataclasses import asdict
    from pathlib import Path

    from t2g.export.pipeline import export_model

    options = asdict(flags)
    model, out = options.pop("model"), options.pop("out")
    target = Path(out) if out else (Path(model) / "export" if Path(model).is_dir() else Path("export"))
    manifest = export_model(model, target, **options)
    print(json.dumps({"out": str(target), **manifest}, indent=2))


@dataclass
class FetchLlamaCppFlags:
    """Unpack llama.cpp's GGUF converter from the llama-cpp-python source distribution (PyPI, not GitHub).

    Without --sdist it runs `pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==VERSION` (~77 MB);
    with --sdist it uses that .tar.gz. Nothing is compiled; an existing copy is kept unless --force.
    Example: t2g fetch-llama-cpp
    """

    sdist: str | None = flag(None, "a llama-cpp-python .tar.gz already downloaded")
    version: str | None = flag(None, "the llama-cpp-python version to download (default: the one the kit pins)")
    dest: str | None = flag(None, "where the converter goes (default: the kit's cache)")
    force: bool = flag(False, "replace an existing copy")


def fetch_llama_cpp(flags: FetchLlamaCppFlags) -> None:
    from t2g.export.llama_cpp import DEFAULT_SDIST_VERSION, fetch_llama_cpp as fetch

    found = fetch(sdist=flags.sdist, version=flags.version or DEFAULT_SDIST_VERSION, dest=flags.dest, force=flags.force)
    print(f"llama.cpp converter ready in {found.root}", file=sys.stderr)


# --- the commands: (flags dataclass, function, the errors that are the user's to fix) --------------

Command = tuple[type, Callable[[Any], None], tuple[type[BaseException], ...]]


def _data_command(cls: type, function: Callable[[Any], None]) -> Callable[[], Command]:
    return lambda: (cls, function, ())  # DataError and OSError are every command's


def _generate() -> Command:
    from t2g.synth.config import GenerateConfig

    return GenerateConfig, generate, ()


def _model_errors() -> tuple[type[BaseException], ...]:
    """Set-up failures of a model, a runtime or an endpoint; any ValueError is a bad flag value there."""
    from t2g.infer.backends import BackendError
    from t2g.models.offline import AssetError

    return BackendError, AssetError, ValueError


def _extract() -> Command:
    from t2g.infer.extract_command import ExtractFlags, main

    return ExtractFlags, main, _model_errors()


def _evaluate() -> Command:
    from t2g.eval.evaluate import EvaluateFlags, main

    return EvaluateFlags, main, _model_errors()


def _view() -> Command:
    from t2g.eval.view import ViewFlags, main

    return ViewFlags, main, ()


def _type_conditions() -> Command:
    from t2g.eval.conditions import ConditionsFlags, main

    return ConditionsFlags, main, ()


def _export_errors() -> tuple[type[BaseException], ...]:
    """Export failures (missing llama.cpp, unfaithful template, parity) as one message, not a traceback."""
    import subprocess

    from t2g.export.gguf import ExportError
    from t2g.export.llama_cpp import LlamaCppNotFound
    from t2g.export.merge import MergeError
    from t2g.export.modelfile import ModelfileError
    from t2g.export.parity import ParityError

    return ExportError, LlamaCppNotFound, MergeError, ModelfileError, ParityError, ValueError, subprocess.CalledProcessError


COMMANDS: dict[str, Callable[[], Command]] = {
    "convert": _data_command(ConvertFlags, convert),
    "score": _data_command(ScoreFlags, score),
    "compare": _data_command(CompareFlags, compare),
    "generate": _generate,
    "export": lambda: (ExportFlags, export, _export_errors()),
    "fetch-llama-cpp": lambda: (FetchLlamaCppFlags, fetch_llama_cpp, _export_errors()),
    "extract": _extract,
    "evaluate": _evaluate,
    "view": _view,
    "type-conditions": _type_conditions,
}


def usage() -> str:
    lines = ["usage: t2g <command> [--flag=value ...]   (t2g <command> --help lists its flags)", "", "commands:"]
    for name, load in COMMANDS.items():
        doc = (load()[0].__doc__ or "").strip().splitlines()
        lines.append(f"  {name:<16} {doc[0] if doc else ''}")
    return "\n".join(lines)


def _fail(message: object) -> None:
    print(f"t2g: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    from t2g.data.canonical import DataError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        _fail(f"unknown command {name!r}: {nearest(name, list(COMMANDS)).replace('--', '')}")
    cls, function, errors = COMMANDS[name]()
    prog = f"t2g {name}"
    if wants_help(rest):
        print(help_text(cls, prog))
        return
    try:
        function(parse(cls, read_command_line(rest, prog)))
    except (FlagError, DataError, *errors) as exc:
        _fail(exc)
    except OSError as exc:  # an unreadable or unwritable path: a message, not a traceback
        _fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else exc)


if __name__ == "__main__":
    main()
