"""Fast WordPiece tokenisation (Rust ``tokenizers``) with the server's truncation policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from structbert_client import api

from .errors import InputError

OVERLENGTH_POLICIES = ("truncate", "reject")
# pairs: "only_first" cuts only the text (zero-shot: never the hypothesis); "only_second" only the
# second (reranking: never the query); "longest_first" is Hugging Face's default (sentence-pair
# classification, as ModelScope's preprocessor does)
PAIR_TRUNCATION = ("only_first", "only_second", "longest_first")


@dataclass
class Batch:
    """Token tensors for one request, right-padded to the request's longest (or bucketed) length."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return self.attention_mask.sum(axis=1)


def bucket_length(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``length`` (the length itself when no bucket does)."""
    for bucket in buckets:
        if length <= bucket:
            return bucket
    return length


class TextTokenizer:
    """Wraps a ``tokenizer.json``: single sequences, ``[CLS] text [SEP]``, token type 0.

    ``overlength="truncate"`` cuts texts to ``max_length`` tokens (the default, like ModelScope);
    ``"reject"`` turns an over-long text into an :class:`InputError` instead.
    """

    def __init__(self, path: str | Path, *, max_length: int, overlength: str = "truncate",
                 length_buckets: Sequence[int] = (), pair_truncation: str = "longest_first"):
        if overlength not in OVERLENGTH_POLICIES:
            raise ValueError(f"overlength must be one of {OVERLENGTH_POLICIES}, not {overlength!r}")
        if pair_truncation not in PAIR_TRUNCATION:
            raise ValueError(f"pair_truncation must be one of {PAIR_TRUNCATION}, not {pair_truncation!r}")
        self.pair_truncation = pair_truncation
        self.max_length = int(max_length)
        self.overlength = overlength
        self.length_buckets = sorted(int(b) for b in length_buckets if int(b) <= self.max_length)
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        if overlength == "truncate":
            self._tokenizer.enable_truncation(self.max_length, strategy=pair_truncation)
        else:
            self._tokenizer.no_truncation()
        self.pad_id = self._tokenizer.token_to_id("[PAD]") or 0

    def encode(self, texts: Sequence[str], name: str = api.TEXT) -> Batch:
        result = self.encode_many([texts], name)[0]
        if isinstance(result, InputError):
            raise result
        return result

    def encode_many(self, groups: Sequence[Sequence[str | tuple[str, str]]], name: str | Sequence[str] = api.TEXT
                    ) -> list[Batch | InputError]:
        """Tokenise the texts (or (text, pair) tuples) of many groups (requests, or columns of
        requests) in one call; a bad text fails only its own group. ``name``: the input named in
        error messages, one for all groups or one per group. Pairs: ``[CLS] a [SEP] b [SEP]``, token
        type 1 for b and its [SEP]."""
        names = [name] * len(groups) if isinstance(name, str) else list(name)
        flat = [text for group in groups for text in group]
        try:
            encodings = self._tokenizer.encode_batch(flat) if flat else []
        except Exception:  # e.g. a hypothesis longer than max_length: find the culprit group
            if len(groups) == 1:
                return [InputError(self._pair_error(names[0]))]
            return [r for group, n in zip(groups, names) for r in self.encode_many([group], n)]
        results: list[Batch | InputError] = []
        start = 0
        for group, group_name in zip(groups, names):
            chunk = encodings[start : start + len(group)]
            start += len(group)
            try:
                results.append(self._check_and_pad(chunk, group_name))
            except InputError as exc:
                results.append(exc)
        return results

    def _pair_error(self, name: str) -> str:
        cut, kept = ("first", "second (a hypothesis)") if self.pair_truncation == "only_first" else \
            ("second", "first (a query)")
        return (f"{name}: the {kept} text of a pair alone is longer than the {self.max_length}-token maximum, and "
                f"only the {cut} text may be truncated; shorten it")

    def _check_and_pad(self, encodings, name: str) -> Batch:
        for i, enc in enumerate(encodings):
            if len(enc.ids) > self.max_length:
                raise InputError(
                    f"{name}[{i}] is {len(enc.ids)} tokens long; this model takes at most {self.max_length} "
                    "and the server is set to reject (not truncate) over-long texts"
                )
            if len(enc.ids) <= 2:
                raise InputError(f"{name}[{i}] has no tokens left after normalisation; send visible text")
        return self.pad([enc.ids for enc in encodings], [enc.type_ids for enc in encodings])

    def pad(self, ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]]) -> Batch:
        longest = max(len(row) for row in ids)
        width = bucket_length(longest, self.length_buckets)
        out_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        types = np.zeros((len(ids), width), dtype=np.int64)
        for row, (tok, typ) in enumerate(zip(ids, type_ids)):
            out_ids[row, : len(tok)] = tok
            mask[row, : len(tok)] = 1
            types[row, : len(typ)] = typ
        return Batch(out_ids, mask, types)
