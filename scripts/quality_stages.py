"""The quality benchmark's stages (scripts/bench_quality.py): its sizes, training through t2g.train,
export through t2g.export, evaluation through t2g.eval, selection of a checkpoint on dev.

Each stage writes <out>/<stage>/stage.json last; an existing one means "done, skip".
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

# Before anything imports torch, transformers or unsloth (the stages import them lazily).
for _key, _value in {"UNSLOTH_AUTO_INSTALL": "0", "UNSLOTH_LLAMA_CPP_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                     "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import rewards  # noqa: E402  (light)
from t2g.files import write_json_atomic  # noqa: E402
from t2g.flags import flag  # noqa: E402
from t2g.train import cpu_features as cpu  # noqa: E402  (light)
from t2g.train.config import TrainConfig, validate  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "conll04"
# (c) runs three times, seeds seed, seed + 1, seed + 2; (b+) gets (c)'s first run's training time.
ROWS = ("base", "sft", "grpo", "sft_more", "grpo_seed2", "grpo_seed3", "grpo_ref")
GRPO_ROWS = {"grpo": 0, "grpo_seed2": 1, "grpo_seed3": 2, "grpo_ref": 0}  # row -> seed offset
SEEDED_C = ("grpo", "grpo_seed2", "grpo_seed3")
ROW_LABEL = {"base": "(a) base, zero-shot", "sft": "(b) SFT", "sft_more": "(b+) SFT continued, (c)'s training time",
             "grpo": "(c) SFT + GRPO, default rewards", "grpo_seed2": "(c) seed 2", "grpo_seed3": "(c) seed 3",
             "grpo_ref": "(d) SFT + GRPO, reference rewards"}
# (b+) continues SFT from (b)'s selected checkpoint at GRPO's learning rate, dev-selected like (c).
MORE_SFT_LR = 1e-4


def more_sft_checkpoints(sizes: "Sizes") -> int:
    """(b+)'s dev-selection candidates: as many as (c) has (4 in the full run, 1 under --quick)."""
    return max(1, sizes.grpo_steps // sizes.grpo_select_every)


class BenchError(RuntimeError):
    """Something the benchmark cannot work around; the message says what."""


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the full run and --quick; each is also a flag of bench_quality.py."""

    train_examples: int = flag(help="CoNLL04 train sentences (0 = all 922, then x3 with two type-augmented copies)")
    sft_steps: int = flag(help="SFT steps")
    sft_batch: int = flag(help="SFT examples per step")
    grpo_steps: int = flag(help="GRPO steps")
    grpo_batch: int = flag(help="GRPO completions per forward/backward pass")
    grpo_accum: int = flag(help="GRPO passes per step: a step samples grpo_batch x grpo_accum completions at once")
    num_generations: int = flag(help="GRPO completions per prompt")
    max_completion_length: int = flag(help="GRPO tokens per completion at most")
    select_every: int = flag(help="SFT: checkpoint (and dev-select) every N steps")
    grpo_select_every: int = flag(help="GRPO: checkpoint (and dev-select) every N steps")
    dev_limit: int = flag(help="dev sentences per selection candidate")
    test_limit: int = flag(help="test sentences (0 = all 288)")
    parity_limit: int = flag(help="test sentences through both HF and the GGUF")
    max_new_tokens: int = flag(help="evaluation: tokens generated per sentence at most")
    conditions_limit: int = flag(help="sentences per type-conditioning condition (t2g.eval.conditions)")
    # not sizes but the SFT data's design, set alike in both (the type-conditioning question of issue 18)
    augment_distractors: str = flag(help="foreign types in the augmented copies (t2g.train.config's: none, builtin or a file)")
    augment_empty_prob: float = flag(help="share of augmented copies whose answer is the empty graph")
    augment_drop_prob: float = flag(help="per gold type of an augmented copy: the chance it is not asked for")
    augment_keep_all_prob: float = flag(help="share of augmented copies that keep every gold type beside 1-2 absent ones")
    augment_rename_prob: float = flag(help="share of augmented copies whose types are renamed by training synonyms")
    augment_synonyms: str = flag(help="the synonyms they are renamed by: builtin, wide or a file (t2g.train.config)")
    grpo_learning_rate: float = flag(help="GRPO's learning rate (issue 18's tuning; the recipe's default is 5e-6)")
    grpo_weights: tuple = flag(help="(c)'s reward weights over the defaults, name=weight,... (e.g. relation_f1=0,relation_gain=1)")


# Data: CoNLL04 train + two type-augmented copies (2,766 examples); half the copies name their types with
# training synonyms (t2g.data.synonyms), so that renamed types can be learnt at all (the type-conditioning
# test renames with other names, never trained on).
# SFT: 1,200 x 4 = 4,800 examples, about 1.7 passes: the fourth run's 720 steps left dev F1 still rising
# (docs/results.md), and GRPO must not be credited with what more SFT would do. It trains on both cores
# first (--train_only), dev-selected every 200.
# GRPO: 160 steps x 4 prompts x 4 completions (640 prompts, ten times the fourth run's 64), sampled
# together by llama.cpp (--rollout=auto on CPU), trained in 2 passes of 8, checkpoints every 40.
# Lengths: CoNLL04 test gold graphs take 113 tokens at the median, 249 at the 95th percentile, 504 at most
# (SmolLM2 tokenizer); a shorter GRPO limit would charge the truncation penalty to correct long answers.
DESIGN = dict(augment_distractors="none", augment_empty_prob=0.1, augment_drop_prob=0.15, augment_keep_all_prob=0.0,
              augment_rename_prob=0.5, augment_synonyms="builtin", grpo_learning_rate=1e-4, grpo_weights=())  # FULL's and QUICK's
FULL = Sizes(train_examples=0, sft_steps=1200, sft_batch=4, grpo_steps=160, grpo_batch=8, grpo_accum=2, num_generations=4,
             max_completion_length=256, select_every=200, grpo_select_every=40, dev_limit=40, test_limit=0, parity_limit=4, max_new_tokens=320,
             conditions_limit=100, **DESIGN)
QUICK = Sizes(train_examples=4, sft_steps=2, sft_batch=2, grpo_steps=1, grpo_batch=2, grpo_accum=1, num_generations=2,
              max_completion_length=16, select_every=2, grpo_select_every=1, dev_limit=2, test_limit=2, parity_limit=1, max_new_tokens=32,
              conditions_limit=2, **DESIGN)


def run_stage(out: Path, name: str, fn: Callable[[Path], dict]) -> dict:
    folder = out / name
    marker = folder / "stage.json"
    if marker.is_file():
        print(f"bench: {name}: done earlier ({marker}); skipping", flush=True)
        return json.loads(marker.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    print(f"bench: {name}: starting at {time.strftime('%H:%M:%S')}", flush=True)
    load_start, started = os.getloadavg()[0], time.perf_counter()
    info = fn(folder)
    earlier = info.get("timing", {}).get("earlier_wall_s", 0.0)  # training done by an earlier --train_only invocation
    info["timing"] = {**info.get("timing", {}), "stage_wall_s": round(time.perf_counter() - started + earlier, 1),
                      "loadavg_1min_start": round(load_start, 2), "loadavg_1min_end": round(os.getloadavg()[0], 2)}
    write_json_atomic(marker, info)
    print(f"bench: {name}: finished in {info['timing']['stage_wall_s']} s", flush=True)
    return info


# Sentences decoded together by llama.cpp (t2g.infer.llama_batched), in about half the time on one core
# (scripts/bench_eval.py --gguf measures it). Greedy: the same completions as one at a time except at
# near-ties, where another float summation order can flip a token (docs/results.md counts them).
EVAL_BATCH = 16


def evaluate_gguf(gguf: Path, data: Path, out: Path, limit: int, sizes: Sizes) -> dict:
    from t2g.eval.evaluate import evaluate

    report = evaluate(str(gguf), str(data), str(out), limit=limit or None, runtime="llama.cpp",
                      max_new_tokens=sizes.max_new_tokens, batch_size=EVAL_BATCH, progress=False)
    return summarize(report)


def conditions_data(out: Path, sizes: Sizes) -> dict[str, Path]:
    """The type-conditioning sets (t2g.eval.conditions), generated once per --out from CoNLL04 test, seed 0."""
    from t2g.data.load import load_examples
    from t2g.eval.conditions import CONDITIONS, write_conditions

    folder = out / "conditions"
    paths = {c: folder / f"{c}.jsonl" for c in CONDITIONS}
    if not (folder / "conditions.json").is_file():
        paths = write_conditions(folder, load_examples(str(DATA / "test.json")), n=sizes.conditions_limit, seed=0)
    return paths


def evaluate_test(gguf: Path, folder: Path, sizes: Sizes) -> dict:
    """CoNLL04 test and every type-conditioning set, through the GGUF."""
    from t2g.eval.conditions import empty_answer_rate

    found = {"test": evaluate_gguf(gguf, DATA / "test.json", folder / "test", sizes.test_limit, sizes), "conditions": {}}
    for name, path in conditions_data(folder.parent, sizes).items():
        where = folder / "conditions" / name
        found["conditions"][name] = {**evaluate_gguf(gguf, path, where, 0, sizes),
                                     "empty_answer_rate": empty_answer_rate(where / "predictions.jsonl")}
    return found


def summarize(report: dict) -> dict:
    out = report["output"]
    return {
        "n": report["n_examples"],
        "entity_f1": report["entity"]["f1"], "relation_f1": report["relation"]["f1"],
        "entity_boundaries_f1": report["entity_boundaries"]["f1"],
        "relation_boundaries_f1": report["relation_boundaries"]["f1"],
        "json_valid_rate": report["json_valid_rate"],
        "out_of_schema_rate": out["out_of_schema_rate"], "hallucinated_span_rate": out["hallucinated_span_rate"],
        "n_pred_entities": out["n_pred_entities"], "n_pred_relations": out["n_pred_relations"],
        "generate_s": round(report["timing"]["generate_s"], 1),
    }


def export_gguf(model: Path, out: Path, base: str) -> Path:
    """The kit's export (adapter merged on its base, llama.cpp's converter, q8_0); no parity here."""
    from t2g.export.pipeline import export_model

    manifest = export_model(str(model), out, quant="q8_0", base_model=base, hf=False, name=model.name, parity_limit=0)
    return out / manifest["ggufs"][0]


def parity(hf_model: str, gguf: Path, out: Path, sizes: Sizes, base: str | None) -> dict:
    """The export's parity check on the first test sentences (warn, recorded, never silent)."""
    from t2g.data.load import load_examples
    from t2g.export.parity import check_parity

    examples = load_examples(str(DATA / "test.json"))[: sizes.parity_limit]
    report = check_parity(hf_model, gguf, examples, out / "parity.json", on_fail="warn",
                          max_new_tokens=sizes.max_new_tokens, base_model=base)
    keep = ("n", "json_valid", "entity_f1", "relation_f1", "seconds", "texts_per_second")
    return {"hf": {k: report["hf"][k] for k in keep}, "gguf": {k: report["gguf_side"][k] for k in keep},
            "passed": report["passed"], "drop": report["drop"], "identical_completion_rate": report["identical_completion_rate"]}


def base_stage(folder: Path, sizes: Sizes) -> dict:
    from t2g.models.offline import smollm2_hf_dir

    base = str(smollm2_hf_dir())
    started = time.perf_counter()
    gguf = export_gguf(Path(base), folder / "export", base)
    export_s = time.perf_counter() - started
    return {
        "model": base, "gguf": str(gguf),
        "dev": evaluate_gguf(gguf, DATA / "dev.json", folder / "dev", sizes.dev_limit, sizes),
        **evaluate_test(gguf, folder, sizes),
        "parity": parity(base, gguf, folder, sizes, None),
        "timing": {"export_s": round(export_s, 1)},
    }


def train_config(out_dir: Path, sizes: Sizes, seed: int, stage: str, weights: dict[str, float] | None = None,
                 dtype: str = "auto", more_sft_steps: int = 0) -> TrainConfig:
    """SmolLM2-135M on CPU: LoRA through the hf backend (4-bit on CPU only costs time); dtype auto is bf16
    autocast on AMX / AVX512-BF16 cores (faster than fp32 there) and fp32 elsewhere (t2g.train.cpu_features)."""
    from t2g.models.offline import smollm2_hf_dir

    sft_steps, sft_lr = (more_sft_steps, MORE_SFT_LR) if more_sft_steps else (sizes.sft_steps, 5e-4)
    cfg = replace(
        TrainConfig(),
        stages=(stage,), model=str(smollm2_hf_dir()), backend="hf", load_in_4bit=False, gradient_checkpointing=False,
        dataset=str(DATA / "train.json"), max_examples=sizes.train_examples, augment_copies=2, augment_synonyms=sizes.augment_synonyms,
        augment_rename_prob=sizes.augment_rename_prob, augment_distractors=sizes.augment_distractors, augment_empty_prob=sizes.augment_empty_prob,
        augment_drop_prob=sizes.augment_drop_prob, augment_keep_all_prob=sizes.augment_keep_all_prob,
        max_seq_length=1024, max_prompt_length=640, drop_long_examples=True,
        sft_max_steps=sft_steps, sft_batch_size=sizes.sft_batch, sft_grad_accum=1, sft_learning_rate=sft_lr,
        grpo_max_steps=sizes.grpo_steps, grpo_batch_size=sizes.grpo_batch, grpo_grad_accum=sizes.grpo_accum,
        num_generations=sizes.num_generations, max_completion_length=sizes.max_completion_length,
        # GRPO lr (FULL's 1e-4): 5e-5 at temperature 1.0 broke greedy decoding of a weak SFT model within 10 steps
        # (first run); 2e-5 at 0.7 moved a strong one by nothing measurable in 16 steps (Adam moves each weight
        # by about lr a step); 1e-4 at 0.7 moved the fourth run's by +0.2 in 16 steps (docs/results.md).
        grpo_learning_rate=sizes.grpo_learning_rate, temperature=0.7, beta=0.0,
        # The study's dynamic sampling as its first GRPO seed ran it, before spare groups existed: every seed
        # and reward scheme of one study trains on prompts chosen the same way.
        dynamic_sampling=2, dynamic_sampling_spares=0,
        dtype=cpu.training_dtype() if dtype == "auto" else dtype,
        reward_weights=dict(weights or {}), output_dir=str(out_dir), run_name=f"bench-{stage}",
        save_steps=save_every(selection_every(sizes, stage, more_sft_steps)), save_total_limit=1000, sample_every=5, report_to=("none",), seed=seed,
    )
    # Default weights unless told; the reference scheme turns every other reward off (weights merge by name).
    cfg.resume = (out_dir / "config.json").is_file()  # an interrupted stage continues from its last checkpoint
    validate(cfg)
    return cfg


# Checkpoints come at least this often whatever the selection's spacing, so that a run cut off loses little;
# only every selection_every-th of them (and the last) is a selection candidate.
RESUME_EVERY = 10


def selection_every(sizes: Sizes, stage: str, more_sft_steps: int = 0) -> int:
    """Steps between dev-selection candidates; (b+) is checkpointed as many times as (c) is (RESUME_EVERY's multiples)."""
    if more_sft_steps:
        every = max(1, more_sft_steps // more_sft_checkpoints(sizes))
        return math.ceil(every / RESUME_EVERY) * RESUME_EVERY if every > RESUME_EVERY else every
    return sizes.select_every if stage == "sft" else sizes.grpo_select_every


def save_every(select_every: int) -> int:
    """Saves that include every candidate (saves every min(10, 16) steps had left 16-step candidates unsaved)."""
    return math.gcd(RESUME_EVERY, select_every)


def checkpoints(stage_dir: Path) -> list[Path]:
    found = [(int(p.name.split("-")[1]), p) for p in stage_dir.glob("checkpoint-*")
             if p.name.split("-")[1].isdigit() and (p / "adapter_config.json").is_file()]
    return [p for _, p in sorted(found)]


def select_on_dev(run_dir: Path, stage: str, folder: Path, sizes: Sizes, base: str, every: int) -> tuple[dict, list[dict]]:
    """Export + evaluate every every-th checkpoint (and the last) on the dev subset; best strict relation F1 wins."""
    found = checkpoints(run_dir / stage)
    cands = [c for c in found if int(c.name.split("-")[1]) % every == 0 or c == found[-1]]
    if not cands:
        raise BenchError(f"{run_dir / stage}: no checkpoint with an adapter to select from")
    scored = []
    for ckpt in cands:
        gguf = export_gguf(ckpt, folder / "select" / ckpt.name, base)
        dev = evaluate_gguf(gguf, DATA / "dev.json", folder / "select" / ckpt.name / "dev", sizes.dev_limit, sizes)
        step = int(ckpt.name.split("-")[1])
        scored.append({"checkpoint": str(ckpt), "step": step, "gguf": str(gguf), "dev": dev})
        print(f"bench: {folder.name} {ckpt.name}: dev relation F1 {dev['relation_f1']:.3f}, entity F1 {dev['entity_f1']:.3f}", flush=True)
    best = max(scored, key=lambda c: (c["dev"]["relation_f1"], c["dev"]["entity_f1"], c["step"]))
    return best, scored


def train_only(folder: Path, sizes: Sizes, seed: int, stage: str, weights: dict | None, start_adapter: Path | None,
               dtype: str, in_stage: bool, more_sft_steps: int = 0) -> tuple[Any, list[dict]]:
    """Train (or resume, or find finished) the stage's run in <folder>/run. Every invocation that trained
    appends its wall seconds, CPU seconds and core count to <folder>/training.json (in_stage=False: a
    --train_only invocation, whose time the stage's wall time adds); one cut off, its time up to its last
    checkpoint."""
    from t2g.train import pipeline as train
    from t2g.train.session import ensure_model

    cfg = train_config(folder / "run", sizes, seed, stage, weights, dtype, more_sft_steps)
    session = train.start(cfg)
    done = session.run.done(stage)
    trains = not (done and done["steps"] >= (cfg.sft_max_steps if stage == "sft" else cfg.grpo_max_steps))
    record = folder / "training.json"
    runs = _earlier_runs(record, Path(session.run.dir) / stage)
    started, cpu_started = time.perf_counter(), time.process_time()  # CPU: user + system, every thread
    if trains:  # marked first: if this invocation is cut off, the next one credits its time (_earlier_runs)
        write_json_atomic(record, {"runs": runs, "in_progress": {"wall_started": time.time(), "in_stage": in_stage,
                                                                 "threads": len(os.sched_getaffinity(0))}})
    if trains and start_adapter is not None:  # GRPO and (b+) start from the selected SFT checkpoint, not a fresh LoRA
        ensure_model(session, adapter=start_adapter)
    getattr(train, stage)(session)  # when finished earlier, this only records the stage in the session
    if trains:
        runs.append({"train_s": round(time.perf_counter() - started, 1), "cpu_s": round(time.process_time() - cpu_started, 1),
                     "threads": len(os.sched_getaffinity(0)), "in_stage": in_stage,
                     "loadavg_1min_end": round(os.getloadavg()[0], 2)})
        write_json_atomic(record, {"runs": runs})
    return session, runs


def _earlier_runs(record: Path, stage_dir: Path) -> list[dict]:
    """The training invocations recorded so far. One that was cut off is credited with its time up to its
    last checkpoint (the newest file in it): what it trained after that is lost and trained again."""
    if not record.is_file():
        return []
    data = json.loads(record.read_text())
    runs, cut = data["runs"], data.get("in_progress")
    if cut:
        saved = [max(f.stat().st_mtime for f in ckpt.iterdir()) for ckpt in checkpoints(stage_dir)]
        saved = [t for t in saved if t >= cut["wall_started"]]
        runs.append({"train_s": round(max(saved) - cut["wall_started"], 1) if saved else 0.0, "cpu_s": None,
                     "threads": cut["threads"], "in_stage": cut["in_stage"], "interrupted": True})
        write_json_atomic(record, {"runs": runs})
    return runs


def train_stage(folder: Path, sizes: Sizes, seed: int, stage: str, weights: dict | None, start_adapter: Path | None,
                dtype: str, more_sft_steps: int = 0) -> dict:
    from t2g.train import pipeline as train

    session, runs = train_only(folder, sizes, seed, stage, weights, start_adapter, dtype, in_stage=True,
                               more_sft_steps=more_sft_steps)
    summary = train.finish(session)
    run_dir = Path(session.run.dir)
    base = session.model_name
    started = time.perf_counter()
    best, scored = select_on_dev(run_dir, stage, folder, sizes, base, selection_every(sizes, stage, more_sft_steps))
    select_s = time.perf_counter() - started
    gguf = Path(best["gguf"])
    return {
        "run_dir": str(run_dir), "start_adapter": str(start_adapter) if start_adapter else None,
        "weights": grpo_weights(session.cfg) if stage == "grpo" else None, "seed": seed,
        "steps": summary["stages"][stage]["steps"], "examples": len(session.examples),
        "selected": best["checkpoint"], "selected_step": best["step"], "candidates": scored, "gguf": str(gguf),
        "dev": best["dev"],
        **evaluate_test(gguf, folder, sizes),
        "parity": parity(best["checkpoint"], gguf, folder, sizes, base),
        "timing": {"train_s": round(sum(r["train_s"] for r in runs), 1),
                   "train_cpu_s": round(sum(r["cpu_s"] for r in runs), 1) if all(r.get("cpu_s") for r in runs) else None,
                   "interrupted_runs": sum(bool(r.get("interrupted")) for r in runs),
                   "train_threads": sorted({r["threads"] for r in runs}),
                   # this invocation's wall time is the stage's; --train_only ones and cut-off ones add theirs
                   "earlier_wall_s": round(sum(r["train_s"] for r in runs if not r["in_stage"] or r.get("interrupted")), 1),
                   "select_s": round(select_s, 1)},
    }


def grpo_weights(cfg: TrainConfig) -> dict[str, float]:
    """The rewards GRPO actually trained on, by name (as t2g.train.grpo builds them)."""
    from t2g.train.config import resolved_weights

    funcs, weights = rewards.build(resolved_weights(cfg), reasoning=cfg.reasoning)
    return {f.__name__: w for f, w in zip(funcs, weights)}


def reference_weights() -> dict[str, float]:
    """Every reward at its reference weight, 0 for those the reference scheme leaves out (weights merge by name)."""
    return {r.name: r.reference_weight for r in rewards.REWARDS}


def selected_sft(out: Path, wait_s: int) -> Path:
    """The SFT checkpoint selected on dev; GRPO (c), (d) and (b+) all start from it."""
    return Path(_finished_stage(out, "sft", wait_s)["selected"])


def _finished_stage(out: Path, stage: str, wait_s: int) -> dict:
    """A stage's stage.json; when another invocation is running that stage, wait for it (up to wait_s seconds)."""
    marker = out / stage / "stage.json"
    deadline = time.time() + wait_s
    if not marker.is_file():
        print(f"bench: waiting for the {stage} stage ({marker}) for up to {wait_s} s", flush=True)
    while not marker.is_file():
        if time.time() > deadline:
            raise BenchError(f"{marker} is missing: run the {stage} stage first (--stages={stage}), or raise --wait_s")
        time.sleep(20)
    return json.loads(marker.read_text())


def set_threads(n: int, first_core: int) -> None:
    """Pin this process (and so llama.cpp's default thread count and torch's) to `n` cores."""
    if n <= 0:
        return
    cores = sorted(os.sched_getaffinity(0))
    if first_core + n > len(cores):
        raise BenchError(f"--threads={n} --first_core={first_core}: only {len(cores)} cores are available")
    os.sched_setaffinity(0, cores[first_core:first_core + n])
    os.environ["OMP_NUM_THREADS"] = str(n)  # before torch is imported (it is imported by the stages)
