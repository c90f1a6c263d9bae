"""Sequence-classification post-processing: softmax and label names."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=axis, keepdims=True)).astype(np.float32)


def id2label_list(id2label: dict, num_labels: int) -> list[str]:
    """Label names in index order from a config's ``id2label`` (keys may be str or int)."""
    table = {int(k): str(v) for k, v in (id2label or {}).items()}
    return [table.get(i, str(i)) for i in range(num_labels)]
