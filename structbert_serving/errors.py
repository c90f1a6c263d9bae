"""Error types the server-side library raises; adapters map them to Triton error codes."""

from __future__ import annotations


class InputError(ValueError):
    """One request's input is invalid. Becomes INVALID_ARG for that request only."""


class UpstreamError(RuntimeError):
    """A model called through BLS answered with an error; ``code`` keeps its Triton error code
    (an overloaded encoder stays UNAVAILABLE for the caller, not INTERNAL)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code
