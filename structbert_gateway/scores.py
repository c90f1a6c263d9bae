"""Reranking scores from the pair classifier (until a dedicated reranker model exists).

The relevance of (query, text) is the pair classifier's probability of label ``"1"`` (similar) —
the SDK's ``similarity(method="pair")``. Its raw score is ``log(P(1) / P(0))``: for two labels
that is exactly the single logit whose sigmoid is the score, what a one-logit reranker returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import ApiError

RELEVANT = "1"
_TINY = 1e-30


def relevance(probs: Sequence[dict[str, float]]) -> list[float]:
    if probs and RELEVANT not in probs[0]:
        raise ApiError("backend", f"the pair classifier's labels {sorted(probs[0])} have no '{RELEVANT}' "
                                  "(relevant) label: it cannot rerank")
    return [p[RELEVANT] for p in probs]


def raw(probs: Sequence[dict[str, float]]) -> list[float]:
    if probs and len(probs[0]) != 2:
        raise ApiError("invalid", "raw_scores needs a two-label classifier; this one has "
                                  f"{len(probs[0])} labels", param="raw_scores")
    out = []
    for p in probs:
        other = next(v for k, v in p.items() if k != RELEVANT)
        out.append(math.log(max(p[RELEVANT], _TINY)) - math.log(max(other, _TINY)))
    return out


def ranking(values: Sequence[float]) -> list[int]:
    """Indices by descending score (ties keep the input order)."""
    return sorted(range(len(values)), key=lambda i: -values[i])
