"""Real Chinese text for INT8: the rows that fix the activation scales (calibration) and the
held-out rows that validate the quantised artifact, built per family the way the server feeds it.

The sample ships in ``calibration_data/`` (drawn by ``scripts/calibration_sample.py``; source and
licence in its README). Each file has a ``split`` column: ``calibration`` rows only ever calibrate,
``validation`` rows only ever validate, so an artifact is never judged on the text it was tuned on.

A row is one unpadded request row (batch 1), as a feed dict of the family's encoder inputs:
- embedding: a review, ``[CLS] text [SEP]``;
- pair-classification: two reviews as a pair (same category, and across categories);
- zero-shot: a review with the hypothesis ``这篇文章的标题是{label}`` (its category and another);
- uie-encoder: a news sentence (window: positions 0.., type 0) and its hints (type 1, positions
  W, W+1, ... after the window);
- uie-cross: the FP32 uie-encoder's hidden states of a sentence and of one of its hints.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .checkpoint import Checkpoint

SPLITS = ("calibration", "validation")
TEMPLATE = "这篇文章的标题是{}"
UIE_TYPES = ("人物", "地理位置", "组织机构")
# one source file per kind of text
SOURCES = {"embedding": "reviews.jsonl", "text-classification": "reviews.jsonl", "pair-classification": "reviews.jsonl",
           "zero-shot": "reviews.jsonl",
           "reranking": "reviews.jsonl", "uie-encoder": "news.jsonl", "uie-cross": "news.jsonl"}

Feeds = dict[str, np.ndarray]


@dataclass
class RealRows:
    """Rows of real text for one family and split, and where they came from (for the reports)."""

    family: str
    split: str
    source: str
    rows: list[Feeds]

    def describe(self) -> dict:
        return {"set": f"calibration_data/{self.source}", "split": self.split, "rows": len(self.rows)}


def read_sample(name: str, split: str) -> list[dict]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    text = (resources.files("structbert_export") / "calibration_data" / name).read_text(encoding="utf-8")
    return [row for row in map(json.loads, text.splitlines()) if row["split"] == split]


def _token_row(ids, types, positions=None) -> Feeds:
    ids = np.asarray(ids, np.int64)[None, :]
    feeds = {"INPUT_IDS": ids, "ATTENTION_MASK": np.ones_like(ids),
             "TOKEN_TYPE_IDS": np.asarray(types, np.int64)[None, :]}
    if positions is not None:
        feeds["POSITION_IDS"] = np.asarray(positions, np.int64)[None, :]
    return feeds


def _tokenizer(checkpoint: Checkpoint, max_length: int):
    from .tokenizer_files import load_fast_tokenizer

    tokenizer = load_fast_tokenizer(checkpoint)
    tokenizer.enable_truncation(max_length, strategy="longest_first")
    return tokenizer


def _review_rows(family: str, rows: list[dict], tokenizer, rng: random.Random) -> list[Feeds]:
    if family in ("embedding", "text-classification"):  # one review at a time
        encodings = tokenizer.encode_batch([r["text"] for r in rows])
    elif family == "pair-classification":  # alternately a pair from the same category and from another
        pairs = []
        for i, row in enumerate(rows):
            same = [r for r in rows if r["category"] == row["category"] and r is not row]
            other = [r for r in rows if r["category"] != row["category"]]
            pairs.append((row["text"], rng.choice(same if i % 2 == 0 and same else other)["text"]))
        encodings = tokenizer.encode_batch(pairs)
    elif family == "reranking":  # a short query about the review's own category, then about another one
        categories = sorted({r["category"] for r in rows})
        pairs = []
        for i, row in enumerate(rows):
            topic = row["category"] if i % 2 == 0 else rng.choice([c for c in categories if c != row["category"]])
            pairs.append((f"{topic}怎么样", row["text"]))
        encodings = tokenizer.encode_batch(pairs)
    else:  # zero-shot: the text against its own category, then against another one
        categories = sorted({r["category"] for r in rows})
        pairs = []
        for i, row in enumerate(rows):
            label = row["category"] if i % 2 == 0 else rng.choice([c for c in categories if c != row["category"]])
            pairs.append((row["text"], TEMPLATE.format(label)))
        encodings = tokenizer.encode_batch(pairs)
    return [_token_row(e.ids, e.type_ids) for e in encodings]


def _uie_parts(rows: list[dict], tokenizer) -> list[tuple[Feeds, list[Feeds]]]:
    """(window feeds, hint feeds per type) for each sentence: one window (MSRA sentences are short)."""
    from structbert_serving.uie import HINT_MAX_TOKENS, WINDOW, hint_text

    out = []
    for row in rows:
        ids = tokenizer.encode(row["text"]).ids[:WINDOW]
        window = _token_row(ids, [0] * len(ids), range(len(ids)))
        hints = []
        for type_name in UIE_TYPES:
            hint = tokenizer.encode(hint_text([], type_name)).ids[:HINT_MAX_TOKENS]
            hints.append(_token_row(hint, [1] * len(hint), range(len(ids), len(ids) + len(hint))))
        out.append((window, hints))
    return out


def real_rows(family: str, checkpoint: Checkpoint, split: str, limit: int | None = None,
              seed: int = 0) -> RealRows:
    """The family's rows of real text for ``split`` (at most ``limit``), unpadded, batch 1 each."""
    if family not in SOURCES:
        raise ValueError(f"no real-text rows for family {family!r}")
    source = SOURCES[family]
    rows = read_sample(source, split)
    rng = random.Random(seed)
    max_length = min(checkpoint.max_seq_length, 512)
    tokenizer = _tokenizer(checkpoint, max_length)
    if family in ("embedding", "text-classification", "pair-classification", "zero-shot", "reranking"):
        feeds = _review_rows(family, rows, tokenizer, rng)
    elif family == "uie-encoder":
        feeds = [row for window, hints in _uie_parts(rows, tokenizer) for row in (window, *hints)]
    else:
        feeds = _uie_cross_rows(_uie_parts(rows, tokenizer), checkpoint)
    if limit is not None and len(feeds) > limit:
        keep = sorted(rng.sample(range(len(feeds)), limit))
        feeds = [feeds[i] for i in keep]
    return RealRows(family, split, source, feeds)


def _uie_cross_rows(parts: list[tuple[Feeds, list[Feeds]]], checkpoint: Checkpoint) -> list[Feeds]:
    """What the server sends uie_cross: the FP32 encoder's hidden states of a window and a hint."""
    import torch

    from .modules import build_module

    encoder = build_module("uie-encoder", checkpoint).float().eval()

    def encode(feeds: Feeds) -> np.ndarray:
        with torch.inference_mode():
            args = [torch.from_numpy(feeds[n]) for n in ("INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS",
                                                            "POSITION_IDS")]
            return encoder(*args).numpy()

    out = []
    for window, hints in parts:
        text_hidden = encode(window)
        for hint in hints:
            out.append({"TEXT_HIDDEN": text_hidden, "TEXT_MASK": window["ATTENTION_MASK"],
                        "HINT_HIDDEN": encode(hint), "HINT_MASK": hint["ATTENTION_MASK"]})
    return out


def pad_rows(rows: list[Feeds], mask_groups: dict[str, str], bucket: int = 1) -> Feeds:
    """Stack rows into one batch, each sequence input right-padded (zeros) to its group's longest,
    rounded up to a multiple of ``bucket`` (the native flavour pads to length buckets)."""
    from structbert_serving.batching import gather_padded

    batch = {}
    for name in rows[0]:
        mask = mask_groups.get(name)
        if mask is None:
            batch[name] = np.concatenate([r[name] for r in rows])
            continue
        width = max(r[name].shape[1] for r in rows)
        batch[name] = gather_padded([r[name][0] for r in rows], -(-width // bucket) * bucket)
    return batch
