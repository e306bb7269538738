"""The openai runtime: any OpenAI-compatible chat endpoint through `t2g.infer.openai_client` (timeouts,
retries, a pool of endpoints); constrained decoding through `response_format` with a JSON schema."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from t2g.infer.backends import Generation, Request
from t2g.infer.openai_client import EndpointError, chat_client
from t2g.task.constrained import response_format


class OpenAIBackend:
    """An OpenAI-compatible chat endpoint (vLLM, Ollama's /v1, llama.cpp's servers, hosted APIs).

    schema_style: how a constrained request sends its JSON schema; "json_schema" is the OpenAI form
    (OpenAI, vLLM, Ollama, llama.cpp's C++ server), "json_object" the llama-cpp-python server form.
    """

    name = "openai"

    def __init__(self, model: str, *, base_url: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 retries: int = 3, backoff: float = 1.0, concurrency: int = 1, schema_style: str = "json_schema",
                 sleep: Callable[[float], None] | None = None):
        response_format(["x"], ["y"], schema_style)  # reject a bad style now, not on the first row
        extra = {"sleep": sleep} if sleep is not None else {}
        # a comma-separated base_url: a pool, each request to the endpoint with the fewest in flight
        self.client = chat_client(base_url, model, api_key_env=api_key_env, timeout=timeout, retries=retries,
                                  backoff=backoff, **extra)
        self.schema_style = schema_style
        self.concurrency = max(1, int(concurrency))
        self.context_length: int | None = None  # unknown: chunking by characters only when asked
        self.count_tokens = None

    def generate(self, requests: Sequence[Request], *, max_new_tokens: int, constrained: bool = False,
                 reasoning: bool = False) -> list[Generation]:
        def one(request: Request) -> Generation:
            return self._one(request, max_new_tokens, constrained, reasoning)

        if self.concurrency == 1:
            return [one(r) for r in requests]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, requests))

    def _one(self, request: Request, max_new_tokens: int, constrained: bool, reasoning: bool) -> Generation:
        fmt = response_format(request.entity_types, request.relation_types, self.schema_style) if constrained else None
        try:
            text = self.client.chat(request.messages(reasoning), temperature=0.0, max_tokens=max_new_tokens,
                                    response_format=fmt, extra={"seed": 0})
        except EndpointError as exc:
            return Generation("", str(exc))
        return Generation(text)
