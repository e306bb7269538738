"""Inference: texts and types in, graphs out, through transformers, llama.cpp or any
OpenAI-compatible server, with the shared prompt and parser.

    from t2g import Extractor          # = t2g.infer.extractor.Extractor
    graph = Extractor("runs/my-run").extract("Tim Cook runs Apple.", ["person", "organization"], ["works for"])

May import `t2g.task`, `t2g.data`, `t2g.models`, `t2g.flags` and `t2g.files`; never training code.
Heavy libraries are imported inside the backends' constructors.

    extractor.py          the Python API: `Extractor` (a model loaded once), `ExtractionError`, `extract()`, `open_backend`
    options.py            the flags every inference command shares and each runtime's options, declared once
    resolve.py            a model name -> which runtime loads which files (`resolve_model`, `ModelSpec`)
    runner.py             requests through a backend: chunking, batching, parsing, merging (`Runner`, `Extraction`)
    backends.py           what the runtimes' backends share: `Request`, `Generation`, `BackendError`
    hf_backend.py         transformers (+ peft), batched greedy generation
    llama_cpp_backend.py  llama-cpp-python on a GGUF, GBNF-constrained or batched
    greedy_grammar.py     GBNF-constrained greedy decoding that checks the argmax first
    llama_batched.py      several prompts decoded together on one llama.cpp model
                          (greedy, or sampled n per prompt with log-probs; a LoRA adapter swapped in)
    openai_backend.py     an OpenAI-compatible server, JSON-schema-constrained
    openai_client.py      a robust client for OpenAI-compatible endpoints (timeouts, retries, pools)
    chunking.py           long texts cut into overlapping chunks, chunk graphs merged
    extract_command.py    `t2g extract`: one text from flags, or a JSONL file of texts in and graphs out
"""
