"""SFT stage: teach the output format with LoRA on prompt/completion rows.

Loss on the completion only (TRL's default for prompt/completion rows, which also works with chat
templates that lack `{% generation %}` markers); batches padded to their longest row (TRL's
collator); seeded. Checkpoints every --save_steps; --resume continues from the last complete one.
"""

from __future__ import annotations

from t2g.train import distributed
from t2g.train import runs
from t2g.train.session import Session, ensure_model, sft_rows
from t2g.train.trainer_args import SaveAtEnd, close_stage, common_args, resume_point, stage_already_done, trainable_in_compute_dtype


def sft_config(cfg, run):
    from trl import SFTConfig

    return SFTConfig(
        **common_args(cfg, run, "sft"),
        max_steps=cfg.sft_max_steps,
        num_train_epochs=cfg.sft_epochs,
        learning_rate=cfg.sft_learning_rate,
        per_device_train_batch_size=cfg.sft_batch_size,
        gradient_accumulation_steps=cfg.sft_grad_accum,
        warmup_steps=cfg.sft_warmup_ratio,  # < 1: a fraction of the steps
        lr_scheduler_type="cosine",
        max_length=cfg.max_seq_length,  # never reached: check_lengths refused longer examples
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
    )


def run_sft(session: Session) -> dict:
    from datasets import Dataset
    from trl import SFTTrainer

    cfg, run = session.cfg, session.run
    done = stage_already_done(session, "sft", cfg.sft_max_steps)
    if done:
        return done
    loaded = ensure_model(session)
    runs.set_tracking_env(run, "sft")
    trainer = SFTTrainer(
        model=loaded.model,
        args=sft_config(cfg, run),
        train_dataset=Dataset.from_list(sft_rows(session.examples, cfg)),
        processing_class=loaded.tokenizer,
        callbacks=[SaveAtEnd(), *session.callbacks],
    )
    trainable_in_compute_dtype(trainer)  # TRL's bf16 adapters for quantized models, under fp32 compute
    distributed.check_trainer(trainer)  # every launched process in one group, or stop here
    trainer.train(resume_from_checkpoint=resume_point(run, "sft"))
    return close_stage(session, "sft", trainer)
