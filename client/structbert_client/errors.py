"""The SDK's exception types. ``tritonclient`` exceptions never reach the caller."""

from __future__ import annotations

import re


class StructBertError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(self, message: str, *, status: str | None = None):
        super().__init__(message)
        self.status = status


class InvalidInputError(StructBertError, ValueError):
    """The request was rejected as invalid (INVALID_ARG / HTTP 400); the message says what to fix."""


class ServerUnavailableError(StructBertError):
    """The server could not be reached, is not ready, or refused the request (UNAVAILABLE / 503)."""


class ServerOverloadedError(ServerUnavailableError):
    """The server's queue is full or the request waited too long in it; retry later."""


class RequestTimeoutError(StructBertError, TimeoutError):
    """No answer within the client's ``timeout_s``."""


class ServerError(StructBertError):
    """Any other server-side failure (INTERNAL and friends)."""


# One mapping from the server's status to the SDK's types, by code first (gRPC status, HTTP status).
_GRPC = {
    "StatusCode.INVALID_ARGUMENT": InvalidInputError,
    "StatusCode.UNAVAILABLE": ServerUnavailableError,
    "StatusCode.RESOURCE_EXHAUSTED": ServerOverloadedError,
    "StatusCode.DEADLINE_EXCEEDED": RequestTimeoutError,
    "StatusCode.NOT_FOUND": InvalidInputError,
    "StatusCode.INTERNAL": ServerError,
}
_HTTP = {"400": InvalidInputError, "404": InvalidInputError, "429": ServerOverloadedError,
         "500": ServerError, "503": ServerUnavailableError, "504": RequestTimeoutError}
# Refinements of a code, matched only on messages Triton itself writes under that code (never on an
# INVALID_ARG message, which may echo the caller's text):
# - UNAVAILABLE: a full queue or a queue timeout is an overload (retry later), other causes a
#   server that is down; a BLS model passes its encoder's refusal on as "<model>: <message>"
# tritonclient's "[StatusCode.X] ", Triton's "[request id: <id>] ", a BLS model's "<model>: "
_PREFIX = r"^(\[[^\]]*\] )*([\w.-]+: )*"
_OVERLOAD = re.compile(_PREFIX + r"(exceeds maximum queue size|request timeout expired)", re.IGNORECASE)
# - INTERNAL: a crashed Python-backend stub until the supervisor (structbert-triton serve, or the
#   orchestrator's liveness probe) restarts the server; NOT_FOUND: a model still loading after a
#   restart. Both are transient, worth a retry. Anchored: a message of ours never starts like this.
_TRANSIENT = {
    ServerError: re.compile(_PREFIX + r"Stub process '[^']+' is not healthy\.?$"),
    InvalidInputError: re.compile(_PREFIX + r"Request for unknown model: '[^']+' has no available versions"),
}
# Where the transport gives no status at all (a refused connection, a client-side timeout)
_NO_CODE_OVERLOAD = ("exceeds maximum queue size", "request timeout expired")


def translate(exc: BaseException) -> StructBertError:
    """Map a tritonclient / transport exception to the SDK's type: by status code first; message
    hints only refine UNAVAILABLE / INTERNAL / NOT_FOUND (Triton's own messages there) or stand in
    where no code came at all."""
    if isinstance(exc, StructBertError):
        return exc
    status = None
    message = str(exc)
    if hasattr(exc, "status") and callable(exc.status):
        status = exc.status()
        message = exc.message() if hasattr(exc, "message") and exc.message() else message
    status_text = str(status) if status is not None else ""
    cls = _GRPC.get(status_text) or _HTTP.get(status_text)
    if cls is ServerUnavailableError and _OVERLOAD.search(message):
        cls = ServerOverloadedError
    elif cls in _TRANSIENT and _TRANSIENT[cls].search(message):
        cls = ServerUnavailableError
    elif cls is None:
        lowered = message.lower()
        if status_text:
            cls = ServerError
        elif any(hint in lowered for hint in _NO_CODE_OVERLOAD):
            cls = ServerOverloadedError
        elif isinstance(exc, TimeoutError) or "timed out" in lowered or "deadline" in lowered:
            cls = RequestTimeoutError
        elif isinstance(exc, (ConnectionError, OSError)) or "connection refused" in lowered \
                or "failed to connect" in lowered:
            cls = ServerUnavailableError
        else:
            cls = ServerError
    return cls(message, status=status_text or None)
