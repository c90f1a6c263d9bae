"""Serve an encoder artifact to a dynamic batch of requests with different sequence lengths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .batching import gather_padded, plan_chunks
from .errors import InputError
from .runtime import Runner

MASK = "ATTENTION_MASK"


@dataclass
class EncoderSettings:
    max_tokens: int = 16384  # padded tokens per runtime call
    max_rows: int = 64
    pad_id: int = 0


class RaggedEncoder:
    """Takes per-request token tensors ([n_i, L_i] each), runs all rows in length-sorted chunks
    bounded by a token budget, and gives each request its own outputs back.

    Per-token outputs ([rows, L, ...]) are cut back to each request's own L_i.
    """

    def __init__(self, runner: Runner, input_names: Sequence[str], settings: EncoderSettings | None = None):
        self.runner = runner
        self.input_names = list(input_names)
        self.settings = settings or EncoderSettings()

    def validate(self, feeds: dict[str, np.ndarray]) -> None:
        shapes = {name: feeds[name].shape for name in self.input_names}
        first = shapes[self.input_names[0]]
        if len(first) != 2 or any(shape != first for shape in shapes.values()):
            raise InputError(f"token inputs must share one [batch, sequence] shape, got {shapes}")
        if first[1] == 0:
            raise InputError("token inputs have sequence length 0")

    def run(self, requests: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | InputError]:
        results: list[dict[str, np.ndarray] | InputError] = [None] * len(requests)  # type: ignore[list-item]
        rows: list[tuple[int, int]] = []  # (request index, row in request)
        for r, feeds in enumerate(requests):
            try:
                self.validate(feeds)
            except InputError as exc:
                results[r] = exc
                continue
            rows.extend((r, i) for i in range(feeds[self.input_names[0]].shape[0]))
        if not rows:
            return results
        lengths = [int(requests[r][MASK][i].sum()) for r, i in rows]
        outputs: dict[str, list[np.ndarray | None]] = {}
        for chunk in plan_chunks(lengths, max_tokens=self.settings.max_tokens, max_rows=self.settings.max_rows):
            width = max(lengths[j] for j in chunk)
            feeds = {
                name: gather_padded([requests[rows[j][0]][name][rows[j][1]] for j in chunk], width,
                                    self.settings.pad_id if name == "INPUT_IDS" else 0)
                for name in self.input_names
            }
            for name, value in self.runner.run(feeds).items():
                per_row = outputs.setdefault(name, [None] * len(rows))
                for k, j in enumerate(chunk):
                    per_row[j] = value[k]
        cursor = 0
        for r, feeds in enumerate(requests):
            if results[r] is not None:
                continue
            n, seq = feeds[self.input_names[0]].shape
            span = range(cursor, cursor + n)
            cursor += n
            results[r] = {name: _stack([per_row[j] for j in span], seq) for name, per_row in outputs.items()}
        return results


def _stack(rows: list[np.ndarray], seq: int) -> np.ndarray:
    """Stack one request's rows; per-token outputs are padded/cut to the request's own length."""
    if rows[0].ndim >= 2:
        out = np.zeros((len(rows), seq, *rows[0].shape[1:]), dtype=rows[0].dtype)
        for i, row in enumerate(rows):
            n = min(seq, row.shape[0])
            out[i, :n] = row[:n]
        return out
    return np.stack(rows)
