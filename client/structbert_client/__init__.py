"""structbert_client: the thin Python SDK for structbert-triton servers (needs tritonclient + numpy)."""

from __future__ import annotations

from .client import StructBertClient
from .errors import (
    InvalidInputError,
    RequestTimeoutError,
    ServerError,
    ServerOverloadedError,
    ServerUnavailableError,
    StructBertError,
)

__all__ = [
    "InvalidInputError",
    "RequestTimeoutError",
    "ServerError",
    "ServerOverloadedError",
    "ServerUnavailableError",
    "StructBertClient",
    "StructBertError",
]
__version__ = "0.1.0"
