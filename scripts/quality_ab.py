"""Two quality-benchmark stages side by side: does B's change (SFT data, a flag, a training stage) beat A?

`scripts/bench_quality.py` compares its rows within one run. An experiment on the training data runs it
twice, into two --out folders that differ in one flag (say `--augment_distractors=builtin`), and asks
how the same stage of each scores on CoNLL04 test and on every type-conditioning set. Both runs build
their sets from the same data and seed, so the sentences pair up; the difference comes with the paired
bootstrap interval of `t2g compare` (t2g.eval.compare), and the off-list and empty-answer rates with it.

    python scripts/quality_ab.py --a /work/bench18aug/recipe --b /work/bench18aug/foreign            # stage sft
    python scripts/quality_ab.py --a RUN_A --b RUN_B --stage grpo --out ab.md                         # a file too
    python scripts/quality_ab.py --a RUN --b RUN --stage sft_more --stage_b grpo                      # two rows of one run

The last form asks what a row of one run adds over another ((c) over (b+)) when the run's report cannot be
written yet, because some of its rows have not run.

Prints a Markdown table (and, for a GRPO row, its run's logged diagnostics: reward, flat groups, completion
lengths); with --out also writes it (atomically). Reads each run's `<stage>/stage.json`
and predictions; a stage that has not finished, or sets that do not pair up, are an error naming them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from quality_budget import budget_check  # noqa: E402
from quality_render import budget_line, diagnostics_table  # noqa: E402
from quality_report import BOOTSTRAP_RESAMPLES as RESAMPLES, EMPTY, plot_grpo_curves, run_diagnostics  # noqa: E402  (the study's own, light)
from quality_stages import GRPO_ROWS  # noqa: E402
from t2g.files import write_text_atomic  # noqa: E402
from t2g.flags import flag, run  # noqa: E402


class ABError(RuntimeError):
    """The two runs cannot be compared; the message says which file and what to do."""


@dataclass(frozen=True)
class ABFlags:
    a: str = flag(help="--out folder of run A (the baseline) of scripts/bench_quality.py")
    b: str = flag(help="--out folder of run B (the change)")
    stage: str = flag("sft", help="the stage (row folder) to compare: sft, sft_more, grpo, grpo_ref, base ...")
    stage_b: str = flag("", help="run B's stage, when it is another (default: --stage); e.g. --a RUN --b RUN "
                                 "--stage sft --stage_b grpo")
    out: str = flag("", help="also write the table to this Markdown file")
    img: str = flag("", help="also plot the GRPO side(s)' curves (reward, flat groups, lengths, sampling time) "
                             "into this PNG")
    resamples: int = flag(RESAMPLES, help="bootstrap resamples")


def stage_info(run: Path, stage: str) -> dict:
    marker = run / stage / "stage.json"
    if not marker.is_file():
        raise ABError(f"{marker}: no such file; run scripts/bench_quality.py --out {run} until stage {stage!r} "
                      "has finished (it writes this file last)")
    return json.loads(marker.read_text())


def _sets(info: dict) -> list[str]:
    return ["test"] + [f"conditions/{name}" for name in info.get("conditions", {})]


def _rates(info: dict, sub: str) -> dict:
    return info["test"] if sub == "test" else info["conditions"][sub.split("/", 1)[1]]


def compare(a: Path, b: Path, stage: str, resamples: int = RESAMPLES, stage_b: str = "") -> list[dict]:
    """One row a set: both stages' rates, and B - A with its interval for entity and strict relation F1.
    A is run a's `stage`, B run b's `stage_b` (default: the same stage)."""
    from t2g.data.load import load_examples
    from t2g.eval.compare import paired_bootstrap
    from t2g.eval.predictions import read_predictions

    stage_b = stage_b or stage
    info_a, info_b = stage_info(a, stage), stage_info(b, stage_b)
    if _sets(info_a) != _sets(info_b):
        raise ABError(f"{a}/{stage} has sets {_sets(info_a)} and {b}/{stage_b} {_sets(info_b)}; run both with the "
                      "same --conditions_limit")
    rows = []
    for sub in _sets(info_a):
        gold_a, gold_b = a / stage / sub / "gold.jsonl", b / stage_b / sub / "gold.jsonl"
        for path in (gold_a, gold_b):
            if not path.is_file():
                raise ABError(f"{path}: no such file; its stage.json lists the set, so the run's folder is incomplete "
                              f"(delete {path.parents[len(sub.split('/'))]} and run the stage again)")
        if gold_a.read_text() != gold_b.read_text():
            raise ABError(f"{gold_a} and {gold_b} differ: the runs evaluated other sentences (another --test_limit or "
                          "--conditions_limit?); only the same sentences pair up")
        gold = load_examples(str(gold_a))
        ra, rb = _rates(info_a, sub), _rates(info_b, sub)
        preds_a = read_predictions(a / stage / sub / "predictions.jsonl")
        preds_b = read_predictions(b / stage_b / sub / "predictions.jsonl")
        row = {"set": sub.split("/")[-1], "n": len(gold),
               "off_list": (ra["out_of_schema_rate"], rb["out_of_schema_rate"]),
               "empty_answers": (ra.get("empty_answer_rate"), rb.get("empty_answer_rate")),
               "no_relation": (no_relation_rate(gold, preds_a), no_relation_rate(gold, preds_b))}
        if row["set"] != EMPTY:
            boot = paired_bootstrap(gold, preds_a, preds_b, resamples=resamples, seed=0,
                                    sources=(f"{a}/{stage}/{sub}", f"{b}/{stage_b}/{sub}"))
            row.update(entity=boot["entity"], relation=boot["relation"])
        rows.append(row)
    return rows


def no_relation_rate(gold: list, preds: dict[str, dict]) -> float | None:
    """The share of the sentences with gold relations answered by a usable graph without any: the silence
    GRPO learnt where relation_f1 pays 1.0 for no relations (docs/results.md, issue 18); None without such
    sentences (the empty condition)."""
    asked = [ex for ex in gold if ex.graph.relations]
    if not asked:
        return None
    silent = [ex for ex in asked if (p := preds.get(ex.id)) is not None and p["graph"] is not None and not p["graph"].relations]
    return len(silent) / len(asked)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _pair(ab: tuple) -> str:
    return " / ".join("-" if x is None else f"{_pct(x)}%" for x in ab)


def _delta(m: dict | None) -> str:
    if m is None:
        return "-"
    return f"{100 * m['delta']:+.1f} [{100 * m['low']:+.1f}, {100 * m['high']:+.1f}]"


def render(rows: list[dict], a: Path, b: Path, stage: str, resamples: int, stage_b: str = "") -> str:
    which = (f"Stage `{stage}`: A = `{a}`, B = `{b}`" if stage_b in ("", stage)
             else f"A = `{a}/{stage}`, B = `{b}/{stage_b}`")
    lines = [f"{which}; B - A with the paired bootstrap's 95% interval "
             f"({resamples} resamples, seed 0). Off-list: the share of predicted types not in the prompt's lists; "
             "empty answers: the share of sentences answered with the empty graph; no relation: the share of the "
             "sentences with gold relations answered without any.", "",
             "| set (sentences) | entity F1 A / B | B - A [95%] | strict relation F1 A / B | B - A [95%] "
             "| off-list types A / B | empty answers A / B | no relation A / B |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        e, rel = r.get("entity"), r.get("relation")
        f1 = (lambda m: "-" if m is None else f"{_pct(m['a'])} / {_pct(m['b'])}")
        lines.append(f"| {r['set']} ({r['n']}) | {f1(e)} | {_delta(e)} | {f1(rel)} | {_delta(rel)} "
                     f"| {_pair(r['off_list'])} | {_pair(r['empty_answers'])} | {_pair(r['no_relation'])} |")
    return "\n".join(lines) + "\n"


def ab(flags: ABFlags) -> str:
    a, b, stage_b = Path(flags.a), Path(flags.b), flags.stage_b or flags.stage
    text = render(compare(a, b, flags.stage, flags.resamples, stage_b), a, b, flags.stage, flags.resamples, stage_b)
    sides = {"A": (a, flags.stage), "B": (b, stage_b)}
    grpo_runs = {f"{side}: `{run}/{stage}`": Path(stage_info(run, stage)["run_dir"])
                 for side, (run, stage) in sides.items() if stage in GRPO_ROWS}
    diag = {label: run_diagnostics(run_dir) for label, run_dir in grpo_runs.items()}  # reward, flat groups, lengths
    text += "\n".join(diagnostics_table(diag)) + "\n" if diag else ""
    for run, stage in dict.fromkeys(sides.values()):  # (b+) against the time it was to match
        if stage == "sft_more" and (run / "grpo" / "stage.json").is_file():
            text += f"\n`{run}`: {budget_line(budget_check(run, stage_info(run, 'grpo')))}\n"
    if flags.img:
        if not grpo_runs:
            raise ABError(f"--img={flags.img}: neither {flags.stage!r} nor {stage_b!r} is a GRPO stage; there are no "
                          "GRPO curves to plot")
        plot_grpo_curves({label.replace("`", ""): run_dir for label, run_dir in grpo_runs.items()}, Path(flags.img),
                         "GRPO curves: " + " vs ".join(f"{run.name}/{stage}" for run, stage in dict.fromkeys(sides.values())))
        text += f"\nCurves: {flags.img}\n"
    print(text, end="")
    if flags.out:
        write_text_atomic(Path(flags.out), text)
    return text


def main(argv: list[str] | None = None) -> str | None:
    from t2g.data.canonical import DataError

    return run(ABFlags, ab, argv, errors=(ABError, DataError))


if __name__ == "__main__":
    main()
