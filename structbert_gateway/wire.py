"""Triton's raw tensor contents (gRPC ``raw_input_contents``, HTTP binary data), both transports'."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from structbert_client.datatypes import NUMPY, datatype_of


def raw_contents(array: np.ndarray) -> tuple[str, bytes]:
    """(Triton datatype, raw little-endian contents); BYTES rows are length-prefixed (uint32)."""
    if array.dtype == object:
        return "BYTES", b"".join(struct.pack("<I", len(item)) + item for item in array.reshape(-1))
    return datatype_of(array), np.ascontiguousarray(array).tobytes()


def from_raw(datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            (n,) = struct.unpack_from("<I", raw, offset)
            items.append(raw[offset + 4: offset + 4 + n])
            offset += 4 + n
        return np.array(items, dtype=object).reshape(shape)
    return np.frombuffer(raw, dtype=NUMPY[datatype]).reshape(shape)
