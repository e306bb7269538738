"""GRPO stage: TRL's GRPOTrainer with the reward registry, weighted by name.

For each prompt, `num_generations` completions are sampled and scored by the rewards in
`rewards.REGISTRY` (each logged as `rewards/<name>/mean`); the weighted sum, normalised within the
group, is the advantage of a clipped policy-gradient step on the LoRA weights. Every
--sample_every steps one batch of completions with each reward goes to samples.jsonl.

Who samples the completions is `--rollout` (`t2g.train.rollouts`): without CUDA, llama.cpp from
the current policy (`t2g.train.llama_rollout`), with DAPO-style dynamic sampling
(`t2g.train.dynamic_sampling`); the loss computes each group's shared prompt once
(`t2g.train.shared_prefix`) wherever TRL's own trainer runs. Every GRPOConfig field whose default
unsloth changes is set here from t2g's config, and `check_effective_args` fails the run when the
trainer ends up with other values, so both backends train alike.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from t2g.train import distributed, rollouts, runs
from t2g.train.config import resolved_weights
from t2g.train.session import Session, ensure_model, grpo_rows
from t2g.train.trainer_args import SaveAtEnd, close_stage, common_args, resume_point, stage_already_done, trainable_in_compute_dtype


def grpo_settings(cfg, reward_weights: list[float], engine: str) -> dict[str, Any]:
    """The GRPO fields t2g decides, beside `common_args`. unsloth's own GRPOConfig fills some of these
    with other defaults when they are left unset (epsilon_high 0.28 for dapo, weight_decay 0.001, no
    importance-sampling correction, a batch size of its choosing): none is left unset."""
    return dict(
        max_steps=cfg.grpo_max_steps,
        learning_rate=cfg.grpo_learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=0.05,
        weight_decay=cfg.grpo_weight_decay,
        per_device_train_batch_size=cfg.grpo_batch_size,
        gradient_accumulation_steps=cfg.grpo_grad_accum,
        steps_per_generation=cfg.grpo_grad_accum,  # one generation batch per optimizer step
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        min_p=cfg.min_p or None,
        repetition_penalty=1.0,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high or cfg.epsilon,
        num_iterations=cfg.num_iterations,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        mask_truncated_completions=cfg.mask_truncated_completions,
        reward_weights=reward_weights,
        vllm_importance_sampling_correction=True,  # TRL's default; unsloth's is off
        logging_nan_inf_filter=False,
        log_completions=False,  # samples.jsonl instead (no rich/pandas dependency, rewards by name)
        **vllm_args(cfg, engine),
    )


def grpo_config(cfg, run, reward_weights: list[float], engine: str = "trainer"):
    from trl import GRPOConfig

    return GRPOConfig(**common_args(cfg, run, "grpo"), **grpo_settings(cfg, reward_weights, engine))


def vllm_args(cfg, engine: str | None = None) -> dict:
    """GRPOConfig's vLLM settings for --rollout=vllm (validated: CUDA and vllm are present); engine None:
    vllm exactly when --vllm_mode is on.

    unsloth: its fast_inference engine (loaded with the model) behind TRL's use_vllm; hf: TRL's own
    colocate mode, or its client for a `trl vllm-serve` server (which must serve the same base model).
    """
    if (engine or ("vllm" if cfg.vllm_mode != "off" else "trainer")) != "vllm":
        return {"use_vllm": False}
    args = {"use_vllm": True, "vllm_gpu_memory_utilization": cfg.gpu_memory_utilization}
    if cfg.backend == "hf":
        args["vllm_mode"] = cfg.vllm_mode
        if cfg.vllm_mode == "server":
            args.update(vllm_server_host=cfg.vllm_server_host, vllm_server_port=cfg.vllm_server_port,
                        vllm_server_timeout=cfg.vllm_server_timeout)
    return args


# Fields the backends fill differently when unset or rewrite; unsloth's CPU backend may set use_cpu
# and bf16 by the CPU's abilities, which `common_args` already decided alike (checked as well).
CHECKED = ("learning_rate", "weight_decay", "per_device_train_batch_size", "gradient_accumulation_steps",
           "steps_per_generation", "num_generations", "max_completion_length", "temperature", "top_p", "top_k",
           "min_p", "beta", "epsilon", "epsilon_high", "num_iterations", "loss_type", "scale_rewards",
           "mask_truncated_completions", "use_vllm", "vllm_importance_sampling_correction", "optim", "bf16", "fp16",
           "seed", "max_steps", "gradient_checkpointing")


def check_effective_args(args: Any, expected: dict[str, Any]) -> None:
    """Fail when the trainer's arguments differ from what t2g set (a backend rewrote them)."""
    def norm(value: Any) -> Any:
        return getattr(value, "value", value)  # enums (optim, scheduler) compare by their names

    wrong = [f"{k}: set {norm(expected[k])!r}, trainer has {norm(getattr(args, k, None))!r}"
             for k in CHECKED if k in expected and norm(getattr(args, k, None)) != norm(expected[k])]
    if wrong:
        raise RuntimeError("the GRPO trainer's arguments differ from t2g's (a backend changed them): " + "; ".join(wrong))


def build_rewards(cfg, tokenizer):
    """(functions, weights) from the registry, for the weights resolved by name."""
    import rewards

    return rewards.build(resolved_weights(cfg), reasoning=cfg.reasoning,
                         max_completion_length=cfg.max_completion_length, eos_token_id=tokenizer.eos_token_id)


def _rollout_func(session: Session, rows: list[dict]):
    """(rollout_func for TRL, the llama.cpp rollout under it). Dynamic sampling scores with rewards of its
    own build, so that the diagnostics logged beside TRL's metrics count the trained batch only."""
    from t2g.train.dynamic_sampling import DynamicSampling
    from t2g.train.llama_rollout import LlamaCppRollout, base_type_of

    cfg, run = session.cfg, session.run
    threads = cfg.rollout_threads or len(os.sched_getaffinity(0))
    # The base model as a GGUF of the trainer's own weight dtype (converted once per run) plus the current
    # LoRA as a llama.cpp adapter.
    base = base_type_of(session.loaded.model) if cfg.rollout_base == "auto" else cfg.rollout_base
    print(f"t2g: llama.cpp samples from a {base} GGUF of the base (--rollout_base={cfg.rollout_base})", file=sys.stderr)
    run.record(grpo_rollout_base=base)
    rollout = LlamaCppRollout(session.model_name, run.stage_dir("grpo") / "rollout", n_threads=threads, seed=cfg.seed,
                              base_type=base)
    if not cfg.dynamic_sampling and not cfg.dynamic_sampling_spares:
        return rollout, rollout
    funcs, weights = build_rewards(cfg, session.tokenizer)
    return DynamicSampling(rollout, funcs, weights, rows, rounds=cfg.dynamic_sampling, seed=cfg.seed,
                           spares=cfg.dynamic_sampling_spares), rollout


def run_grpo(session: Session) -> dict:
    import rewards
    import torch
    from datasets import Dataset

    cfg, run = session.cfg, session.run
    done = stage_already_done(session, "grpo", cfg.grpo_max_steps)
    if done:
        return done
    cuda = torch.cuda.is_available()
    engine, why = rollouts.resolve(cfg, cuda)
    shared = rollouts.shared_prefix_on(cfg, cuda)
    print(f"t2g: grpo rollouts: {engine} ({why}); shared prompt in the loss: {'on' if shared else 'off'}", file=sys.stderr)
    run.record(grpo_rollout=engine, grpo_shared_prefix=shared)
    start_adapter = run.adapter_dir("sft") if session.loaded is None and run.done("sft") else None
    loaded = ensure_model(session, adapter=start_adapter)
    funcs, weights = build_rewards(cfg, loaded.tokenizer)
    print("t2g: grpo rewards: " + ", ".join(f"{f.__name__}={w:g}" for f, w in zip(funcs, weights)), file=sys.stderr)
    samples = runs.SampleLog(run, "grpo", cfg.sample_every, weights)
    runs.set_tracking_env(run, "grpo")
    rows = grpo_rows(session.examples, cfg)
    rollout_func, rollout = _rollout_func(session, rows) if engine == "llama.cpp" else (None, None)
    settings = grpo_settings(cfg, list(weights), engine)
    trainer_class = _trainer_class(shared)
    try:
        trainer = trainer_class(
            model=loaded.model,
            reward_funcs=samples.wrap(funcs),
            args=grpo_config(cfg, run, list(weights), engine),
            train_dataset=Dataset.from_list(rows),
            processing_class=loaded.tokenizer,
            callbacks=[SaveAtEnd(), *session.callbacks],
            rollout_func=rollout_func,
        )
        check_effective_args(trainer.args, {**settings, "optim": cfg.optim, "seed": cfg.seed,
                                            "gradient_checkpointing": cfg.gradient_checkpointing})
        if rollout is not None:  # a tokenizer or LoRA llama.cpp cannot take fails here, before any step
            rollout.check_tokenizer(trainer.processing_class, trainer_eos=getattr(trainer, "eos_token_ids", ()))
            rollout.maybe_sync(trainer)
        rewards.RewardDiagnosticsCallback(funcs).install(trainer)  # diagnostics/* rates beside the rewards
        trainable_in_compute_dtype(trainer)  # TRL's bf16 adapters for quantized models, under fp32 compute
        distributed.check_trainer(trainer)  # every launched process in one group, or stop here
        trainer.train(resume_from_checkpoint=resume_point(run, "grpo"))
    finally:
        if rollout is not None:
            rollout.close()  # frees llama.cpp and removes the adapter file
    return close_stage(session, "grpo", trainer, extra={"rewards": [f.__name__ for f in funcs], "rollout": engine})


def _trainer_class(shared_prefix: bool):
    from trl import GRPOTrainer

    if not shared_prefix:
        return GRPOTrainer
    from t2g.train.shared_prefix import shared_prefix_trainer

    return shared_prefix_trainer(GRPOTrainer)
