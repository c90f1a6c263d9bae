"""The SDK's exception types. ``tritonclient`` exceptions never reach the caller."""

from __future__ import annotations


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


_GRPC = {
    "StatusCode.INVALID_ARGUMENT": InvalidInputError,
    "StatusCode.UNAVAILABLE": ServerUnavailableError,
    "StatusCode.RESOURCE_EXHAUSTED": ServerOverloadedError,
    "StatusCode.DEADLINE_EXCEEDED": RequestTimeoutError,
    "StatusCode.NOT_FOUND": InvalidInputError,
}
_HTTP = {"400": InvalidInputError, "404": InvalidInputError, "429": ServerOverloadedError,
         "503": ServerUnavailableError, "504": RequestTimeoutError}
_OVERLOAD_HINTS = ("exceeds maximum queue size", "request timeout expired", "timeout expired")
# transient server-side states worth a retry: a crashed Python-backend stub until the supervisor
# (structbert-triton serve, or the orchestrator's liveness probe) restarts the server
# or a model still loading after a restart ("... has no available versions")
_UNAVAILABLE_HINTS = ("is not healthy", "has no available versions")


def translate(exc: BaseException) -> StructBertError:
    """Map a tritonclient / transport exception to the SDK's type."""
    if isinstance(exc, StructBertError):
        return exc
    status = None
    message = str(exc)
    if hasattr(exc, "status") and callable(exc.status):
        status = exc.status()
        message = exc.message() if hasattr(exc, "message") and exc.message() else message
    status_text = str(status) if status is not None else ""
    lowered = message.lower()
    if any(hint in lowered for hint in _OVERLOAD_HINTS):
        return ServerOverloadedError(message, status=status_text)
    if any(hint in lowered for hint in _UNAVAILABLE_HINTS):
        return ServerUnavailableError(message, status=status_text)
    cls = _GRPC.get(status_text) or _HTTP.get(status_text)
    if cls is None:
        if isinstance(exc, TimeoutError) or "timed out" in lowered or "deadline" in lowered:
            cls = RequestTimeoutError
        elif isinstance(exc, (ConnectionError, OSError)) or "connection refused" in lowered \
                or "failed to connect" in lowered:
            cls = ServerUnavailableError
        else:
            cls = ServerError
    return cls(message, status=status_text or None)
