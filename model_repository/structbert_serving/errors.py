"""Error types the server-side library raises; adapters map them to Triton error codes."""

from __future__ import annotations


class InputError(ValueError):
    """One request's input is invalid. Becomes INVALID_ARG for that request only."""
