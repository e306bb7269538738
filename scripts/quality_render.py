"""The quality benchmark's Markdown (scripts/bench_quality.py): results.json's numbers as the tables of
results.md and of docs/results.md's generated section. Nothing here computes a result."""

from __future__ import annotations

import json
from pathlib import Path

from quality_budget import SOURCES
from quality_report import DIAG_METRICS, PAIRS
from quality_stages import ROW_LABEL, ROWS, SEEDED_C

# Rows in reading order: the controls first, then GRPO.
DISPLAY = ("base", "sft", "sft_more", *(k for k in ROWS if k.startswith("grpo")))
CONDITION_LABEL = {"renamed": "renamed types (synonyms never trained on)", "subset": "asked subsets (some types left out)",
                   "distractor": "distractor types that do not occur", "empty": "nothing fits (the answer is empty)"}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _steps(key: str, r: dict) -> str:
    return "-" if key == "base" else f"{r['selected_step']} of {r['steps']}"


def render(results: dict) -> str:
    rows, sizes = results["rows"], results["sizes"]
    lines = [f"Generated {results['finished']} by `{results['command']}` (seed {results['seed']}, "
             f"{'QUICK mode: a few examples, numbers meaningless' if results['quick'] else 'full run'}).", ""]
    lines += test_table(rows, results["seed_spread"])
    lines += conditions_tables(rows, results["seed_spread"], results["conditions"])
    lines += intervals(results["significance"])
    lines += verdict_lines(results["verdict"])
    lines += selection_table(rows)
    lines += parity_table(rows, sizes)
    lines += timing_table(rows)
    lines += diagnostics_table(results["grpo_diagnostics"])
    if results["images"]:
        lines += ["", "### Curves", ""] + [f"![{Path(p).stem}]({p})" for p in results["images"]]
    lines += ["", "### Settings (as run)", "", "```json", json.dumps({"sizes": sizes, **results["settings"]}, indent=1), "```",
              "", "### Hardware and versions", "", "```json",
              json.dumps({"hardware": results["hardware"], "versions": results["versions"]}, indent=1), "```"]
    return "\n".join(lines) + "\n"


def test_table(rows: dict, spread: dict) -> list[str]:
    lines = [f"### CoNLL04 test ({rows['base']['test']['n']} sentences), GGUF q8_0 through llama.cpp, greedy", "",
             "| row | entity F1 | relation F1 | relation F1, lenient (boundaries) | JSON valid | out-of-schema | "
             "hallucinated spans | train steps (selected of run) | wall time (stage) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in DISPLAY:
        r, t = rows[key], rows[key]["test"]
        lines.append(f"| {ROW_LABEL[key]} | {_pct(t['entity_f1'])} | {_pct(t['relation_f1'])} | "
                     f"{_pct(t['relation_boundaries_f1'])} | {_pct(t['json_valid_rate'])} | {_pct(t['out_of_schema_rate'])} | "
                     f"{_pct(t['hallucinated_span_rate'])} | {_steps(key, r)} | {r['timing']['stage_wall_s'] / 60:.1f} min |")
    e, rel = spread["test"]["entity_f1"], spread["test"]["relation_f1"]
    return lines + ["", f"(c) over its {rel['n']} seeds: entity F1 {_pct(e['mean'])} ± {_pct(e['sd'])}, strict relation F1 "
                        f"{_pct(rel['mean'])} ± {_pct(rel['sd'])} (mean ± sample standard deviation; range "
                        f"{_pct(rel['min'])} to {_pct(rel['max'])}).", "",
                    "All numbers are micro-averaged percentages from `t2g.task.scoring` (strict: text and type of every "
                    "entity; head, tail, relation type and both endpoint types of every relation). Out-of-schema is over "
                    "predicted entities + relations, hallucinated spans over predicted entities."]


def conditions_tables(rows: dict, spread: dict, info: dict) -> list[str]:
    lines = ["", "### Type conditioning (t2g.eval.conditions, from CoNLL04 test, seed "
             f"{info.get('seed')}; `t2g type-conditions` writes the same sets)", "",
             "Off-list is the share of predicted types that are not in the prompt's lists (unconstrained decoding); "
             "empty answers the share of sentences answered with the empty graph."]
    for name in rows["sft"]["conditions"]:
        n = rows["sft"]["conditions"][name]["n"]
        lines += ["", f"**{CONDITION_LABEL.get(name, name)}** ({n} sentences)", "",
                  "| row | entity F1 | relation F1 | off-list types | empty answers | JSON valid |", "|---|---:|---:|---:|---:|---:|"]
        for key in DISPLAY:
            c = rows[key]["conditions"][name]
            lines.append(f"| {ROW_LABEL[key]} | {_pct(c['entity_f1'])} | {_pct(c['relation_f1'])} | "
                         f"{_pct(c['out_of_schema_rate'])} | {_pct(c['empty_answer_rate'])} | {_pct(c['json_valid_rate'])} |")
        s = spread["conditions"][name]
        lines.append(f"| (c), mean ± sd of {len(SEEDED_C)} seeds | "
                     + " | ".join(f"{_pct(s[m]['mean'])} ± {_pct(s[m]['sd'])}" if m in s else "n/a"
                                  for m in ("entity_f1", "relation_f1", "out_of_schema_rate", "empty_answer_rate")) + " | |")
    return lines


def intervals(sig: dict) -> list[str]:
    first = next(iter(sig["test"].values()))
    lines = ["", f"### Differences with {100 * first['confidence']:.0f}% intervals (paired bootstrap over sentences, "
                 f"{first['resamples']} resamples, `t2g compare`)", "",
             "Strict relation F1, B minus A, in points; the share of resamples where B is not better in brackets "
             "(the empty condition has no F1 to compare: see its empty-answer rates above).", "",
             "| B - A | " + " | ".join(sig) + " |", "|---|" + "---:|" * len(sig)]
    for b, a in PAIRS:
        cells = []
        for label in sig:
            r = sig[label][f"{b}-{a}"]["relation"]
            cells.append(f"{100 * r['delta']:+.1f} [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}] ({100 * r['p_b_not_better']:.0f}%)")
        lines.append(f"| {ROW_LABEL[b]} - {ROW_LABEL[a].split(' ')[0]} | " + " | ".join(cells) + " |")
    return lines


def verdict_lines(v: dict) -> list[str]:
    def met(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    lo, hi = v["c_first_seed_interval"]
    off = ", ".join(f"{k} {_pct(x)}%" for k, x in v["best_row_off_list"].items()) or "n/a"
    return ["", "### Verdict against the issue's targets (computed by the script)", "",
            f"- Best row on CoNLL04 test: {ROW_LABEL[v['best_row']]}, strict relation F1 {_pct(v['best_relation_f1'])} "
            f"(target >= 50): {met(v['target_50_met'])}.",
            f"- (c), mean of its seeds, minus (b+): {v['c_mean_minus_b_more']:+.1f} points (first seed's 95% interval "
            f"{lo:+.1f} to {hi:+.1f}; target >= +2 with every seed's interval above zero): {met(v['target_plus2_met'])}. "
            f"(c) minus (b): {v['c_mean_minus_b']:+.1f} points.",
            f"- Hardest type-conditioning condition for (b+): {v['hardest_condition']}; (c) minus (b+) there "
            f"{v['hardest_c_minus_b_more']:+.1f} points (target >= +5): {met(v['target_hardest_plus5_met'])}.",
            f"- Off-list types of the best row: {off} (target <= 5% on renamed and distractor): {met(v['target_off_list_met'])}.",
            f"- {budget_line(v['b_more_budget'])}"]


def budget_line(check: dict) -> str:
    """(b+)'s training-time budget beside the time (c)'s first run trained (quality_budget.budget_check)."""
    if check["budget_s"] is None:  # --more_sft_steps: a step count, so no time to set beside (c)'s
        return (f"(b+) trained {check['steps']} SFT steps ({SOURCES[check['budget_from']]}): not (c)'s time-matched "
                f"control; (c)'s first run trained {check['grpo_train_s']:.0f} s.")
    return (f"(b+) trained SFT for a budget of {check['budget_s']:.0f} s ({SOURCES[check['budget_from']]}); "
            f"(c)'s first run trained {check['grpo_train_s']:.0f} s: budget / (c) = {check['budget_over_grpo']}.")


def selection_table(rows: dict) -> list[str]:
    lines = ["", f"### Dev subset ({rows['base']['dev']['n']} sentences): model selection", "",
             "| row | candidates (step: dev relation F1 / entity F1) | selected |", "|---|---|---:|",
             f"| {ROW_LABEL['base']} | (no training) {_pct(rows['base']['dev']['relation_f1'])} / "
             f"{_pct(rows['base']['dev']['entity_f1'])} | - |"]
    for key in DISPLAY[1:]:
        cands = ", ".join(f"{c['step']}: {_pct(c['dev']['relation_f1'])} / {_pct(c['dev']['entity_f1'])}"
                          for c in rows[key]["candidates"])
        lines.append(f"| {ROW_LABEL[key]} | {cands} | step {rows[key]['selected_step']} |")
    return lines


def parity_table(rows: dict, sizes: dict) -> list[str]:
    lines = ["", f"### HF vs GGUF agreement (the export's parity check, first {sizes['parity_limit']} test sentences)", "",
             "| row | JSON valid HF / GGUF | entity F1 HF / GGUF | relation F1 HF / GGUF | identical completions | "
             "passed (5-point threshold) | HF / GGUF sentences per s |", "|---|---|---|---|---:|---|---|"]
    for key in DISPLAY:
        p = rows[key]["parity"]
        lines.append(f"| {ROW_LABEL[key]} | {_pct(p['hf']['json_valid'])} / {_pct(p['gguf']['json_valid'])} | "
                     f"{_pct(p['hf']['entity_f1'])} / {_pct(p['gguf']['entity_f1'])} | "
                     f"{_pct(p['hf']['relation_f1'])} / {_pct(p['gguf']['relation_f1'])} | "
                     f"{_pct(p['identical_completion_rate'])} | {p['passed']} | "
                     f"{p['hf']['texts_per_second']:.2f} / {p['gguf']['texts_per_second']:.2f} |")
    return lines


def timing_table(rows: dict) -> list[str]:
    lines = ["", "### Wall time per stage", "", "| stage | total | training (wall, CPU) | export + dev selection | "
             "test + conditions evaluation (generation) | load average (1 min) start / end |", "|---|---:|---:|---:|---:|---|"]
    for key in DISPLAY:
        r, tm = rows[key], rows[key]["timing"]
        cores = "/".join(str(n) for n in tm.get("train_threads", []))
        cpu = f", {tm['train_cpu_s']:.0f} s CPU" if tm.get("train_cpu_s") else ""
        train_s = f"{tm['train_s']:.0f} s on {cores} core(s){cpu}" if "train_s" in tm else "-"
        sel = f"{tm['select_s']:.0f} s" if "select_s" in tm else f"{tm.get('export_s', 0):.0f} s (export)"
        gen = r["test"]["generate_s"] + sum(c["generate_s"] for c in r["conditions"].values())
        lines.append(f"| {key} | {tm['stage_wall_s']:.0f} s | {train_s} | {sel} | {gen:.0f} s | "
                     f"{tm['loadavg_1min_start']} / {tm['loadavg_1min_end']} |")
    return lines


def diagnostics_table(diag: dict) -> list[str]:
    if not diag:
        return []
    lines = ["", "### GRPO diagnostics (the runs' log_history.json; mean over all steps / last 10 steps)", "",
             "| run | " + " | ".join(DIAG_METRICS) + " |", "|---|" + "---|" * len(DIAG_METRICS)]
    for key, d in diag.items():
        lines.append(f"| {key} | " + " | ".join(f"{_fmt(d[m]['mean'])} / {_fmt(d[m]['last10'])}" for m in DIAG_METRICS) + " |")
    return lines + ["", "`dynamic_sampling/flat_groups` is the share of a step's groups whose rewards were all equal "
                        "before refilling; `still_flat` after it (those are the dropped prompts' share: they carry no "
                        "gradient)."]
