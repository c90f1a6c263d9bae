"""Cross-encoder reranking maths: relevance from classifier logits, request checks, the order.

A cross-encoder scores each (query, passage) pair as one sequence. Checkpoints come in two kinds:
Hugging Face ``*ForSequenceClassification`` rerankers with one logit (relevance = sigmoid(logit)),
and pair classifiers with several labels (ModelScope's sentence-similarity heads; relevance =
softmax(logits)[relevant label]). Both are one formula: the raw score is the relevant logit's
log-odds against the others, ``raw = l_r - logsumexp(l_others)`` (the logit itself for one label,
``l_1 - l_0`` for two), and relevance = sigmoid(raw) = softmax(logits)[r]. A passage's score never
depends on the other passages or requests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from structbert_client import api

from .errors import InputError

MAX_PASSAGES = 256  # default per query; export's --max-passages sets it
# label names that mark the relevant class when the user names none (ModelScope similarity: "1")
_RELEVANT_NAMES = ("1", "relevant", "similar", "positive", "entailment", "yes", "true")


def relevance_index(labels: Sequence[str], override: int | None = None) -> int:
    """The logit index whose probability is the relevance: ``override`` (export's
    ``--relevance-index``) when given, else 0 for a one-logit model, else the label named "1" (or
    "relevant", "similar", "positive", "entailment", ...), else index 1 of a two-label model."""
    n = len(labels)
    if override is not None:
        if not 0 <= override < n:
            raise ValueError(f"relevance index {override} is outside the checkpoint's {n} labels {list(labels)}")
        return override
    if n == 1:
        return 0
    lowered = [str(label).lower() for label in labels]
    for name in _RELEVANT_NAMES:
        for i, label in enumerate(lowered):
            if label == name or (len(name) > 1 and label.startswith(name)):
                return i
    if n == 2:
        return 1
    raise ValueError(f"cannot tell which of the labels {list(labels)} means 'relevant'; pass --relevance-index")


def raw_scores(logits: np.ndarray, relevant: int) -> np.ndarray:
    """[n, labels] logits -> [n] raw scores (float32): the logit for one label, else the relevant
    label's log-odds against the others."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[1] == 1:
        return logits[:, 0].astype(np.float32)
    others = np.delete(logits, relevant, axis=1)
    top = others.max(axis=1)
    logsumexp = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
    return (logits[:, relevant] - logsumexp).astype(np.float32)


def sigmoid(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * raw))).astype(np.float32)  # stable for large |raw|


def check_passages(passages: Sequence[str], max_passages: int, name: str = api.PASSAGES) -> None:
    if not passages:
        raise InputError(f"{name} is empty; send at least one passage to rank")
    if len(passages) > max_passages:
        raise InputError(f"{name} has {len(passages)} passages; this server ranks at most {max_passages} per "
                         "query: split them over several requests")


def check_top_n(top_n: int | None, n: int, name: str = api.TOP_N) -> int:
    """How many indices ORDER returns: all without ``top_n``, else ``min(top_n, n)``; top_n < 1 is
    the caller's error."""
    if top_n is None:
        return n
    if top_n < 1:
        raise InputError(f"{name} is {top_n}; send a positive number of passages to return (or leave it out "
                         "for all of them)")
    return min(int(top_n), n)


def ranking(scores: np.ndarray, top_n: int) -> np.ndarray:
    """Passage indices by descending score (ties keep the input order), the first ``top_n``."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:top_n].astype(np.int32)
