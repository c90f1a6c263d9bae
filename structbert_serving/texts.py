"""Decode and check the text inputs of one request (BYTES tensors) before tokenisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError

DEFAULT_MAX_CHARS = 100_000


def decode_texts(array: np.ndarray, name: str) -> list[str]:
    """The strings of a BYTES tensor of shape [n] or [n, 1]; invalid UTF-8 is an :class:`InputError`."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise InputError(f"{name} must have shape [batch, 1] (one string per row), got {list(array.shape)}")
    texts = []
    for i, item in enumerate(array):
        if isinstance(item, str):
            texts.append(item)
            continue
        if not isinstance(item, (bytes, np.bytes_)):
            raise InputError(f"{name}[{i}] is {type(item).__name__}, expected a UTF-8 string")
        try:
            texts.append(bytes(item).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{name}[{i}] is not valid UTF-8 (byte 0x{item[exc.start]:02x} at offset {exc.start}); "
                "send UTF-8 encoded text"
            ) from None
    return texts


def check_texts(texts: Sequence[str], name: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> None:
    """Reject empty, whitespace-only and over-long texts with a message that says what to fix."""
    for i, text in enumerate(texts):
        if not text or not text.strip():
            raise InputError(f"{name}[{i}] is empty or only whitespace; send at least one visible character")
        if len(text) > max_chars:
            raise InputError(
                f"{name}[{i}] has {len(text):,} characters; this server accepts at most {max_chars:,} per text"
            )
