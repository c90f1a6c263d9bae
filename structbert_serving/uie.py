"""SiameseUIE information extraction with ModelScope's semantics (README, "SiameseUIE semantics").

The text is tokenised once and cut into 384-token windows every 352 tokens; the windows are encoded
once (first L-6 layers) and reused for every hint at every schema level. A hint
(``"人物: 谷口清太郎, 任职: "``) is encoded with token type 1 and positions W.. after its window,
joined with each window in the 6 cross layers, and the head/tail pointer logits are decoded on raw
values with threshold 0.5. The schema is walked level by level: all hints of a level - across
types, prefixes, texts and requests - go to the models together.

The model calls are injected (:func:`extract`), so the same loop runs in the Triton BLS model
(``async_exec``) and in tests (local runners).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from structbert_client import api

from .batching import gather_padded
from .errors import InputError

WINDOW = 384
STRIDE = 352
HINT_MAX_TOKENS = 128
THRESHOLD = 0.5
MAX_SCHEMA_DEPTH = 5
MAX_SCHEMA_TYPES = 64
MAX_TYPE_CHARS = 64
MAX_TEXT_TOKENS = 8192  # about 23 windows; a hard cap that protects the server

Feeds = dict[str, np.ndarray]
ModelCall = Callable[[Feeds], Awaitable[Feeds]]


# ---------------------------------------------------------------------------------------- schema

def parse_schema(raw: str | dict, name: str = api.SCHEMA) -> dict:
    """A validated schema: a JSON object whose values are objects (nested levels) or null (leaves).

    An empty object as a value is a leaf too.
    """
    if isinstance(raw, str):
        try:
            schema = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name} is not valid JSON ({exc.msg} at char {exc.pos}); "
                             'send an object such as {"人物": null, "组织机构": null}') from None
    else:
        schema = raw
    if not isinstance(schema, dict):
        raise InputError(f'{name} must be a JSON object such as {{"人物": null}}, not {type(schema).__name__}')
    if not schema:
        raise InputError(f"{name} is an empty object; name at least one type to extract")
    count = _check_level(schema, name, depth=1)
    if count > MAX_SCHEMA_TYPES:
        raise InputError(f"{name} names {count} types in all; at most {MAX_SCHEMA_TYPES} are allowed")
    return schema


def _check_level(level: dict, where: str, depth: int) -> int:
    if depth > MAX_SCHEMA_DEPTH:
        raise InputError(f"{where} nests deeper than {MAX_SCHEMA_DEPTH} levels; flatten the schema")
    count = 0
    for key, value in level.items():
        if not isinstance(key, str) or not key.strip():
            raise InputError(f"{where} has a key {key!r}; every type must be a non-empty string")
        if len(key) > MAX_TYPE_CHARS:
            raise InputError(f"{where}: type {key[:16]!r}... is longer than {MAX_TYPE_CHARS} characters")
        count += 1
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InputError(f"{where}[{key!r}] must be an object or null, not {type(value).__name__}")
        count += _check_level(value, f"{where}[{key!r}]", depth + 1)
    return count


def is_leaf(value) -> bool:
    return value is None or value == {}


# ---------------------------------------------------------------------------------------- windows

def window_starts(n_tokens: int, window: int = WINDOW, stride: int = STRIDE) -> list[int]:
    """Start token of each window: one window when the text fits, else every ``stride`` tokens."""
    if n_tokens <= window:
        return [0]
    return [stride * j for j in range(1 + math.ceil((n_tokens - window) / stride))]


def merge_windows(values: np.ndarray, starts: Sequence[int], n_tokens: int) -> np.ndarray:
    """Window logits [windows, W] -> text positions [n]; overlapping positions are averaged."""
    total = np.zeros(n_tokens, np.float64)
    count = np.zeros(n_tokens, np.float64)
    for row, start in zip(values, starts):
        length = min(len(row), n_tokens - start)
        total[start:start + length] += row[:length]
        count[start:start + length] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def decode_spans(head: np.ndarray, tail: np.ndarray, offsets: Sequence[tuple[int, int]],
                 threshold: float = THRESHOLD) -> list[tuple[int, int]]:
    """Character spans: each token with head > threshold starts one, ending at the first token at or
    after it with tail > threshold (none: no span). Sorted; empty ranges (special tokens) dropped."""
    tails = np.flatnonzero(tail > threshold)
    spans = set()
    for i in np.flatnonzero(head > threshold):
        after = tails[tails >= i]
        if after.size == 0:
            continue
        start, end = offsets[i][0], offsets[int(after[0])][1]
        if end > start:
            spans.add((int(start), int(end)))
    return sorted(spans)


def hint_text(prefix: Sequence[dict], type_name: str) -> str:
    return "".join(f"{item['type']}: {item['span']}, " for item in prefix) + f"{type_name}: "


# ---------------------------------------------------------------------------------------- texts

@dataclass
class EncodedText:
    text: str
    ids: np.ndarray  # [n]
    offsets: list[tuple[int, int]]
    starts: list[int]  # window starts

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def width(self) -> int:
        """W: the window length every hint of this text meets (and the hints' first position)."""
        return self.n_tokens if len(self.starts) == 1 else WINDOW

    def windows(self) -> tuple[np.ndarray, np.ndarray]:
        rows = [self.ids[s:s + self.width] for s in self.starts]
        ids = gather_padded(rows, self.width)
        mask = gather_padded([np.ones(len(r), np.int64) for r in rows], self.width)
        return ids, mask


@dataclass
class Node:
    """One schema level to extract for one text under a prefix (the spans found above it)."""

    text: int
    prefix: tuple[dict, ...]
    schema: dict
    order: tuple = ()  # sort key of the prefix: (type index, start, end) per level


@dataclass
class Extraction:
    """One row to extract: the text, its schema and whether intermediate paths are listed."""

    text: str
    schema: dict
    output_all_prefix: bool = False
    paths: list[tuple[tuple, list[dict]]] = field(default_factory=list)

    def result(self) -> list[list[dict]]:
        return [path for _, path in sorted(self.paths, key=lambda p: p[0])]


class UieTokenizer:
    """Texts: ``[CLS] text [SEP]`` untruncated with character offsets; hints: truncated to 128."""

    def __init__(self, tokenizer_json: str | Path, *, max_text_tokens: int = MAX_TEXT_TOKENS):
        self.max_text_tokens = max_text_tokens
        self.text_tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.text_tokenizer.no_padding()
        self.text_tokenizer.no_truncation()
        self.hint_tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.hint_tokenizer.no_padding()
        self.hint_tokenizer.enable_truncation(HINT_MAX_TOKENS)

    def encode_texts(self, texts: Sequence[str]) -> list[EncodedText | InputError]:
        out: list[EncodedText | InputError] = []
        for i, enc in enumerate(self.text_tokenizer.encode_batch(list(texts))):
            if len(enc.ids) > self.max_text_tokens:
                out.append(InputError(f"TEXT[{i}] is {len(enc.ids)} tokens; this server extracts from at most "
                                      f"{self.max_text_tokens} tokens per text"))
            elif len(enc.ids) <= 2:
                out.append(InputError(f"TEXT[{i}] has no tokens left after normalisation; send visible text"))
            else:
                ids = np.asarray(enc.ids, np.int64)
                out.append(EncodedText(texts[i], ids, list(enc.offsets), window_starts(len(ids))))
        return out

    def encode_hints(self, hints: Sequence[str]) -> list[list[int]]:
        return [enc.ids for enc in self.hint_tokenizer.encode_batch(list(hints))]


# ---------------------------------------------------------------------------------------- the loop

def text_feeds(texts: Sequence[EncodedText]) -> tuple[Feeds, list[tuple[int, int]]]:
    """Encoder inputs for every window of every text; rows -> (text index, window index)."""
    ids, masks, rows = [], [], []
    for t, encoded in enumerate(texts):
        w_ids, w_mask = encoded.windows()
        ids.extend(w_ids)
        masks.extend(w_mask)
        rows.extend((t, j) for j in range(len(w_ids)))
    width = max(len(r) for r in ids)
    ids_arr, mask_arr = gather_padded(ids, width), gather_padded(masks, width)
    positions = np.broadcast_to(np.arange(width, dtype=np.int64), ids_arr.shape).copy()
    return ({"INPUT_IDS": ids_arr, "ATTENTION_MASK": mask_arr, "TOKEN_TYPE_IDS": np.zeros_like(ids_arr),
             "POSITION_IDS": positions}, rows)


def hint_feeds(hint_ids: Sequence[list[int]], widths: Sequence[int]) -> Feeds:
    """Hints: token type 1, positions W, W+1, ... where W is the window length they will meet."""
    longest = max(len(h) for h in hint_ids)
    ids = gather_padded([np.asarray(h, np.int64) for h in hint_ids], longest)
    mask = gather_padded([np.ones(len(h), np.int64) for h in hint_ids], longest)
    positions = np.arange(longest, dtype=np.int64)[None, :] + np.asarray(widths, np.int64)[:, None]
    return {"INPUT_IDS": ids, "ATTENTION_MASK": mask, "TOKEN_TYPE_IDS": np.ones_like(ids), "POSITION_IDS": positions}


async def extract(items: Sequence[Extraction], texts: Sequence[EncodedText], tokenizer: UieTokenizer,
                  encode: ModelCall, cross: ModelCall, *, threshold: float = THRESHOLD) -> None:
    """Fill ``item.paths`` for every item; ``texts[i]`` is the encoded ``items[i].text``.

    ``encode(feeds) -> {"HIDDEN": [rows, L, H]}`` runs the encoder part; ``cross(feeds) ->
    {"HEAD_LOGITS", "TAIL_LOGITS": [rows, W]}`` the cross part. Both may be called with many rows.
    """
    feeds, window_rows = text_feeds(texts)
    hidden = (await encode(feeds))["HIDDEN"]
    windows: dict[int, list[int]] = {}
    for row, (t, _) in enumerate(window_rows):
        windows.setdefault(t, []).append(row)
    window_mask = feeds["ATTENTION_MASK"]

    nodes = [Node(i, (), item.schema) for i, item in enumerate(items)]
    while nodes:
        jobs = [(n, k, type_name) for n, node in enumerate(nodes) for k, type_name in enumerate(node.schema)]
        hint_ids = tokenizer.encode_hints([hint_text(nodes[n].prefix, t) for n, _, t in jobs])
        hints = hint_feeds(hint_ids, [texts[nodes[n].text].width for n, _, _ in jobs])
        hint_hidden = (await encode(hints))["HIDDEN"]
        hint_mask = hints["ATTENTION_MASK"]

        pairs = [(h, row) for h, (n, _, _) in enumerate(jobs) for row in windows[nodes[n].text]]
        width = max(texts[nodes[n].text].width for n, _, _ in jobs)
        logits = await cross({
            "TEXT_HIDDEN": np.ascontiguousarray(hidden[[r for _, r in pairs], :width]),
            "TEXT_MASK": np.ascontiguousarray(window_mask[[r for _, r in pairs], :width]),
            "HINT_HIDDEN": np.ascontiguousarray(hint_hidden[[h for h, _ in pairs]]),
            "HINT_MASK": np.ascontiguousarray(hint_mask[[h for h, _ in pairs]]),
        })
        by_hint: dict[int, list[int]] = {}
        for p, (h, _) in enumerate(pairs):
            by_hint.setdefault(h, []).append(p)

        next_nodes = []
        for h, (n, k, type_name) in enumerate(jobs):
            node = nodes[n]
            encoded = texts[node.text]
            rows = by_hint[h]
            head = merge_windows(logits["HEAD_LOGITS"][rows, :encoded.width], encoded.starts, encoded.n_tokens)
            tail = merge_windows(logits["TAIL_LOGITS"][rows, :encoded.width], encoded.starts, encoded.n_tokens)
            item = items[node.text]
            child = node.schema[type_name]
            for start, end in decode_spans(head, tail, encoded.offsets, threshold):
                found = {"type": type_name, "span": encoded.text[start:end], "offset": [start, end]}
                path = (*node.prefix, found)
                order = (*node.order, (k, start, end))
                if is_leaf(child):
                    item.paths.append((order, list(path)))
                    continue
                if item.output_all_prefix:
                    item.paths.append((order, list(path)))
                next_nodes.append(Node(node.text, path, child, order))
        nodes = next_nodes
