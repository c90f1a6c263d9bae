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
from .records import paths_to_records

__all__ = [
    "InvalidInputError",
    "RequestTimeoutError",
    "ServerError",
    "ServerOverloadedError",
    "ServerUnavailableError",
    "StructBertClient",
    "StructBertError",
    "paths_to_records",
]
__version__ = "0.1.0"
