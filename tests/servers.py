"""Loopback servers for tests: a scriptable fake OpenAI endpoint and the real llama_cpp.server.

Both bind 127.0.0.1 only and are always stopped (context managers); the real one is bounded in
start-up time and killed if it does not stop.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator


def chat_body(content: str, finish_reason: str = "stop") -> dict:
    return {
        "id": "x", "object": "chat.completion", "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


# A handler returns one of: ("json", status, obj) | ("raw", status, bytes) | ("sleep", s, next) | ("drop",)
Action = tuple
Script = Callable[[dict, dict], Action]


class FakeServer:
    """A threaded HTTP server whose answers come from `script(body, headers)`; records requests."""

    def __init__(self, script: Script):
        self.script = script
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                headers = dict(self.headers.items())
                with outer.lock:
                    outer.requests.append(body)
                    outer.headers.append(headers)
                self._act(outer.script(body, headers))

            def _act(self, action: Action) -> None:
                kind = action[0]
                if kind == "sleep":
                    time.sleep(action[1])
                    return self._act(action[2])
                if kind == "drop":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                status, payload = action[1], action[2]
                data = json.dumps(payload).encode() if kind == "json" else payload
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (action[3] if len(action) > 3 else {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


SERVE_GGUF = Path(__file__).resolve().parents[1] / "scripts" / "serve_gguf.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, port: int, timeout_s: float, output: Callable[[], str]) -> None:
    """Until the server at `port` answers /v1/models; RuntimeError with the tail of its `output` when it
    exits or does not answer within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {output()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer within {timeout_s} s")
        time.sleep(0.2)


def llama_server_available() -> bool:
    """llama-cpp-python with its server extra (the `llama` extra of the kit)."""
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("uvicorn") is not None


@contextlib.contextmanager
def llama_server(model: Path, n_ctx: int = 2048, startup_s: float = 60.0, n_threads: int = 1) -> Iterator[str]:
    """Run llama_cpp.server (via scripts/serve_gguf.py) on a free loopback port; yields its base URL.

    One thread by default: on a shared, oversubscribed CPU llama.cpp's OpenMP threads spin-wait for
    each other (measured at load 10 on 2 cores: two real-server tests took 144 s with 2 threads,
    44 s with 1).
    """
    port = free_port()
    cmd = [sys.executable, str(SERVE_GGUF), "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads), "--verbose", "False",
           "--model_alias", "smollm2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OPENAI_API_KEY": ""})
    try:
        wait_ready(proc, port, startup_s, lambda: proc.stderr.read())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()
