"""The workloads through the HTTP gateway: one keep-alive ``http.client`` connection per client thread
(no SDK, no retries), statuses mapped to the SDK's exception types so the load tools count them alike."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from .workloads import CATEGORIES, NER_SCHEMA

# (route, body of one request) per workload: what an OpenAI/TEI user sends for the same work
ROUTES: dict[str, tuple[str, Callable[[tuple], dict]]] = {
    "embedding": ("/v1/embeddings", lambda p: {"input": p[0], "model": "text_embedding"}),
    "similarity": ("/similarity", lambda p: {"inputs": {"source_sentence": p[0], "sentences": [p[1]]}}),
    "pair": ("/predict", lambda p: {"inputs": [p[0], p[1]]}),
    "zero_shot": ("/v1/classify", lambda p: {"texts": p[0], "labels": CATEGORIES}),
    "uie": ("/v1/extract", lambda p: {"texts": p[0], "schema": NER_SCHEMA}),
}


def _error(status: int, text: str) -> Exception:
    from structbert_client import (
        InvalidInputError,
        RequestTimeoutError,
        ServerError,
        ServerOverloadedError,
        ServerUnavailableError,
    )

    cls = {429: ServerOverloadedError, 503: ServerUnavailableError, 504: RequestTimeoutError}.get(status)
    if cls is None:
        cls = InvalidInputError if 400 <= status < 500 else ServerError
    return cls(f"HTTP {status}: {text[:200]}", status=str(status))


def gateway_worker(url: str, workload: str, timeout_s: float = 120.0) -> Callable[[], Callable[[tuple], object]]:
    """A factory of one client's call of ``workload`` against the gateway at ``url`` (http://host:port)."""
    route, body = ROUTES[workload]
    parts = urlsplit(url)

    def make() -> Callable[[tuple], object]:
        local = threading.local()  # callers may share one call between threads (overload_run does)

        def call(payload: tuple) -> object:
            from structbert_client import RequestTimeoutError, ServerUnavailableError

            data = json.dumps(body(payload), ensure_ascii=False).encode()
            for _ in range(2):  # a second time only after a reused connection failed
                conn = getattr(local, "conn", None)
                reused = conn is not None
                if conn is None:
                    conn = local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
                try:
                    conn.request("POST", route, data, {"Content-Type": "application/json"})
                    response = conn.getresponse()
                    text = response.read()
                    break
                except TimeoutError as exc:
                    conn.close()
                    local.conn = None
                    raise RequestTimeoutError(f"no answer within {timeout_s} s") from exc
                except (ConnectionError, http.client.HTTPException, OSError) as exc:
                    conn.close()
                    local.conn = None
                    # a kept-alive connection the server closed while idle (uvicorn: after 5 s): once more
                    # on a new one, as HTTP client libraries do; a new connection that fails is the answer
                    if not reused:
                        raise ServerUnavailableError(f"{type(exc).__name__}: {exc}") from exc
            if response.status != 200:
                raise _error(response.status, text.decode(errors="replace"))
            return json.loads(text)
        return call
    return make
