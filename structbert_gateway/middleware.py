"""Pure-ASGI middleware: the guard (API key, body size, the gateway's own concurrency limit) and the
Prometheus metrics of every request (by route: count, latency, errors by kind)."""

from __future__ import annotations

import hmac
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .errors import ApiError, error_response

OPEN_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
                        "/playground"})
OPEN_PREFIXES = ("/static/",)  # the docs' and the playground's own assets


def is_open(path: str) -> bool:
    """Probes, the OpenAPI document, the docs and the playground page need no API key (the page's own
    requests do)."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or \
        (path.startswith("/models/") and path.endswith("/health"))


class Metrics:
    """The gateway's own metrics, in their own registry (served at ``/metrics``)."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("structbert_gateway_requests", "HTTP requests answered, by route and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("structbert_gateway_request_duration_seconds", "Time to answer, by route",
                                 ["route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.errors = Counter("structbert_gateway_errors", "Error answers by route and kind (invalid, too_large, "
                              "unauthorized, not_found, overloaded, unavailable, timeout, backend, internal)",
                              ["route", "kind"], registry=self.registry)
        self.in_flight = Gauge("structbert_gateway_in_flight_requests", "Requests being answered",
                               registry=self.registry)


class MetricsMiddleware:
    def __init__(self, app, metrics: Metrics, routes: frozenset[str]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "unmatched"
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        m = self.metrics
        m.in_flight.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            m.in_flight.dec()
            m.latency.labels(route).observe(time.perf_counter() - start)
            m.requests.labels(route, scope["method"], str(status[0])).inc()
            kind = scope.get("state", {}).get("error_kind")
            if kind is None and status[0] >= 400:
                kind = "invalid" if status[0] < 500 else "internal"
            if kind is not None:
                m.errors.labels(route, kind).inc()


class GuardMiddleware:
    """Refuses, before any work: a missing/wrong API key (401), a body over ``max_body_bytes`` (413,
    by Content-Length or while streaming), and inference requests beyond ``max_concurrent`` (429)."""

    def __init__(self, app, *, api_key: str | None, max_body_bytes: int, max_concurrent: int):
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.active = 0

    def _authorised(self, scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key)
        return False

    async def _refuse(self, error: ApiError, scope, receive, send) -> None:
        await error_response(error, scope["path"], scope)(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if self.api_key is not None and not is_open(path) and scope["method"] != "OPTIONS" \
                and not self._authorised(scope):
            return await self._refuse(ApiError("unauthorized", "missing or wrong API key: send the header "
                                               "'Authorization: Bearer <key>'", code="invalid_api_key"),
                                      scope, receive, send)
        too_large = ApiError("too_large", f"the request body is larger than this server's limit of "
                                          f"{self.max_body_bytes} bytes; send fewer or shorter texts")
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return await self._refuse(ApiError("invalid", "Content-Length is not a number"),
                                              scope, receive, send)
                if length > self.max_body_bytes:
                    return await self._refuse(too_large, scope, receive, send)
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        if self.active >= self.max_concurrent:
            return await self._refuse(ApiError("overloaded", f"the gateway is answering {self.active} requests, "
                                               "its limit; retry later"), scope, receive, send)
        received = [0]

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > self.max_body_bytes:
                    raise too_large  # an HTTPException: FastAPI's body parsing lets it through
            return message

        self.active += 1
        try:
            await self.app(scope, limited_receive, send)
        finally:
            self.active -= 1
