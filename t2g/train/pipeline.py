"""The training pipeline, stage by stage; every recipe's `main()` is `run_recipe`.

    session = start(cfg)          # data, tokenizer, prompt-length check, run directory, model
    sft(session); grpo(session)   # each only when cfg.stages names it
    export(session)               # <run>/export/: GGUF, Modelfile, parity check against HF
    evaluate(session)             # <run>/eval/: report on cfg.eval_data, through the GGUF when exported
    finish(session)               # summary, then "run directory: <path>" as the last line

Everything that can be wrong with the configuration or the data fails in `start`, before a model
is loaded or a step is taken.
"""

from __future__ import annotations

import time

from t2g.train import distributed, runs
from t2g.train.config import TrainConfig
from t2g.train.session import Session, release_model, start


def run_recipe(cfg: TrainConfig) -> str:
    """A recipe's main(): the stages cfg.stages names, in pipeline order; returns the run directory."""
    session = start(cfg)  # data, prompt-length check, run directory: fails before any training
    try:
        if "sft" in cfg.stages:
            sft(session)
        if "grpo" in cfg.stages:
            grpo(session)
        if "export" in cfg.stages:
            export(session)
        if "evaluate" in cfg.stages:
            evaluate(session)
        finish(session)
    finally:
        runs.announce(session.run.dir)
    return str(session.run.dir)


def sft(session: Session) -> dict:
    from t2g.train.sft import run_sft

    session.stages["sft"] = run_sft(session)
    return session.stages["sft"]


def grpo(session: Session) -> dict:
    from t2g.train.grpo import run_grpo

    session.stages["grpo"] = run_grpo(session)
    return session.stages["grpo"]


def export(session: Session) -> dict:
    """Merge the run's final adapter, write GGUF(s), the Modelfile and the parity report to <run>/export/."""
    from t2g.export.pipeline import export_run

    if not distributed.is_main():  # one writer; the other ranks have nothing left to do
        return {}
    cfg = session.cfg
    release_model(session)
    manifest = export_run(
        session.run.dir, quant=cfg.export_quants, parity_limit=cfg.parity_limit, parity_data=cfg.eval_data,
        parity_threshold=cfg.parity_threshold, on_parity_fail=cfg.on_parity_fail,
        parity_max_new_tokens=cfg.max_completion_length, hf=cfg.export_hf,
    )
    session.stages["export"] = {"ggufs": manifest.get("ggufs", []), "parity": (manifest.get("parity") or {}).get("passed")}
    return manifest


def evaluate(session: Session) -> dict:
    """Evaluate the run on cfg.eval_data into <run>/eval/: through the exported GGUF when there is one
    (llama.cpp, the runtime users deploy), else the adapter with transformers."""
    from t2g.eval.evaluate import evaluate as run_evaluation

    if not distributed.is_main():
        return {}
    cfg = session.cfg
    release_model(session)
    ggufs = session.run.layout.exported_ggufs()
    model = str(ggufs[0]) if ggufs else str(session.run.dir)
    report = run_evaluation(model, cfg.eval_data, str(session.run.dir / "eval"), limit=cfg.eval_limit or None,
                            max_new_tokens=cfg.max_completion_length, reasoning=cfg.reasoning)
    session.stages["evaluate"] = {
        "model": model, "entity_f1": report["entity"]["f1"], "relation_f1": report["relation"]["f1"],
        "json_valid_rate": report.get("json_valid_rate"),
    }
    return report


def finish(session: Session) -> dict:
    for stage in ("sft", "grpo"):
        if stage not in session.stages and session.run.done(stage):
            session.stages[stage] = session.run.done(stage)
    summary = runs.write_summary(session.run, session.stages)
    summary["wall_s"] = round(time.time() - session.started, 1)
    if distributed.is_main():
        runs.print_summary(summary)
        print(f"  wall time:   {summary['wall_s']} s")
    return summary
