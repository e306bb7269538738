"""What the SFT and GRPO stages share: trainer arguments, callbacks, and closing a stage."""

from __future__ import annotations

import math
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from t2g.files import atomic_dir, write_json_atomic
from t2g.train import distributed


class SaveAtEnd(TrainerCallback):
    """Checkpoint the final step too, so a run that stopped at max_steps can be resumed to more."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_save = True
        return control


def precision(cfg) -> dict[str, bool]:
    """bf16/fp16 autocast on CUDA; on CPU plain fp32 unless --dtype asks otherwise (TRL defaults bf16=True
    even on CPU, where it is emulated and slow without AMX/AVX512-BF16)."""
    import torch

    if cfg.dtype == "auto":
        if not torch.cuda.is_available():
            return {"bf16": False, "fp16": False}
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16}
    return {"bf16": cfg.dtype == "bf16", "fp16": cfg.dtype == "fp16"}  # fp16 without CUDA: refused by validate


def common_args(cfg, run, stage: str) -> dict[str, Any]:
    report = [r for r in cfg.report_to if r != "none"] or "none"
    return dict(
        output_dir=str(run.stage_dir(stage)),
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=report,
        run_name=f"{run.dir.name}-{stage}",
        seed=cfg.seed,
        data_seed=cfg.seed,
        optim=cfg.optim,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        dataloader_num_workers=0,
        **precision(cfg),
        **cpu_args(cfg),
    )


def cpu_args(cfg) -> dict[str, Any]:
    """Without CUDA the Trainer must be told it runs on CPU in two cases: several processes (a CPU
    gloo group; otherwise accelerate treats every rank as a separate one-process run) and bf16
    autocast (fast on AMX / AVX512-BF16 cores; refused without use_cpu)."""
    import torch

    if torch.cuda.is_available():
        return {}
    return {"use_cpu": True} if distributed.is_distributed() or precision(cfg)["bf16"] else {}


def trainable_in_compute_dtype(trainer) -> None:
    """Without autocast, raise trainable weights that are coarser than the model's compute dtype to it.

    TRL stores a quantized model's trainable weights in bf16 (QLoRA's recipe, made for bf16 compute).
    A run that computes in fp32 (a CPU without native bf16, where t2g and unsloth choose fp32) would
    then feed fp32 activations to bf16 weights: a fully trained lm_head fails ("expected m1 and m2 to
    have the same dtype"), and every LoRA matmul runs in emulated bf16. The embeddings' dtype is the
    activations' dtype. Finer weights stay as they are (PEFT keeps LoRA in fp32 beside a bf16 base and
    casts in its forward), and under bf16/fp16 autocast TRL's choice stands.
    """
    import torch

    if trainer.args.bf16 or trainer.args.fp16:
        return
    compute = trainer.model.get_input_embeddings().weight.dtype
    if not compute.is_floating_point:
        return
    for param in trainer.model.parameters():
        if (param.requires_grad and param.dtype.is_floating_point
                and torch.finfo(param.dtype).bits < torch.finfo(compute).bits):
            param.data = param.data.to(compute)


def resume_point(run, stage: str):
    """The checkpoint to continue from (or None for a fresh start)."""
    if not run.cfg.resume:
        return None
    ckpt = run.last_checkpoint(stage)
    if ckpt is not None:
        print(f"t2g: {stage}: resuming from {ckpt}", file=sys.stderr)
    return str(ckpt) if ckpt else None


def close_stage(session, stage: str, trainer, extra: dict | None = None) -> dict:
    """Save the stage's adapter and log history, then mark it done (done.json is written last).

    Every rank takes part in the save (DeepSpeed ZeRO-3 and FSDP gather the sharded LoRA weights
    through the Trainer); rank 0 alone writes files.
    """
    run = session.run
    history = trainer.state.log_history
    if distributed.is_main():
        write_json_atomic(run.stage_dir(stage) / "log_history.json", history)
    save_adapter(session, trainer, run.adapter_dir(stage))
    distributed.report_rank_state(stage, session.loaded.model, trainer.state.global_step, run.dir)
    info = {"steps": trainer.state.global_step, "adapter": str(run.adapter_dir(stage))}
    last = {k: v for row in history for k, v in row.items() if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}
    for key in ("train_loss", "loss", "reward", "train_runtime"):
        if key in last:
            info[key] = float(last[key])
    info.update(extra or {})
    run.mark_done(stage, info)
    return info


def save_adapter(session, trainer, path) -> Path:
    """The stage's final adapter and tokenizer, staged and renamed into place (`t2g.files.atomic_dir`).

    Several processes: every rank takes part in `trainer.save_model`, the engine-aware save that
    gathers ZeRO-3/FSDP shards and writes from the main process only; rank 0 names the staging
    folder and renames it. One process: the PEFT model saves itself, as the trainer would.
    """
    path = Path(path)
    with atomic_dir(path) if distributed.is_main() else nullcontext() as staging:
        staging = Path(distributed.broadcast(str(staging) if staging else None))
        if distributed.is_distributed():
            trainer.save_model(str(staging))
            distributed.barrier()  # every rank's part is written before rank 0 renames the folder
        else:
            session.loaded.model.save_pretrained(str(staging))
        if distributed.is_main():
            session.loaded.tokenizer.save_pretrained(str(staging))
            (staging / "training_args.bin").unlink(missing_ok=True)  # the Trainer's; the checkpoints keep theirs
    distributed.barrier()
    return path


def stage_already_done(session, stage: str, max_steps: int) -> dict | None:
    """On --resume, a finished stage is skipped unless more steps are now asked for."""
    done = session.run.done(stage) if session.cfg.resume else None
    if done and (max_steps <= 0 or done["steps"] >= max_steps):
        print(f"t2g: {stage}: already finished ({done['steps']} steps); skipping", file=sys.stderr)
        return done
    return None
