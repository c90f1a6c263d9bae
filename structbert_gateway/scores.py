"""Reranking results in the shapes the HTTP APIs return (scores come from the ``reranking`` model)."""

from __future__ import annotations

from collections.abc import Sequence


def ranking(values: Sequence[float]) -> list[int]:
    """Indices by descending score (ties keep the input order, as the server's ORDER does)."""
    return sorted(range(len(values)), key=lambda i: -values[i])
