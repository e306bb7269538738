"""Export: merged HF weights, GGUF (llama.cpp's own converter, offline), Ollama Modelfile, parity check.

    from t2g.export import export_run, export_model
    export_run("runs/smollm2-smoke-...", quant=("q8_0", "q4_k_m"), parity_limit=8)

or `t2g export --model RUN_DIR --quant q8_0,q4_k_m`. Modules: `llamacpp` (find/fetch llama.cpp),
`gguf_convert` (convert, quantize), `merge` (LoRA -> 16-bit HF), `stage` (the whole export),
`card` (README). The Modelfile is `t2g.modelfile`; the parity check `t2g.parity`.
"""

from t2g.export.gguf_convert import ExportError
from t2g.export.llamacpp import LlamaCppNotFound, fetch_llama_cpp, find_llama_cpp
from t2g.export.stage import export_model, export_run

__all__ = ["ExportError", "LlamaCppNotFound", "export_model", "export_run", "fetch_llama_cpp", "find_llama_cpp"]
