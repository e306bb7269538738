"""The model card (README.md) written beside an export: what the files are and the prompt contract."""

from __future__ import annotations

from typing import Any, Sequence

from t2g.task.prompts import PROMPT_VERSION, SYSTEM_PROMPT, user_message


def _parity_lines(parity: dict[str, Any] | None) -> list[str]:
    if not parity:
        return ["Parity check: not run."]
    hf, gg = parity["hf"], parity["gguf_side"]
    row = "| {} | {:.3f} | {:.3f} | {:.3f} | {} |"
    return [
        f"Parity check on {hf['n']} examples (threshold {parity['threshold']}, "
        f"{'passed' if parity['passed'] else 'FELL BEHIND on ' + ', '.join(parity['falls_behind_on'])}; "
        f"identical completions {parity['identical_completions']}/{hf['n']}):",
        "",
        "| runtime | JSON valid | entity F1 | relation F1 | texts/s |",
        "|---|---|---|---|---|",
        row.format("HF (transformers)", hf["json_valid"], hf["entity_f1"], hf["relation_f1"], _rate(hf)),
        row.format(f"GGUF {parity['gguf']}", gg["json_valid"], gg["entity_f1"], gg["relation_f1"], _rate(gg)),
    ]


def _per_gguf_lines(per_gguf: dict[str, Any] | None) -> list[str]:
    """What each exported GGUF costs against the HF model, on the parity examples."""
    if not per_gguf or len(per_gguf) < 2:
        return []
    lines = ["", "What each GGUF costs (same parity examples; differences from the HF model):", "",
             "| GGUF | JSON valid | entity F1 | relation F1 | tokens/s | passed |", "|---|---|---|---|---|---|"]
    for gguf, r in per_gguf.items():
        speed = f"{r['tokens_per_second']:.1f}" if r.get("tokens_per_second") else "-"
        lines.append(f"| {gguf} | {r['json_valid']:.3f} | {r['entity_f1']:.3f} ({-r['drop']['entity_f1']:+.3f}) | "
                     f"{r['relation_f1']:.3f} ({-r['drop']['relation_f1']:+.3f}) | {speed} | "
                     f"{'yes' if r['passed'] else 'NO: falls behind'} |")
    return lines


def _rate(side: dict[str, Any]) -> str:
    rate = side.get("texts_per_second")
    return f"{rate:.3f}" if rate else "-"


def render_card(name: str, source: str, ggufs: Sequence[str], has_modelfile: bool, hf_dir: str | None,
                adapter_dir: str | None, parity: dict[str, Any] | None, per_gguf: dict[str, Any] | None = None,
                tensor_types: str | None = None) -> str:
    example = user_message("Tim Cook is the CEO of Apple.", ["person", "organization"], ["works for"])
    files = [f"- `{g}`: GGUF for llama.cpp / Ollama" for g in ggufs]
    if tensor_types:
        files.append(f"- the k-quants' tensors matching `{tensor_types}` were given those types (`--tensor_types`), "
                     "the rest the quant's own mix")
    if has_modelfile:
        files.append("- `Modelfile`: Ollama recipe (chat template, stop tokens, system prompt, greedy decoding)")
    if hf_dir:
        files.append(f"- `{hf_dir}/`: merged Hugging Face weights")
    if adapter_dir:
        files.append(f"- `{adapter_dir}/`: the LoRA adapter alone (load on the base model)")
    files.append("- `parity.json`: HF vs the first GGUF on the same prompts (`parity-<quant>.json`: each further GGUF); "
                 "`export.json`: how this export was made")
    first = ggufs[0] if ggufs else "MODEL.gguf"
    return "\n".join([
        f"# {name}: a text-to-graph extractor",
        "",
        f"Exported by t2g from `{source}`. Prompt contract **{PROMPT_VERSION}**: query it exactly as it was trained.",
        "",
        "## Files", "", *files, "",
        "## Prompt contract", "",
        "A chat with two messages. The system message is (the Modelfile sets it by default):", "",
        "```text", SYSTEM_PROMPT, "```", "",
        "The user message lists the types, then the text, e.g.:", "",
        "```text", example, "```", "",
        "Types are passed as comma-separated lists on the `Entity types:` and `Relation types:` lines (with",
        "descriptions, one `- type: description` line per type). The answer is one JSON object",
        '`{"entities": [{"text", "type"}], "relations": [{"head", "tail", "type"}]}` using only the given',
        "types and spans copied from the text. Decode greedily (temperature 0, no repeat penalty).", "",
        "## Use", "",
        "```bash",
        "ollama create t2g -f Modelfile",
        f"python -c \"from t2g.infer.extractor import extract; print(extract(['Tim Cook leads Apple.'], ['person', 'organization'], ['works for'], model='{first}'))\"",
        "```", "",
        "## Parity", "", *_parity_lines(parity), *_per_gguf_lines(per_gguf), "",
    ])
