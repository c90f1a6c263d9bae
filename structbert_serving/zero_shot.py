"""Zero-shot classification through an NLI model, with ModelScope's semantics.

Pairs ``(text, template.format(label))``; single-label: softmax over the entailment logits of all
candidate labels; multi-label (or a single candidate): per label, softmax over
``[contradiction, entailment]``, keep the entailment probability. Results sorted by score.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from structbert_client import api

from .classification import softmax
from .errors import InputError

MAX_LABELS = 64
MAX_LABEL_CHARS = 200
DEFAULT_TEMPLATE = "{}"


def parse_labels(raw: str | Sequence[str], *, max_labels: int = MAX_LABELS, name: str = api.LABELS) -> list[str]:
    """Labels from a JSON list, a list, or one string separated by ``,`` or ``，``.

    Blanks are stripped and empty labels dropped; duplicates are removed keeping the first
    occurrence. No label left, or more than ``max_labels``, is an :class:`InputError`.
    """
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{name} starts with '[' but is not valid JSON ({exc.msg} at char {exc.pos}); "
                                 "send a JSON list of strings or a comma-separated string") from None
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise InputError(f"{name} as JSON must be a list of strings")
        else:
            items = text.replace("，", ",").split(",")
    else:
        items = list(raw)
        if not all(isinstance(x, str) for x in items):
            raise InputError(f"{name} must be strings")
    labels = list(dict.fromkeys(label.strip() for label in items if label and label.strip()))
    if not labels:
        raise InputError(f"{name} holds no label; send at least one non-blank candidate label")
    if len(labels) > max_labels:
        raise InputError(f"{name} holds {len(labels)} labels; at most {max_labels} are allowed per text")
    for label in labels:
        if len(label) > MAX_LABEL_CHARS:
            raise InputError(f"{name}: label {label[:20]!r}... has {len(label)} characters; at most {MAX_LABEL_CHARS}")
    return labels


def check_template(template: str, name: str = api.HYPOTHESIS_TEMPLATE) -> str:
    if "{}" not in template:
        raise InputError(f"{name} {template!r} has no '{{}}' placeholder for the label, e.g. '这篇文章的标题是{{}}'")
    try:
        template.format("x")
    except (IndexError, KeyError, ValueError) as exc:
        raise InputError(f"{name} {template!r} is not a valid template ({exc}); use exactly one '{{}}'") from None
    return template


def hypotheses(labels: Sequence[str], template: str) -> list[str]:
    return [template.format(label) for label in labels]


@dataclass(frozen=True)
class NliIndices:
    entailment: int = 0
    contradiction: int = 2

    @classmethod
    def from_label2id(cls, label2id: dict | None, *, entailment: int | None = None,
                      contradiction: int | None = None) -> NliIndices:
        """Derive the indices from a config's ``label2id`` ("entail..." / "contradict..."),
        falling back to StructBERT's 0 and 2; explicit values win."""
        found = {}
        for label, idx in (label2id or {}).items():
            lowered = str(label).lower()
            if lowered.startswith("entail"):
                found["entailment"] = int(idx)
            elif lowered.startswith("contradict"):
                found["contradiction"] = int(idx)
        default = cls()
        return cls(
            entailment=entailment if entailment is not None else found.get("entailment", default.entailment),
            contradiction=contradiction if contradiction is not None
            else found.get("contradiction", default.contradiction),
        )


def score(logits: np.ndarray, labels: Sequence[str], *, multi_label: bool,
          indices: NliIndices = NliIndices()) -> dict[str, list]:
    """``logits``: [n_labels, n_classes] for one text -> {"labels": sorted, "scores": sorted}."""
    logits = np.asarray(logits, dtype=np.float32)
    if multi_label or len(labels) == 1:
        pairs = logits[:, [indices.contradiction, indices.entailment]]
        scores = softmax(pairs, axis=-1)[:, 1]
    else:
        scores = softmax(logits[:, indices.entailment], axis=0)
    order = np.argsort(-scores, kind="stable")
    return {"labels": [labels[i] for i in order], "scores": [float(scores[i]) for i in order]}
