"""Synthetic training data: a teacher LLM turns raw texts into canonical, filtered, augmented graphs.

May import `t2g.task`, `t2g.data`, `t2g.files`, `t2g.flags` and `t2g.infer.openai_client` (the
teacher is an OpenAI-compatible endpoint).

    generate.py   `t2g generate`: the pipeline, stage by stage
    config.py     `GenerateConfig` (the command's flags, checked before any request), the side files, the summary
    jobs.py       requests in flight, answers appended as they come, read back on resume; one job per output
    filters.py    teacher answers parsed, types mapped onto the inventory, rows that fail a filter dropped
    teacher.py    what the teacher is asked: extraction requests and reasoning traces
    probe.py      `--structured=auto`: one probe before the run finds the structured output the endpoint takes
    sources.py    raw input texts (.txt, .jsonl, datasets folders, the hub), each with a stable id
    inventory.py  the teacher's proposed type names cleaned into one list
    dedup.py      near-duplicate texts (MinHash + LSH)
"""
