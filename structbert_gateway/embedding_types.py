"""Cohere's ``embedding_types``: the server's float32 vectors (L2-normalised, so every component lies
in [-1, 1]) in the compressed forms Cohere's Embed API defines.

=========  ======================================================================================
type       value per vector
=========  ======================================================================================
float      the float32 components
int8       ``round(x * 127)``, in [-127, 127] (a fixed scale: a component of an L2-normalised
           vector is never beyond ±1, so no calibration set is needed and no value is clipped)
uint8      ``round((x + 1) * 127.5)``, in [0, 255]
binary     one bit per component (1 where x > 0), packed 8 to a byte, most significant first,
           as signed bytes (``byte - 128``, Cohere's convention), ``ceil(dims / 8)`` values
ubinary    the same bits as unsigned bytes, in [0, 255]
base64     the float32 components as little-endian bytes, base64-encoded (one string a vector)
=========  ======================================================================================
"""

from __future__ import annotations

import base64

import numpy as np

EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")


def encode(vectors: np.ndarray, kind: str) -> list:
    """``vectors`` (float32 [n, dims]) as Cohere's ``kind``, one JSON-ready value per vector."""
    v = np.asarray(vectors, dtype=np.float32)
    if kind == "float":
        return v.tolist()
    if kind == "int8":
        return np.clip(np.rint(v * 127.0), -128, 127).astype(np.int8).tolist()
    if kind == "uint8":
        return np.clip(np.rint((v + 1.0) * 127.5), 0, 255).astype(np.uint8).tolist()
    if kind in ("binary", "ubinary"):
        packed = np.packbits(v > 0, axis=-1)
        return (packed.astype(np.int16) - 128).tolist() if kind == "binary" else packed.tolist()
    if kind == "base64":
        raw = np.ascontiguousarray(v, dtype="<f4")
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in raw]
    raise ValueError(f"unknown embedding type {kind!r}; one of {', '.join(EMBEDDING_TYPES)}")
