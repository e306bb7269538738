"""Run llama-cpp-python's OpenAI-compatible server with weight repacking turned off.

    python scripts/serve_gguf.py --model model.gguf --host 127.0.0.1 --port 8000 --model_alias teacher

Takes exactly the flags of `python -m llama_cpp.server` (see its --help). Why it exists: with
llama-cpp-python 0.3.36 on our CPUs (AVX512 + AMX_INT8), the extra weight buffers used for
repacking crash the process (SIGSEGV) on any prompt of more than one token, e.g. the SmolLM2
Q4_1 GGUF. Setting `use_extra_bufts = False` in the model parameters avoids it (1.7 s for a
209-token prompt + 93 tokens, where `--n_ubatch 1`, the other workaround, took 29 s).
"""

from __future__ import annotations

import runpy

from t2g.infer.llama_cpp_backend import extra_buffer_types


def main() -> None:
    # The server loads its models inside the block, so every one gets the patched defaults.
    with extra_buffer_types(False):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
