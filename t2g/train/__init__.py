"""Training: the recipe configuration, model loading with LoRA, SFT, GRPO, the run directory.

The top layer of the kit: it may import every other folder and `rewards`; nothing else imports
it. Modules that only read flags (`config.py`) import nothing heavy, so a wrong flag fails in a
second; torch, transformers, trl and unsloth are imported inside the functions that train.

    config.py          TrainConfig: every recipe flag with its help, the flag parsing, --help and the recipe command line
    validate.py        settings that cannot work together, refused before anything heavy runs
    pipeline.py        the stages in order; `run_recipe` is every recipe's main()
    session.py         data, length checks, the run directory and the model of one run
    model_loading.py   unsloth or transformers + peft, 4-bit or not, LoRA on top
    sft.py, grpo.py    the two trainers
    shared_prefix.py   GRPO's loss with each group's prompt computed once (a GRPOTrainer subclass)
    rollouts.py        which engine samples GRPO's completions (--rollout: trainer, llama.cpp, vllm)
    dynamic_sampling.py  DAPO's dynamic sampling: groups whose rewards are all equal replaced by fresh prompts
    llama_rollout.py   GRPO's completions sampled by llama.cpp from the current LoRA (TRL's rollout_func)
    trainer_args.py    what the two trainers share: arguments, checkpoints, closing a stage
    runs.py            the run directory: config, samples, summary, resume
    distributed.py     several processes under accelerate launch
    cpu_features.py    what this CPU computes natively (bf16 or not)
    trl_without_gpu.py stock TRL on a machine without a GPU
    malloc.py          which malloc a CPU training process runs on
"""
