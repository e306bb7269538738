"""GRPO stage: TRL's GRPOTrainer with the reward registry, weighted by name.

For each prompt, `num_generations` completions are sampled and scored by the rewards in
`rewards.REGISTRY` (each logged as `rewards/<name>/mean`); the weighted sum, normalised within the
group, is the advantage of a clipped policy-gradient step on the LoRA weights. Every
--sample_every steps one batch of completions with each reward goes to samples.jsonl.
"""

from __future__ import annotations

import sys

from t2g.train import distributed
from t2g.train import runs
from t2g.train.config import resolved_weights
from t2g.train.session import Session, ensure_model, grpo_rows
from t2g.train.trainer_args import SaveAtEnd, close_stage, common_args, resume_point, stage_already_done, trainable_in_compute_dtype


def grpo_config(cfg, run, reward_weights: list[float]):
    from trl import GRPOConfig

    return GRPOConfig(
        **common_args(cfg, run, "grpo"),
        max_steps=cfg.grpo_max_steps,
        learning_rate=cfg.grpo_learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=0.05,
        per_device_train_batch_size=cfg.grpo_batch_size,
        gradient_accumulation_steps=cfg.grpo_grad_accum,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        num_iterations=cfg.num_iterations,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        mask_truncated_completions=cfg.mask_truncated_completions,
        reward_weights=reward_weights,
        **vllm_args(cfg),
        log_completions=False,  # samples.jsonl instead (no rich/pandas dependency, rewards by name)
    )


def vllm_args(cfg) -> dict:
    """GRPOConfig's vLLM settings from --vllm_mode (validated: CUDA and vllm are present).

    unsloth: its fast_inference engine (loaded with the model) behind TRL's use_vllm; hf: TRL's own
    colocate mode, or its client for a `trl vllm-serve` server (which must serve the same base model).
    """
    if cfg.vllm_mode == "off":
        return {"use_vllm": False}
    args = {"use_vllm": True, "vllm_gpu_memory_utilization": cfg.gpu_memory_utilization}
    if cfg.backend == "hf":
        args["vllm_mode"] = cfg.vllm_mode
        if cfg.vllm_mode == "server":
            args.update(vllm_server_host=cfg.vllm_server_host, vllm_server_port=cfg.vllm_server_port,
                        vllm_server_timeout=cfg.vllm_server_timeout)
    return args


def build_rewards(cfg, tokenizer):
    """(functions, weights) from the registry, for the weights resolved by name."""
    import rewards

    return rewards.build(resolved_weights(cfg), reasoning=cfg.reasoning,
                         max_completion_length=cfg.max_completion_length, eos_token_id=tokenizer.eos_token_id)


def run_grpo(session: Session) -> dict:
    import rewards
    from datasets import Dataset
    from trl import GRPOTrainer

    cfg, run = session.cfg, session.run
    done = stage_already_done(session, "grpo", cfg.grpo_max_steps)
    if done:
        return done
    start_adapter = run.adapter_dir("sft") if session.loaded is None and run.done("sft") else None
    loaded = ensure_model(session, adapter=start_adapter)
    funcs, weights = build_rewards(cfg, loaded.tokenizer)
    print("t2g: grpo rewards: " + ", ".join(f"{f.__name__}={w:g}" for f, w in zip(funcs, weights)), file=sys.stderr)
    samples = runs.SampleLog(run, "grpo", cfg.sample_every, weights)
    runs.set_tracking_env(run, "grpo")
    trainer = GRPOTrainer(
        model=loaded.model,
        reward_funcs=samples.wrap(funcs),
        args=grpo_config(cfg, run, list(weights)),
        train_dataset=Dataset.from_list(grpo_rows(session.examples, cfg)),
        processing_class=loaded.tokenizer,
        callbacks=[SaveAtEnd(), *session.callbacks],
    )
    rewards.RewardDiagnosticsCallback(funcs).install(trainer)  # diagnostics/* rates beside the rewards
    trainable_in_compute_dtype(trainer)  # TRL's bf16 adapters for quantized models, under fp32 compute
    distributed.check_trainer(trainer)  # every launched process in one group, or stop here
    trainer.train(resume_from_checkpoint=resume_point(run, "grpo"))
    return close_stage(session, "grpo", trainer, extra={"rewards": [f.__name__ for f in funcs]})
