"""The export stage: model (run dir, adapter, merged folder) -> merged HF, GGUFs, Modelfile, parity, card.

    <out>/hf/                   merged 16-bit HF weights (when the source has an adapter or is pre-quantized, and hf=True)
    <out>/adapter/              the adapter alone (adapter_only=True)
    <out>/<name>-<quant>.gguf   one per --quant; k-quants are made from a 16-bit GGUF
    <out>/Modelfile             Ollama recipe for the first GGUF
    <out>/parity.json           HF vs the first GGUF on the same prompts (the one the Modelfile runs)
    <out>/parity-<quant>.json   HF vs each further GGUF: what each quant costs, warned above the threshold
    <out>/imatrix.npz           the importance matrix k-quants were made with (--imatrix=task)
    <out>/README.md             model card: files and prompt contract
    <out>/export.json           written last: what was made and how (llama.cpp used, checks passed)

Every file appears complete or not at all (written under a hidden `.tmp` name, then renamed).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from t2g.export.gguf import (CONVERTER_TYPES, ExportError, TensorTypes, convert_hf_to_gguf, format_tensor_types, gguf_tokenize,
                             normalize_type, parse_tensor_types, quantize_gguf)
from t2g.export.llama_cpp import LlamaCpp, find_llama_cpp
from t2g.files import write_json_atomic, write_text_atomic
from t2g.task.prompts import PROMPT_VERSION


def _as_list(quant: str | Sequence[str] | None) -> list[str]:
    if quant is None or quant == "" or quant == ():
        return []
    items = quant.split(",") if isinstance(quant, str) else list(quant)
    out: list[str] = []
    for q in items:
        key = normalize_type(str(q))
        if key not in out:
            out.append(key)
    return out


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def _default_name(model: str) -> str:
    path = Path(model)
    if path.name in ("adapter", "final", "merged", "hf"):
        path = path.parent
    return _safe_name(path.name or str(model))


def _intermediate_type(hf_dir: Path) -> str:
    """The 16-bit GGUF a k-quant is made from: bf16 for bf16 weights (no f16 overflow), else f16."""
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "")
    return "bf16" if "bfloat16" in dtype else "f16"


def write_ggufs(hf_dir: Path, out: Path, name: str, quants: Sequence[str], llama_cpp: LlamaCpp,
                pretokenizer: str = "auto", calibration: Sequence[Any] = (),
                tensor_types: TensorTypes = ()) -> tuple[list[Path], str | None, str | None, dict | None]:
    """All model GGUFs (in request order), the pre-tokenizer name assumed, the tokenizer repair, if any,
    and the importance matrix's summary: with `calibration` examples, k-quants are made with a matrix
    measured on them (t2g.export.imatrix), kept as <out>/imatrix.npz; `tensor_types` (parse_tensor_types)
    overrides the k-quants' own type for the tensors it names."""
    paths: dict[str, Path] = {}
    imatrix_info = None
    fallback = None
    repairs: set[str | None] = set()
    for q in [q for q in quants if q in CONVERTER_TYPES]:
        result = convert_hf_to_gguf(hf_dir, out / f"{name}-{q}.gguf", q, llama_cpp, pretokenizer)
        paths[q], fallback = result.path, result.pretokenizer_fallback or fallback
        repairs.add(result.tokenizer_repair)
    kquants = [q for q in quants if q not in CONVERTER_TYPES]
    if kquants:
        base_type = _intermediate_type(hf_dir)
        # Quantize from the most precise GGUF already made; convert a 16-bit one only if none was asked for.
        base = next((paths[t] for t in ("f32", base_type, "f16", "bf16") if t in paths), None)
        temporary = base is None
        if temporary:
            result = convert_hf_to_gguf(hf_dir, out / f".{name}-{base_type}.intermediate", base_type, llama_cpp, pretokenizer)
            base, fallback = result.path, result.pretokenizer_fallback or fallback
            repairs.add(result.tokenizer_repair)
        try:
            matrix = None
            if calibration:
                from t2g.export.imatrix import summary, task_imatrix, write_imatrix

                print(f"t2g export: importance matrix from {len(calibration)} task examples", file=sys.stderr)
                values = task_imatrix(hf_dir, calibration, base, max_examples=len(calibration))
                matrix = write_imatrix(values, out / "imatrix.npz")
                imatrix_info = {"file": matrix.name, **summary(values, len(calibration))}
            for q in kquants:
                paths[q] = quantize_gguf(base, out / f"{name}-{q}.gguf", q, llama_cpp, imatrix=matrix, tensor_types=tensor_types)
        finally:
            if temporary:
                base.unlink(missing_ok=True)
    return [paths[q] for q in quants], fallback, next((r for r in repairs if r), None), imatrix_info


def check_tokenization(gguf: Path, tokenizer) -> dict[str, Any]:
    """llama.cpp must tokenize the rendered prompts exactly as HF does (else: wrong pre-tokenizer)."""
    import importlib.util

    from t2g.export.modelfile import sample_conversations

    if importlib.util.find_spec("llama_cpp") is None:
        return {"checked": False, "why": "llama-cpp-python is not installed"}
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in sample_conversations()]
    texts += ["Don't split 12345 or 3.14 wrongly:  double  spaces,\ttabs, ünïcödé, 東京 and emoji 🚀."]
    ours = gguf_tokenize(gguf, texts)
    for text, ids in zip(texts, ours):
        expected = tokenizer(text, add_special_tokens=False)["input_ids"]
        if ids != expected:
            raise ExportError(
                f"{gguf.name}: llama.cpp tokenizes differently from the HF tokenizer (first difference at token "
                f"{next((i for i, (a, b) in enumerate(zip(ids, expected)) if a != b), min(len(ids), len(expected)))} "
                f"of {text[:60]!r}...): the GGUF's pre-tokenizer is wrong. Pass the right one with --pretokenizer=NAME "
                "(llama.cpp's name, e.g. qwen2, llama-bpe, smollm)."
            )
    return {"checked": True, "texts": len(texts), "identical": True}


def _eos_ids(hf_dir: Path) -> list[int]:
    import json

    path = hf_dir / "generation_config.json"
    if not path.is_file():
        return []
    eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    return [eos] if isinstance(eos, int) else list(eos or [])


def _num_ctx(hf_dir: Path) -> int | None:
    import json

    n = json.loads((hf_dir / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    return min(int(n), 8192) if n else None


def export_model(
    model: str,
    out_dir: str | Path,
    *,
    quant: str | Sequence[str] = ("q8_0",),
    base_model: str | None = None,
    llama_cpp: str | None = None,
    pretokenizer: str = "auto",
    hf: bool = True,
    merged_dtype: str = "bf16",
    adapter_only: bool = False,
    name: str | None = None,
    parity_data: str = "examples",
    parity_limit: int = 20,
    parity_threshold: float = 0.05,
    on_parity_fail: str = "fail",
    parity_max_new_tokens: int = 256,
    imatrix: str = "none",
    imatrix_data: str = "examples",
    imatrix_limit: int = 64,
    tensor_types: str | Sequence[str] = "",
) -> dict[str, Any]:
    """Export `model` into `out_dir`; returns (and writes as export.json) what was made. `imatrix="task"`
    makes k-quants with an importance matrix measured on `imatrix_limit` examples of `imatrix_data`;
    `tensor_types` ("ffn_down=q8_0,attn_v=q8_0") gives the k-quants' matching tensors those types."""
    from t2g.export.merge import copy_adapter, is_prequantized, load_tokenizer, merge_to_hf
    from t2g.infer.resolve import resolve_model

    out = Path(out_dir)
    quants = _as_list(quant)
    if imatrix not in ("none", "task"):
        raise ExportError(f"--imatrix={imatrix!r}: use none or task (an importance matrix from --imatrix_data's prompts)")
    calibration = _calibration(imatrix, imatrix_data, imatrix_limit, quants)
    overrides = parse_tensor_types(tensor_types)
    if overrides and not [q for q in quants if q not in CONVERTER_TYPES]:
        raise ExportError(f"--tensor_types={format_tensor_types(overrides)} applies to k-quants (q4_k_m ...), and "
                          f"--quant={','.join(quants) or 'none'} has none: add one, or drop --tensor_types")
    spec = resolve_model(model, "hf", base_model=base_model)  # a run directory: its final adapter on its base
    if spec.gguf_file:
        raise ExportError(f"--model={model} is already a GGUF; export starts from an HF folder, adapter or run directory")
    name = _safe_name(name) if name else _default_name(model)
    manifest: dict[str, Any] = {"model": model, "base": spec.path, "adapter": spec.adapter, "prompt_version": PROMPT_VERSION,
                                "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if adapter_only:  # the adapter alone: no merge, no GGUF (llama.cpp would need the base as GGUF too)
        if not spec.adapter:
            raise ExportError(f"--adapter_only: {model} has no LoRA adapter (it is a full model)")
        copy_adapter(spec.adapter, out / "adapter")
        manifest["adapter_dir"] = "adapter"
        quants = []
    lc = find_llama_cpp(llama_cpp) if quants else None  # fail fast, before the (slow) merge
    if quants or (hf and (spec.adapter or is_prequantized(spec.path)) and not adapter_only):
        hf_dir = _hf_source(spec, out, hf and not adapter_only, merged_dtype, merge_to_hf)
        try:
            manifest.update(_gguf_outputs(hf_dir, out, name, quants, lc, pretokenizer, load_tokenizer(spec.path, spec.adapter),
                                          calibration, overrides))
            if manifest.get("ggufs") and parity_limit > 0:
                # The parity reference is exactly what was exported: the adapter on the resolved base.
                manifest["parity"] = _parity(spec.adapter or spec.path, spec.path if spec.adapter else None, out,
                                             manifest["ggufs"], parity_data, parity_limit,
                                             parity_threshold, on_parity_fail, parity_max_new_tokens)
        finally:
            if hf_dir.name.startswith(".merged"):
                shutil.rmtree(hf_dir, ignore_errors=True)
        if hf_dir.parent == out and hf_dir.name == "hf":
            manifest["hf_dir"] = "hf"
    _write_card_and_manifest(out, name, model, manifest)
    return manifest


def _hf_source(spec, out: Path, keep: bool, dtype: str, merge_to_hf) -> Path:
    """The HF folder to convert: the model itself when it is a plain, unquantized local folder (nothing
    to merge), else the adapter merged into its base, or a pre-quantized model dequantized (kept as
    `<out>/hf` when `keep`): llama.cpp's converter reads 16/32-bit weights only."""
    from t2g.export.merge import is_prequantized

    if not spec.adapter and Path(spec.path).is_dir() and not is_prequantized(spec.path):
        return Path(spec.path)
    target = out / "hf" if keep else out / f".merged-{int(time.time())}"
    print(f"t2g export: {'merging the adapter into' if spec.adapter else 'saving'} {dtype} weights -> {target}", file=sys.stderr)
    return merge_to_hf(spec.path, spec.adapter, target, dtype)


def _calibration(imatrix: str, data: str, limit: int, quants: Sequence[str]) -> list[Any]:
    """The examples an importance matrix is measured on; none unless asked for and a k-quant needs one."""
    if imatrix == "none" or not [q for q in quants if q not in CONVERTER_TYPES]:
        return []
    from t2g.data.load import load_examples

    if limit < 1:
        raise ExportError(f"--imatrix_limit={limit}: give at least 1 example to measure the importance matrix on")
    return load_examples(data)[:limit]


def _gguf_outputs(hf_dir: Path, out: Path, name: str, quants: list[str], lc: LlamaCpp | None, pretokenizer: str,
                  tokenizer, calibration: Sequence[Any] = (), tensor_types: TensorTypes = ()) -> dict[str, Any]:
    from t2g.export.modelfile import build_modelfile

    if not quants:
        return {}
    print(f"t2g export: {', '.join(quants)} with {lc.converter} (from {lc.source})", file=sys.stderr)
    ggufs, fallback, repair, imatrix = write_ggufs(hf_dir, out, name, quants, lc, pretokenizer, calibration, tensor_types)
    try:
        tokenization = check_tokenization(ggufs[0], tokenizer)
    except ExportError:
        for path in ggufs:  # complete files, but wrong ones: they must not look like a usable export
            path.unlink(missing_ok=True)
        raise
    modelfile = build_modelfile(tokenizer, ggufs[0].name, _eos_ids(hf_dir), _num_ctx(hf_dir))
    write_text_atomic(out / "Modelfile", modelfile)
    return {
        "ggufs": [g.name for g in ggufs],
        "llama_cpp": {"root": str(lc.root), "found_by": lc.source},
        "pretokenizer_fallback": fallback,
        "tokenizer_repair": repair,
        "tokenization": tokenization,
        "modelfile": "Modelfile",
        **({"imatrix": imatrix} if imatrix else {}),
        **({"tensor_types": format_tensor_types(tensor_types)} if tensor_types else {}),
    }


def _parity(model: str, base_model: str | None, out: Path, ggufs: Sequence[str], data: str, limit: int, threshold: float,
            on_fail: str, max_new_tokens: int) -> dict[str, Any]:
    """HF against every GGUF on the same examples (the HF side runs once). The first GGUF, the one the
    Modelfile runs, fails the export when it falls behind (unless on_fail="warn"); every further one
    is reported with what it costs and warned about. The last lines printed say it per GGUF."""
    from t2g.data.load import load_examples
    from t2g.export.parity import ParityError, check_parity, run_hf_side

    examples = load_examples(data)[:limit]
    print(f"t2g export: parity check, {len(examples)} examples, HF vs {', '.join(ggufs)}", file=sys.stderr)
    hf = run_hf_side(model, examples, max_new_tokens=max_new_tokens, base_model=base_model)
    per_gguf, failure = {}, None
    for i, gguf in enumerate(ggufs):
        path = out / ("parity.json" if i == 0 else f"parity-{Path(gguf).stem.rsplit('-', 1)[-1]}.json")
        try:
            report = check_parity(model, out / gguf, examples, path, threshold=threshold,
                                  on_fail=on_fail if i == 0 else "warn", max_new_tokens=max_new_tokens, hf=hf)
        except ParityError as exc:  # the report is written; the other GGUFs are still measured first
            failure, report = exc, json.loads(path.read_text(encoding="utf-8"))
        side = report["gguf_side"]
        per_gguf[gguf] = {"file": path.name, "passed": report["passed"], "drop": report["drop"],
                          "identical_completion_rate": report["identical_completion_rate"],
                          **{k: side[k] for k in ("json_valid", "entity_f1", "relation_f1", "tokens_per_second")}}
    for gguf, r in per_gguf.items():
        print(f"t2g export: {gguf}: relation F1 {r['relation_f1']:.3f} (HF {hf.report['relation_f1']:.3f}, "
              f"{-r['drop']['relation_f1']:+.3f}), entity F1 {r['entity_f1']:.3f} ({-r['drop']['entity_f1']:+.3f}), "
              f"JSON valid {r['json_valid']:.2f}, identical completions {r['identical_completion_rate']:.0%}"
              f"{'' if r['passed'] else ', FALLS BEHIND'}", file=sys.stderr)
    if failure is not None:
        raise failure
    first = per_gguf[ggufs[0]]
    return {"passed": first["passed"], "drop": first["drop"], "identical_completion_rate": first["identical_completion_rate"],
            "file": "parity.json", "threshold": threshold, "n": len(examples),
            "hf": {k: hf.report[k] for k in ("json_valid", "entity_f1", "relation_f1", "tokens_per_second")},
            "per_gguf": per_gguf}


def _write_card_and_manifest(out: Path, name: str, model: str, manifest: dict[str, Any]) -> None:
    from t2g.export.card import render_card

    parity_path = out / "parity.json"
    parity = json.loads(parity_path.read_text(encoding="utf-8")) if manifest.get("parity") else None
    card = render_card(name, model, manifest.get("ggufs", []), "modelfile" in manifest, manifest.get("hf_dir"),
                       manifest.get("adapter_dir"), parity, (manifest.get("parity") or {}).get("per_gguf"),
                       manifest.get("tensor_types"))
    write_text_atomic(out / "README.md", card)
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(out / "export.json", manifest)


def export_run(run_dir: str | Path, quant: str | Sequence[str] = ("q8_0",), parity_limit: int = 8, **options: Any) -> dict[str, Any]:
    """The recipe's export stage: everything into `<run_dir>/export/` (the run's adapter merged on its base)."""
    run_dir = Path(run_dir)
    return export_model(str(run_dir), run_dir / "export", quant=quant, parity_limit=parity_limit, **options)
