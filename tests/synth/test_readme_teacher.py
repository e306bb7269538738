"""The README's teacher example, run as written: `scripts/serve_gguf.py` serving SmolLM2-135M through
llama-cpp-python's server, then `t2g generate` with the README's flags (so `--structured=auto`).

The two commands are read from README.md, so the test and the README cannot drift apart. Only the
files and the port are swapped for the test's own (the GGUF fixture, a free port, a temporary
folder), and `--max_tokens` is appended to keep a CPU run short. A 135M model writes poor graphs, so
the assertions are on the mechanics: auto picks json_object (llama-cpp-python refuses json_schema),
no row fails, and no row is asked twice for an error that no retry can fix.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from servers import free_port, llama_server_available, wait_ready

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["Jeff Bezos founded Amazon in Seattle.", "Satya Nadella works for Microsoft in Redmond."]
EXTRA = ["--max_tokens", "48"]  # the only flag the test adds: a short answer per row


def readme_commands() -> tuple[list[str], list[str]]:
    """The server and `t2g generate` command lines of the README's synthetic-data section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Synthetic data from a teacher model", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    serve, gen = commands
    assert serve[:2] == ["python", "scripts/serve_gguf.py"] and serve[-1] == "&", serve
    assert gen[:2] == ["t2g", "generate"] and "--structured" not in gen, gen
    return serve[:-1], gen


def swap(argv: list[str], files: dict[str, str], port: str) -> list[str]:
    """The README's file names and port 8000 replaced by the test's own; nothing else changes."""
    return [files.get(t, t.replace(":8000/", f":{port}/") if t != "8000" else port) for t in argv]


def test_readme_block_is_what_the_test_runs():
    serve, gen = readme_commands()
    assert serve == ["python", "scripts/serve_gguf.py", "--model", "teacher.gguf", "--port", "8000", "--n_threads", "1"]
    assert gen[2:] == ["--input", "texts.txt", "--output", "data.jsonl", "--base_url", "http://127.0.0.1:8000/v1",
                       "--model", "teacher", "--entity_types", "person,organization,location",
                       "--relation_types", "works for,located in", "--concurrency", "4"]


@pytest.mark.slow
@pytest.mark.skipif(not llama_server_available(), reason="needs llama-cpp-python[server] (the llama extra)")
def test_readme_teacher_example_runs_with_the_default_structured(tmp_path, smollm2_gguf):
    serve, gen = readme_commands()
    port = str(free_port())
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    files = {"teacher.gguf": str(smollm2_gguf), "texts.txt": str(tmp_path / "texts.txt"),
             "data.jsonl": str(tmp_path / "data.jsonl")}
    t2g = Path(sys.executable).with_name("t2g")  # the venv's console script, as the README calls it
    t2g_cmd = [str(t2g)] if t2g.exists() else [sys.executable, "-m", "t2g.cli"]
    gen_argv = t2g_cmd + swap(gen[1:], files, port) + EXTRA
    env = {**os.environ, "OPENAI_API_KEY": ""}  # a key in the developer's shell must not go to a local server
    log = tmp_path / "server.log"
    with log.open("w") as log_f:
        proc = subprocess.Popen([sys.executable, *swap(serve[1:], files, port)], cwd=REPO, stdout=log_f,
                                stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(proc, int(port), 90.0, log.read_text)
            run = subprocess.run(gen_argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "t2g generate: --structured=auto chose json_object (the server refused json_schema: HTTP 500" in run.stderr
    summary = json.loads((tmp_path / "data.summary.json").read_text())
    assert summary["structured"]["used"] == "json_object" and summary["failed_rows"] == 0
    assert summary["teacher"]["answered_now"] == 2 and "stopped_early" not in summary
    assert summary["examples_kept"] + sum(summary["dropped_after_teacher"].values()) == 2  # every row accounted for
    errors = tmp_path / "data.errors.jsonl"
    rows = [json.loads(line) for line in errors.read_text().splitlines()] if errors.exists() else []
    assert all(e["attempts"] == 1 for e in rows if not e["retryable"]) and rows == []
