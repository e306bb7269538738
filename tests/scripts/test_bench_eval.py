"""scripts/bench_eval.py --gguf, as a user runs it on an exported GGUF: the llama.cpp rows only, the
table's ratios against one-at-a-time decoding, and the agreement line for batched decoding."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_bench_eval_on_a_gguf_compares_batched_with_one_at_a_time(tmp_path, conll04_dir, smollm2_gguf):
    pytest.importorskip("llama_cpp")
    env = dict(os.environ, UNSLOTH_AUTO_INSTALL="0", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_eval.py"), "--data", str(conll04_dir / "dev.json"), "--limit", "3",
         "--max_new_tokens", "12", "--n_threads", "1", "--batch_size", "3", "--gguf", str(smollm2_gguf),
         "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "hf" not in re.findall(r"^(\S+)", out, flags=re.M)  # --gguf: no HF row
    assert re.search(r"^llama\.cpp, one at a time\s+[\d.]+\s+1\.00x", out, flags=re.M)
    assert re.search(r"^llama\.cpp\s+[\d.]+\s+[\d.]+x", out, flags=re.M)
    assert re.search(r"^llama\.cpp \+ grammar\s+[\d.]+\s+[\d.]+x", out, flags=re.M)
    assert re.search(r"^identical completions, llama\.cpp, one at a time vs llama\.cpp: [0-3]/3$", out, flags=re.M)
    for name in ("llama.cpp_one_at_a_time", "llama.cpp", "llama.cpp_grammar"):
        assert (tmp_path / name / "report.json").is_file()
