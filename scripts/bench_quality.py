"""Quality benchmark (issues 8 and 18): does GRPO make SmolLM2-135M a better type-conditioned extractor
than SFT alone, given the same time? On CPU, every row evaluated through the exported GGUF (q8_0) with
llama.cpp (greedy, the shared prompt, the shared scorer), on CoNLL04 test and on the type-conditioning
sets (t2g.eval.conditions: renamed types, asked subsets, distractor types, empty answers):

    (a)  base        the base model, zero-shot
    (b)  sft         LoRA SFT on CoNLL04 train (converted + type-augmented), selected on dev
    (c)  grpo        (b)'s selected adapter + GRPO with rewards.DEFAULT_WEIGHTS; three seeds:
         grpo_seed2, grpo_seed3   (seed + 1, seed + 2)
    (b+) sft_more    (b)'s selected adapter + more SFT for the wall time (c)'s first run trained: the
                     honest control, since a GRPO step costs many SFT steps (--more_sft_s gives that
                     time up front, so that (b+) trains beside (c) on another core)
    (d)  grpo_ref    the SAME adapter + GRPO with rewards.REFERENCE_WEIGHTS (same steps and seed as (c))

Model selection: every training stage checkpoints every --select_every steps; each checkpoint is
exported (t2g.export.export_model) and evaluated on a CoNLL04 dev subset; the one with the best
strict relation F1 (then entity F1, then the later step) is the stage's model. HF vs GGUF agreement
is the export's parity check (t2g.export.parity.check_parity) on a test subset. The driver is thin: training
is t2g.train (start/sft/grpo/finish), export is t2g.export, evaluation is t2g.eval.evaluate.

    python scripts/bench_quality.py --out /work/bench18/conll04 --docs docs/results.md --img_dir docs/img   # every stage in turn
    python scripts/bench_quality.py --quick --out /tmp/bench-quick                                        # every stage, tiny

`python scripts/bench_quality.py --help` lists every flag. The stages live in scripts/quality_stages.py,
(b+)'s budget in scripts/quality_budget.py, the report in
scripts/quality_report.py and its Markdown in scripts/quality_render.py; this file reads the flags and runs the stages in order.

Resumable per stage: a stage whose `stage.json` exists in --out is skipped (its numbers are reused);
a training stage interrupted mid-way continues from its last checkpoint. Delete a stage's folder to
redo it. The last stage writes `results.json`, `results.md` and the curves (PNG) into --out, and with
--docs replaces the generated section of that Markdown file (between the bench_quality markers).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, fields, make_dataclass, replace
from pathlib import Path
from typing import get_type_hints

sys.path.insert(0, str(Path(__file__).resolve().parent))

# First: it sets the offline environment before anything heavy is imported.
from quality_stages import (DATA, FULL, GRPO_ROWS, QUICK, ROWS, BenchError, Sizes, base_stage,  # noqa: E402
                            reference_weights, run_stage, selected_sft, set_threads, train_only, train_stage)
from quality_budget import SOURCES, more_sft_steps  # noqa: E402
from quality_render import render  # noqa: E402
from quality_report import report  # noqa: E402
import rewards  # noqa: E402  (light)
from t2g.flags import flag, parse, read_command_line, run  # noqa: E402
from t2g.train import malloc as allocator  # noqa: E402

PROG = "bench_quality.py"


@dataclass
class _Flags:
    """Quality benchmark: does SFT + GRPO beat zero-shot and SFT alone on CoNLL04? (scripts/bench_quality.py)"""

    out: str = flag(help="output folder (stages found done in it are skipped)")
    quick: bool = flag(False, "every stage on a few examples (CI, ~2 min)")
    seed: int = flag(42, "the training seed")
    dtype: str = flag("auto", "training compute dtype; auto: bf16 autocast on AMX/AVX512-BF16 cores (the docs' run), "
                              "fp32 elsewhere, where bf16 is emulated and many times slower (t2g.train.cpu_features)",
                      choices=("auto", "bf16", "fp32"))
    allocator: str = flag("mimalloc", "malloc for this process, which restarts under it (t2g.train.malloc; mimalloc "
                                      "comes with the cpu extra). Training is bit-identical under both; "
                                      "scripts/bench_sft_cpu.py measured mimalloc's SFT steps faster and its peak "
                                      "memory lower (docs/results.md)", choices=allocator.ALLOCATORS)
    docs: str | None = flag(None, "Markdown file whose generated section is replaced (docs/results.md)")
    img_dir: str | None = flag(None, "where the PNG curves go (default: <out>/img)")
    threads: int = flag(0, "pin the benchmark to this many CPU cores (torch and llama.cpp threads follow); 0 = all. "
                           "On a shared, loaded machine 1 is far faster: both runtimes spin-wait on busy cores")
    first_core: int = flag(0, "with --threads: the first of the cores to use")
    stages: tuple[str, ...] = flag(ROWS, "rows to run in this invocation (two invocations pinned to different cores "
                                         "can share --out: e.g. --stages=base,grpo_ref beside --stages=sft,grpo); "
                                         "the report is written once all exist", choices=ROWS)
    train_only: bool = flag(False, "only train the --stages (resumable), e.g. SFT on all cores before the one-core "
                                   "stages; a later invocation without it selects and evaluates, and the stage's "
                                   "wall time adds this one")
    wait_s: int = flag(0, "GRPO rows and sft_more: wait this long for another invocation's sft (and, for sft_more, "
                          "grpo) stage")
    more_sft_s: float = flag(0.0, "(b+)'s SFT training time in seconds, given up front so that sft_more trains beside "
                                  "grpo on another core (e.g. (c)'s steps x the seconds a step took in an earlier "
                                  "run); 0: the time grpo's first run measured, which waits for it. The report sets "
                                  "the budget beside the time grpo did train")
    more_sft_steps: int = flag(0, "sft_more trains this many SFT steps instead of for a time, and is then no control "
                                  "for (c): SFT continued to convergence, whose sft_more folder a later --out uses "
                                  "as its sft (docs/results.md); 0: the time budget of --more_sft_s")


# Every size is a flag too, overriding the full run's (or --quick's) value: one list, Sizes.
Flags = make_dataclass(
    "Flags", [(s.name, get_type_hints(Sizes)[s.name] | None, flag(None, f"{s.metadata['help']} (unset: the full run's, or --quick's)")) for s in fields(Sizes)],
    bases=(_Flags,), namespace={"__doc__": _Flags.__doc__})


def bench(flags: _Flags, command_line: bool) -> dict:
    if command_line:  # restart this very command under the allocator (first thing)
        try:
            allocator.reexec_with(flags.allocator)
        except allocator.AllocatorError as exc:
            raise BenchError(f"--allocator={flags.allocator}: {exc}") from None
    elif allocator.active() != flags.allocator:  # called from Python: never replace the caller's process
        raise BenchError(f"--allocator={flags.allocator}: this process runs on {allocator.active()}; run the script "
                         f"from the command line, or pass --allocator={allocator.active()}")
    set_threads(flags.threads, flags.first_core)
    sizes = replace(QUICK if flags.quick else FULL,
                    **{s.name: getattr(flags, s.name) for s in fields(Sizes) if getattr(flags, s.name) is not None})
    if not (DATA / "train.json").is_file():
        raise BenchError(f"CoNLL04 not found at {DATA} (train.json, dev.json, test.json in SpERT format)")
    out = Path(flags.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stages = list(flags.stages)
    if not stages:
        raise BenchError(f"--stages is empty: give some of {','.join(ROWS)}")
    if flags.more_sft_s < 0:
        raise BenchError(f"--more_sft_s={flags.more_sft_s}: give seconds > 0, or 0 for the time grpo trained")
    if flags.more_sft_steps < 0 or (flags.more_sft_steps and flags.more_sft_s):
        raise BenchError(f"--more_sft_steps={flags.more_sft_steps}: give steps > 0 without --more_sft_s (a budget is "
                         f"a time or a step count), or 0 for a time budget")
    if flags.train_only and "base" in stages:
        raise BenchError("--train_only: the base row has no training; leave it out of --stages")
    for stage in stages:
        if (out / stage / "stage.json").is_file():
            run_stage(out, stage, lambda d: {})  # says it is done and skips it
        elif stage == "base":
            run_stage(out, stage, lambda d: base_stage(d, sizes))
        elif flags.train_only:
            (out / stage).mkdir(parents=True, exist_ok=True)
            train_only(out / stage, *_training(out, stage, sizes, flags), in_stage=False, **_more(out, stage, sizes, flags))
            print(f"bench: {stage}: training finished; run the stage again without --train_only to select and "
                  f"evaluate", flush=True)
        else:
            run_stage(out, stage, lambda d: train_stage(d, *_training(out, stage, sizes, flags), **_more(out, stage, sizes, flags)))
    if flags.train_only:
        return {}
    missing = [r for r in ROWS if not (out / r / "stage.json").is_file()]
    if missing:  # another invocation runs them (--stages); whichever finishes last writes the report
        print(f"bench: report waits for {', '.join(missing)} (run them with --stages, then rerun to report)", flush=True)
        return {}
    rows = {r: json.loads((out / r / "stage.json").read_text()) for r in ROWS}
    results = report(out, rows, sizes, quick=flags.quick, seed=flags.seed, docs=flags.docs, img_dir=flags.img_dir)
    print(f"bench: total {time.perf_counter() - started:.0f} s this invocation; results in {out / 'results.md'}", flush=True)
    print(render(results).split("\n\n### Type conditioning")[0])
    return results


def _training(out: Path, stage: str, sizes: Sizes, flags: _Flags) -> tuple:
    """A training row's (sizes, seed, kind, weights, start adapter, dtype). (c)'s seeds and (d) start from the
    one selected SFT checkpoint with the same steps; (d) differs from (c) only in its reward weights."""
    if stage == "sft":
        return sizes, flags.seed, "sft", None, None, flags.dtype
    start = selected_sft(out, flags.wait_s)
    if stage == "sft_more":
        return sizes, flags.seed, "sft", None, start, flags.dtype
    weights = reference_weights() if stage == "grpo_ref" else c_weights(sizes)
    return sizes, flags.seed + GRPO_ROWS[stage], "grpo", weights, start, flags.dtype


def c_weights(sizes: Sizes) -> dict[str, float]:
    """(c)'s reward weights: --grpo_weights over the registry's DEFAULT_WEIGHTS (merged by name in training)."""
    try:
        return rewards.parse_weights(sizes.grpo_weights)
    except ValueError as exc:
        raise BenchError(f"--grpo_weights: {exc}") from None


def _more(out: Path, stage: str, sizes: Sizes, flags: _Flags) -> dict:
    if stage != "sft_more":
        return {}
    budget = more_sft_steps(out, sizes, flags.seed, flags.dtype, flags.wait_s, flags.more_sft_s, flags.more_sft_steps)
    for name, asked, kept in (("--more_sft_s", flags.more_sft_s, budget["budget_s"]),
                              ("--more_sft_steps", flags.more_sft_steps, budget["steps"])):
        if asked and asked != kept:  # a resumed (b+) keeps the budget it began with
            print(f"bench: sft_more: {name}={asked:g} is not used: {out / 'sft_more' / 'budget.json'} "
                  f"set the budget when this stage began (delete the sft_more folder to start it over)", flush=True)
    if budget["budget_s"] is None:
        print(f"bench: sft_more: {budget['steps']} SFT steps ({SOURCES[budget['budget_from']]})", flush=True)
    else:
        print(f"bench: sft_more: {budget['steps']} SFT steps = {budget['budget_s']:.0f} s ({SOURCES[budget['budget_from']]})"
              f" / {budget['sft_s_per_step']} s per SFT step (measured on {budget['calibration_steps']} steps)", flush=True)
    return {"more_sft_steps": budget["steps"]}


def main(argv: list[str] | None = None) -> dict:
    """The command line (argv None): an error prints one line and exits 2. From Python (a list of
    --flags): FlagError and BenchError raise, and the process is never restarted."""
    if argv is None:
        return run(Flags, lambda flags: bench(flags, command_line=True), prog=PROG, errors=(BenchError,)) or {}
    return bench(parse(Flags, read_command_line(argv, PROG)), command_line=False)


if __name__ == "__main__":
    main()
