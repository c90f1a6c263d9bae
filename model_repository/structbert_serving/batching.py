"""Length-aware batching for encoders that receive requests of different lengths (ragged batching).

Rows of all requests in a dynamic batch are sorted by length and cut into chunks whose padded size
stays under a token budget, so one long text does not make every short one pay for its padding
(text-embeddings-inference's habit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan_chunks(lengths: Sequence[int], *, max_tokens: int, max_rows: int) -> list[np.ndarray]:
    """Row indices per chunk: ascending length; rows x longest <= max_tokens (a lone row may exceed it)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    chunks: list[np.ndarray] = []
    current: list[int] = []
    for idx in order:
        longest = int(lengths[idx])  # ascending order: the newcomer is the longest
        if current and ((len(current) + 1) * longest > max_tokens or len(current) >= max_rows):
            chunks.append(np.asarray(current))
            current = []
        current.append(int(idx))
    if current:
        chunks.append(np.asarray(current))
    return chunks


def gather_padded(rows: Sequence[np.ndarray], width: int, pad: int = 0) -> np.ndarray:
    """Stack rows ([L, ...] each) into [len(rows), width, ...], right-padded with ``pad`` along the
    first axis (longer rows are cut)."""
    out = np.full((len(rows), width, *rows[0].shape[1:]), pad, dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        n = min(len(row), width)
        out[i, :n] = row[:n]
    return out
