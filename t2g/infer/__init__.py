"""Inference: texts and types in, graphs out, through transformers, llama.cpp or any
OpenAI-compatible server, with the shared prompt and parser.

May import `t2g.task`, `t2g.data`, `t2g.models` and `t2g.files`; never training code. Heavy
libraries are imported inside the backends' constructors.

    extractor.py        `Extractor` and `extract()`: chunking, batching, parsing, merging
    backends.py         the three runtimes behind one `generate(requests)` interface
    llama_batched.py    several prompts decoded together on one llama.cpp model
    chunking.py         long texts cut into overlapping chunks, chunk graphs merged
    openai_client.py    a robust client for OpenAI-compatible endpoints (timeouts, retries)
    extract_command.py  `t2g extract`: one text from flags, or a JSONL file of texts in and graphs out
"""
