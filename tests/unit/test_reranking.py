"""Reranking maths (structbert_serving/reranking.py): relevance from one or several logits, the
relevant label, the order, the request checks."""

from __future__ import annotations

import numpy as np
import pytest

from structbert_serving import reranking
from structbert_serving.classification import softmax
from structbert_serving.errors import InputError


@pytest.mark.parametrize("labels,override,want", [
    (["LABEL_0"], None, 0), (["0", "1"], None, 1), (["1", "0"], None, 0), (["not_relevant", "relevant"], None, 1),
    (["entailment", "neutral", "contradiction"], None, 0), (["a", "b"], None, 1), (["a", "b"], 0, 0),
])
def test_relevance_index(labels, override, want):
    assert reranking.relevance_index(labels, override) == want


def test_relevance_index_refuses_what_it_cannot_tell():
    with pytest.raises(ValueError, match="outside"):
        reranking.relevance_index(["0", "1"], 2)
    with pytest.raises(ValueError, match="--relevance-index"):
        reranking.relevance_index(["a", "b", "c"])


def test_relevance_is_sigmoid_of_one_logit_and_softmax_of_several():
    rng = np.random.default_rng(0)
    one = rng.normal(size=(5, 1)).astype(np.float32) * 8
    np.testing.assert_allclose(reranking.sigmoid(reranking.raw_scores(one, 0)), 1 / (1 + np.exp(-one[:, 0])), atol=1e-7)
    for n in (2, 3):
        logits = rng.normal(size=(6, n)).astype(np.float32) * 5
        for r in range(n):
            got = reranking.sigmoid(reranking.raw_scores(logits, r))
            np.testing.assert_allclose(got, softmax(logits)[:, r], atol=1e-6)
    assert reranking.sigmoid(np.array([1000.0, -1000.0])).tolist() == [1.0, 0.0]  # no overflow


def test_ranking_checks_and_ties():
    assert reranking.ranking(np.array([0.5, 0.9, 0.5, 0.1]), 4).tolist() == [1, 0, 2, 3]  # ties: input order
    assert reranking.ranking(np.array([0.5, 0.9]), 1).tolist() == [1]
    assert reranking.check_top_n(None, 4) == 4 and reranking.check_top_n(9, 4) == 4
    with pytest.raises(InputError, match="TOP_N is -1"):
        reranking.check_top_n(-1, 4)
    with pytest.raises(InputError, match="empty"):
        reranking.check_passages([], 3)
    with pytest.raises(InputError, match="4 passages; this server ranks at most 3"):
        reranking.check_passages(["a"] * 4, 3)
