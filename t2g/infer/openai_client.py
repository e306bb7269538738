"""A small, robust client for OpenAI-compatible chat endpoints (vLLM, Ollama, llama.cpp, hosted APIs).

One POST to `{base_url}/chat/completions` per call, with bounded retries and exponential backoff on
the faults that are worth retrying (timeouts, refused or dropped connections, 408/409/425/429,
5xx, and malformed or non-JSON bodies, which in practice come from overloaded proxies). Other 4xx
answers fail at once because repeating the same request cannot fix them, and so does a 5xx (or an
error object) whose body says the request itself is invalid (`INVALID_REQUEST_MARKERS`):
llama-cpp-python answers 500 to a field it does not know ("1 validation error ... Input should be
'text' or 'json_object'"). After the last try it raises `EndpointError` naming the URL, the HTTP
status and the last error; its `fatal` says whether that error was one no retry could fix.

The API key is read from the environment variable named by `api_key_env` at request time, sent only
in the Authorization header, and redacted from every error message (a server may echo it back).
No key set means no Authorization header: local servers need none.

Standard library only (urllib), so the kit needs no HTTP dependency for this. `timeout` bounds
each socket operation (connect, each read), as urllib does, not the whole request.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # a chat answer is never this big; a broken server might be
MAX_BACKOFF_S = 60.0
_SNIPPET = 300  # characters of a server's body quoted in an error
# Phrases (lower case) of a server error body that blame the request, not the server's state.
INVALID_REQUEST_MARKERS = ("input should be", "validation error", "invalid request", "invalid_request",
                           "unsupported", "not supported", "extra inputs are not permitted",
                           "unrecognized request argument")


class EndpointError(RuntimeError):
    """The endpoint failed for good (after retries, or with a non-retryable answer).

    fatal: the last error was one that no retry can fix (a 4xx, or a body blaming the request);
    detail: that error without the "POST <url> failed after..." preamble.
    """

    def __init__(self, message: str, url: str, status: int | None = None, attempts: int = 0,
                 fatal: bool = False, detail: str = ""):
        super().__init__(message)
        self.url = url
        self.status = status
        self.attempts = attempts
        self.fatal = fatal
        self.detail = detail or message


class _Retryable(Exception):
    """One failed attempt that a retry may fix."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _Fatal(_Retryable):
    """One failed attempt that retrying cannot fix (e.g. 400, 401, 404, a 500 blaming the request)."""


def blames_request(text: str) -> bool:
    """Whether an error body says the request itself is invalid (so the same request fails again)."""
    lower = text.lower()
    return any(marker in lower for marker in INVALID_REQUEST_MARKERS)


@dataclass(frozen=True)
class ChatResponse:
    content: str
    finish_reason: str | None = None
    usage: dict = field(default_factory=dict)


class OpenAIChatClient:
    """`chat(messages) -> str` against any OpenAI-compatible endpoint.

    retries: how many times a failed attempt is repeated (so at most 1 + retries requests);
    backoff: the first wait in seconds, doubled after each failure (capped at 60 s; a 429's
    Retry-After header is honoured when it is longer). Thread-safe: no state changes per call.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r} (e.g. http://127.0.0.1:8000/v1)")
        if not model:
            raise ValueError("model must be a non-empty model name as the endpoint knows it")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError(f"need timeout > 0, retries >= 0, backoff >= 0; got {timeout}, {retries}, {backoff}")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._sleep = sleep

    def chat(self, messages: Sequence[Mapping[str, str]], **kwargs: Any) -> str:
        """The assistant message's text (keywords: those of `complete`). Raises EndpointError when the
        endpoint fails for good."""
        return self.complete(messages, **kwargs).content

    def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        response_format: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ChatResponse:
        """Like `chat`, but also returns finish_reason ("length" = cut off) and token usage."""
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages], "temperature": temperature}
        if max_tokens is not None:
            body["max_tokens"] = int(max_tokens)
        if response_format is not None:
            body["response_format"] = dict(response_format)
        if extra:
            body.update(extra)  # endpoint-specific knobs: llama.cpp `grammar`, Ollama `format`, `seed`...
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return self._with_retries(data)

    # --- internals --------------------------------------------------------------------------

    def _api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None

    def _redact(self, text: str) -> str:
        key = self._api_key()
        return text.replace(key, "<redacted>") if key else text

    def _with_retries(self, data: bytes) -> ChatResponse:
        attempts = 1 + self.retries
        last: _Retryable | None = None
        for attempt in range(attempts):
            try:
                return self._attempt(data)
            except _Fatal as exc:
                raise self._error(exc, attempt + 1) from None
            except _Retryable as exc:
                last = exc
                if attempt + 1 < attempts:
                    self._sleep(self._delay(attempt, exc.retry_after))
        assert last is not None
        raise self._error(last, attempts) from None

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.backoff * (2 ** attempt), MAX_BACKOFF_S)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_BACKOFF_S))
        return delay

    def _error(self, exc: _Retryable, attempts: int) -> EndpointError:
        status = f"HTTP {exc.status}" if exc.status is not None else "no HTTP status"
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        message = self._redact(f"POST {self.url} failed after {tries} ({status}): {exc}")
        return EndpointError(message, self.url, exc.status, attempts, fatal=isinstance(exc, _Fatal),
                             detail=self._redact(f"{status}: {exc}"))

    def _attempt(self, data: bytes) -> ChatResponse:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                raw = resp.read(MAX_RESPONSE_BYTES + 1)
                status = resp.status
        except urllib.error.HTTPError as exc:
            raise _http_failure(exc) from None
        except (TimeoutError, socket.timeout) as exc:
            raise _Retryable(f"timed out after {self.timeout:g} s ({exc})") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.timeout:g} s ({exc.reason})") from None
            raise _Retryable(f"cannot connect: {exc.reason}") from None
        except (http.client.HTTPException, ConnectionError, OSError) as exc:
            raise _Retryable(f"connection failed: {type(exc).__name__}: {exc}") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise _Retryable(f"response larger than {MAX_RESPONSE_BYTES} bytes", status)
        return _parse_response(raw, status)


def _snippet(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def _http_failure(exc: urllib.error.HTTPError) -> _Retryable:
    try:
        body = exc.read(64 * 1024)
    except Exception:  # the body is only for the message; a broken one must not hide the status
        body = b""
    message = f"server answered {exc.code} {exc.reason}: {_snippet(body) or '(empty body)'}"
    if exc.code >= 500 and blames_request(body.decode("utf-8", errors="replace")):
        return _Fatal(message, exc.code)  # the same request would be refused the same way
    if exc.code in RETRY_STATUSES or exc.code >= 500:
        return _Retryable(message, exc.code, _retry_after(exc.headers.get("Retry-After") if exc.headers else None))
    return _Fatal(message, exc.code)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


def _parse_response(raw: bytes, status: int) -> ChatResponse:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Retryable(f"response is not JSON ({exc}): {_snippet(raw) or '(empty body)'}", status) from None
    if not isinstance(obj, dict):
        raise _Retryable(f"response is JSON but not an object: {_snippet(raw)}", status)
    if "error" in obj and "choices" not in obj:
        detail = json.dumps(obj["error"], ensure_ascii=False)
        kind = _Fatal if blames_request(detail) else _Retryable
        raise kind(f"endpoint reported an error: {_snippet(detail.encode())}", status)
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Retryable(f"response has no choices[0]: {_snippet(raw)}", status)
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise _Retryable(f"response has no choices[0].message.content string: {_snippet(raw)}", status)
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
    finish = choices[0].get("finish_reason")
    return ChatResponse(content, finish if isinstance(finish, str) else None, usage)


# ----------------------------------------------------------------------------------------------
# Several endpoints serving the same model: fan requests out over them.


def split_base_urls(base_url: str | Sequence[str]) -> list[str]:
    """`http://a:8000/v1,http://b:8000/v1` (or a list) -> the endpoint URLs, in order."""
    parts = base_url.split(",") if isinstance(base_url, str) else [str(u) for u in base_url]
    urls = [u.strip() for u in parts if u.strip()]
    if not urls:
        raise ValueError(f"base_url names no endpoint: {base_url!r} (e.g. http://127.0.0.1:8000/v1)")
    if len(set(urls)) != len(urls):
        raise ValueError(f"base_url names an endpoint twice: {base_url!r}")
    return urls


class EndpointPool:
    """The `OpenAIChatClient` interface over several endpoints that serve the same model.

    Each request goes to the endpoint with the fewest requests in flight (ties: round-robin), so a
    slow or busy server gets less work. Retries stay with the endpoint that was chosen; an endpoint
    that fails for good raises its own `EndpointError` (naming its URL): no request is quietly
    moved to another server. Thread-safe; `in_flight` and `served` are counters for inspection.
    """

    def __init__(self, clients: Sequence[OpenAIChatClient]):
        import threading

        if len(clients) < 1:
            raise ValueError("EndpointPool needs at least one client")
        self.clients = list(clients)
        self.model = self.clients[0].model
        self.base_url = ",".join(c.base_url for c in self.clients)
        self.url = ",".join(c.url for c in self.clients)
        self.in_flight = [0] * len(self.clients)
        self.served = [0] * len(self.clients)
        self._lock = threading.Lock()
        self._next = 0

    def _acquire(self) -> int:
        with self._lock:
            n = len(self.clients)
            order = [(self._next + k) % n for k in range(n)]
            best = min(order, key=lambda i: self.in_flight[i])  # min keeps the first among equals
            self._next = (best + 1) % n
            self.in_flight[best] += 1
            return best

    def _release(self, i: int) -> None:
        with self._lock:
            self.in_flight[i] -= 1
            self.served[i] += 1

    def complete(self, messages: Sequence[Mapping[str, str]], **kwargs: Any) -> ChatResponse:
        i = self._acquire()
        try:
            return self.clients[i].complete(messages, **kwargs)
        finally:
            self._release(i)

    def chat(self, messages: Sequence[Mapping[str, str]], **kwargs: Any) -> str:
        return self.complete(messages, **kwargs).content


def chat_client(base_url: str | Sequence[str], model: str, **kwargs: Any) -> OpenAIChatClient | EndpointPool:
    """One client for one URL; an `EndpointPool` for a comma-separated list (or a list) of URLs."""
    urls = split_base_urls(base_url)
    if len(urls) == 1:
        return OpenAIChatClient(urls[0], model, **kwargs)
    return EndpointPool([OpenAIChatClient(u, model, **kwargs) for u in urls])
