"""Every failure the caller sees, in one place: which kind it is, its HTTP status, and its body.

Three body styles, chosen by the route: OpenAI's ``{"error": {"message", "type", "param", "code"}}``
(``/v1/*``), text-embeddings-inference's ``{"error", "error_type"}`` (TEI's routes, every model's own
root ``/models/{model}`` and ``POST /``) and Cohere's ``{"message"}`` (``/v1/embed``, ``/v2/*``, with
OpenAI's status codes, which Cohere's SDKs map to their error classes). Kinds:

=============  ===========  ===========  ==============================================
kind           OpenAI       TEI          from
=============  ===========  ===========  ==============================================
invalid        400          422          request validation, Triton INVALID_ARG
too_large      413          413          body over ``--max-body-bytes``, batch over ``--max-client-batch``
unauthorized   401          401          missing or wrong ``Authorization: Bearer`` key
not_found      404          404          unknown ``model``
overloaded     429          429          Triton refused (queue full / queue timeout), gateway at its limit
unavailable    503          503          Triton down, not ready, a dead stub
timeout        504          504          no answer within ``--timeout-s``
backend        500          424          any other Triton error
=============  ===========  ===========  ==============================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from structbert_client.errors import (
    InvalidInputError,
    RequestTimeoutError,
    ServerOverloadedError,
    ServerUnavailableError,
    translate,
)

log = logging.getLogger(__name__)

TEI_PATHS = frozenset({"/", "/embed", "/rerank", "/similarity", "/predict", "/info", "/health"})
COHERE_PATHS = frozenset({"/v1/embed", "/v2/embed", "/v2/rerank"})


@dataclass(frozen=True)
class Kind:
    openai_status: int
    tei_status: int
    openai_type: str
    tei_type: str


KINDS: dict[str, Kind] = {
    "invalid": Kind(400, 422, "invalid_request_error", "validation"),
    "too_large": Kind(413, 413, "invalid_request_error", "validation"),
    "unauthorized": Kind(401, 401, "invalid_request_error", "unauthorized"),
    "not_found": Kind(404, 404, "invalid_request_error", "not_found"),
    "overloaded": Kind(429, 429, "overloaded_error", "overloaded"),
    "unavailable": Kind(503, 503, "server_error", "unhealthy"),
    "timeout": Kind(504, 504, "server_error", "backend"),
    "backend": Kind(500, 424, "server_error", "backend"),
    "internal": Kind(500, 500, "server_error", "backend"),
}
RETRY_AFTER_S = {"overloaded": "1", "unavailable": "5"}


class ApiError(HTTPException):
    """Raised anywhere in the gateway; :func:`error_response` renders it in the route's style.
    (An ``HTTPException`` so that FastAPI passes it through its body parsing untouched.)"""

    def __init__(self, kind: str, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(KINDS[kind].openai_status, message)
        self.kind = kind
        self.message = message
        self.param = param
        self.code = code or kind


def style_for(path: str) -> str:
    if path in TEI_PATHS or path.startswith("/models/"):
        return "tei"
    return "cohere" if path in COHERE_PATHS else "openai"


def status_of(kind: str, path: str) -> int:
    k = KINDS[kind]
    return k.tei_status if style_for(path) == "tei" else k.openai_status


def error_body(error: ApiError, path: str) -> dict:
    k = KINDS[error.kind]
    style = style_for(path)
    if style == "tei":
        return {"error": error.message, "error_type": k.tei_type}
    if style == "cohere":
        return {"message": error.message}
    return {"error": {"message": error.message, "type": k.openai_type, "param": error.param, "code": error.code}}


def error_response(error: ApiError, path: str, scope: dict | None = None) -> Response:
    """The response for ``error`` on ``path``; notes the kind in the ASGI scope for the metrics."""
    if scope is not None:
        scope.setdefault("state", {})["error_kind"] = error.kind
    headers = {}
    if error.kind in RETRY_AFTER_S:
        headers["Retry-After"] = RETRY_AFTER_S[error.kind]
    if error.kind == "unauthorized":
        headers["WWW-Authenticate"] = "Bearer"
    body = json.dumps(error_body(error, path), ensure_ascii=False).encode()
    return Response(body, status_code=status_of(error.kind, path), headers=headers, media_type="application/json")


# -- from Triton ------------------------------------------------------------------------------------

_TENSOR_INDEX = re.compile(r"\b([A-Z][A-Z_]*)\[(\d+)\]")


def rename_tensors(message: str, fields: dict[str, str], offset: int = 0) -> str:
    """``TEXT[3] is empty`` -> ``input[35] is empty``: Triton's tensor names and chunk-relative rows
    become the request's field names and absolute indices."""
    def sub(match: re.Match) -> str:
        name, index = match.group(1), int(match.group(2))
        if name not in fields:
            return match.group(0)
        return f"{fields[name]}[{index + offset}]"
    message = _TENSOR_INDEX.sub(sub, message)
    for tensor, field in fields.items():
        message = re.sub(rf"\b{tensor}\b", field, message)
    return message


def from_triton(exc: BaseException, fields: dict[str, str] | None = None, offset: int = 0) -> ApiError:
    """A tritonclient / transport exception as an :class:`ApiError` (reuses the SDK's classification)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, asyncio.TimeoutError):
        return ApiError("timeout", "Triton did not answer in time; retry later or raise --timeout-s")
    error = translate(exc)
    message = rename_tensors(str(error), fields or {}, offset)
    status = error.status or ""
    if status == "StatusCode.NOT_FOUND":  # the model is not (yet) loaded: not the caller's fault
        return ApiError("unavailable", f"the model is not available: {message}")
    if isinstance(error, ServerOverloadedError):
        return ApiError("overloaded", f"the server is overloaded, retry later: {message}")
    if isinstance(error, ServerUnavailableError):
        return ApiError("unavailable", f"the inference server is unavailable: {message}")
    if isinstance(error, RequestTimeoutError):
        return ApiError("timeout", f"the inference server did not answer in time: {message}")
    if isinstance(error, InvalidInputError):
        return ApiError("invalid", message, param=next(iter((fields or {}).values()), None))
    log.error("Triton error: %s", message)
    return ApiError("backend", f"inference failed: {message}")


# -- FastAPI exception handlers ----------------------------------------------------------------------

def _loc(loc) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """Pydantic's errors as one readable sentence, and the first offending parameter."""
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
        return "the request needs a JSON body", None
    seen, parts = set(), []
    for e in errors[:5]:
        where = _loc(e.get("loc", ()))
        msg = f"{where}: {e.get('msg', 'invalid')}"
        if msg not in seen:
            seen.add(msg)
            parts.append(msg)
    return "; ".join(parts), _loc(first.get("loc", ()))


def install_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError

    async def on_api_error(request: Request, exc: ApiError) -> Response:
        gateway = getattr(request.app.state, "gateway", None)
        if exc.kind == "unavailable" and gateway is not None:
            gateway.backend.forget_readiness()  # the next /health asks Triton again
        return error_response(exc, request.url.path, request.scope)

    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        message, param = validation_message(list(exc.errors()))
        return error_response(ApiError("invalid", message, param=param), request.url.path, request.scope)

    async def on_http(request: Request, exc: HTTPException) -> Response:
        kind = {404: "not_found", 401: "unauthorized", 413: "too_large"}.get(exc.status_code, "invalid")
        if exc.status_code == 405:
            error = ApiError("invalid", f"method {request.method} is not allowed on {request.url.path}")
            response = error_response(error, request.url.path, request.scope)
            response.status_code = 405
            return response
        return error_response(ApiError(kind, str(exc.detail)), request.url.path, request.scope)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(ApiError("internal", f"internal gateway error ({type(exc).__name__})"),
                              request.url.path, request.scope)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
