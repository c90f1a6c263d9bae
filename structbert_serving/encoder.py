"""Serve an encoder artifact to a dynamic batch of requests with different sequence lengths.

Each input (and each per-token output) belongs to a *mask group*: the mask input whose row sums
give its true length (token encoders: everything follows ATTENTION_MASK; SiameseUIE's cross part:
TEXT_* follow TEXT_MASK, HINT_* follow HINT_MASK). Rows of all requests are sorted by length and run
in chunks bounded by a token budget, each group padded to its own longest row in the chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from structbert_client.datatypes import numpy_of_config

from .batching import gather_padded, plan_chunks
from .errors import InputError
from .params import DEFAULT_MAX_BATCH_TOKENS, TOKEN_NAMES, RuntimeParams
from .runtime import Runner, load_runner

TOKEN_MASK = TOKEN_NAMES[1]


@dataclass
class EncoderSettings:
    max_tokens: int = DEFAULT_MAX_BATCH_TOKENS  # padded tokens per runtime call (summed over mask groups)
    max_rows: int = 64
    max_padding: float = float("inf")  # padded/real tokens - 1 allowed in a chunk (see plan_chunks)
    # tensor name -> its mask input; names absent here (pooled outputs) have no sequence dim
    mask_groups: dict[str, str] = field(default_factory=dict)


class RaggedEncoder:
    """Per-request tensors in ([n_i, L_i, ...] each), per-request outputs back, rows run in
    length-sorted chunks. Per-token outputs are cut back (or zero-padded) to each request's L_i."""

    def __init__(self, runner: Runner, input_names: Sequence[str], settings: EncoderSettings | None = None):
        self.runner = runner
        self.input_names = list(input_names)
        self.settings = settings or EncoderSettings()
        groups = dict(self.settings.mask_groups)
        if not groups:  # token encoder default
            groups = {name: TOKEN_MASK for name in self.input_names}
        self.groups = groups
        self.masks = sorted(set(groups.values()))

    def validate(self, feeds: dict[str, np.ndarray]) -> None:
        rows = {feeds[name].shape[0] for name in self.input_names}
        if len(rows) != 1:
            raise InputError(f"inputs disagree on the batch size: { {n: feeds[n].shape for n in self.input_names} }")
        for name in self.input_names:
            mask = self.groups.get(name)
            if mask is None:
                continue
            if feeds[name].ndim < 2 or feeds[name].shape[1] != feeds[mask].shape[1]:
                raise InputError(f"{name} has shape {list(feeds[name].shape)}, but its sequence length must "
                                 f"match {mask} {list(feeds[mask].shape)}")
            if feeds[name].shape[1] == 0:
                raise InputError(f"{name} has sequence length 0")

    def run(self, requests: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | InputError]:
        results: list[dict[str, np.ndarray] | InputError | None] = [None] * len(requests)
        rows: list[tuple[int, int]] = []  # (request index, row in request)
        for r, feeds in enumerate(requests):
            try:
                self.validate(feeds)
            except InputError as exc:
                results[r] = exc
                continue
            rows.extend((r, i) for i in range(feeds[self.input_names[0]].shape[0]))
        if not rows:
            return results  # type: ignore[return-value]
        lengths = {m: np.array([int(requests[r][m][i].sum()) for r, i in rows]) for m in self.masks}
        cost = sum(lengths.values())
        outputs: dict[str, list[np.ndarray | None]] = {}
        for chunk in plan_chunks(cost, max_tokens=self.settings.max_tokens, max_rows=self.settings.max_rows,
                                 max_padding=self.settings.max_padding):
            widths = {m: max(1, int(lengths[m][chunk].max())) for m in self.masks}
            feeds = {}
            for name in self.input_names:
                picked = [requests[rows[j][0]][name][rows[j][1]] for j in chunk]
                mask = self.groups.get(name)
                feeds[name] = gather_padded(picked, widths[mask]) if mask else np.stack(picked)
            for name, value in self.runner.run(feeds).items():
                per_row = outputs.setdefault(name, [None] * len(rows))
                for k, j in enumerate(chunk):
                    per_row[j] = value[k]
        cursor = 0
        for r, feeds in enumerate(requests):
            if results[r] is not None:
                continue
            n = feeds[self.input_names[0]].shape[0]
            span = range(cursor, cursor + n)
            cursor += n
            out = {}
            for name, per_row in outputs.items():
                mask = self.groups.get(name)
                picked = [per_row[j] for j in span]
                out[name] = gather_padded(picked, feeds[mask].shape[1]) if mask else np.stack(picked)
            results[r] = out
        return results  # type: ignore[return-value]


DEFAULT_WARMUP_SHAPES = ((1, 16), (4, 64), (16, 128))  # (rows, sequence length)


def warmup_feeds(inputs: Sequence[dict], rows: int, length: int) -> dict[str, np.ndarray]:
    """Dummy feeds for a model config's inputs (``{"name", "data_type", "dims"}``, dims without the
    batch dim, -1 dynamic): every dynamic dim is ``length``; integer inputs hold 1 (a valid token id,
    mask and position), float inputs 0."""
    feeds = {}
    for spec in inputs:
        dims = [length if int(d) < 0 else int(d) for d in spec["dims"]]
        dtype = numpy_of_config(spec["data_type"])
        feeds[spec["name"]] = np.full([rows, *dims], 0 if np.issubdtype(dtype, np.floating) else 1, dtype=dtype)
    return feeds


def budget_shape(settings: EncoderSettings, max_length: int) -> tuple[int, int]:
    """The largest batch one runtime call can get, (rows, length): rows of ``max_length`` tokens
    up to the token budget (and the row limit). Activations scale with it (attention with rows x
    length^2), so it is the shape whose memory a model must be able to hold."""
    rows = max(1, min(settings.max_rows, settings.max_tokens // max(1, max_length)))
    return rows, max_length


def warm_up(encoder: RaggedEncoder, inputs: Sequence[dict], shapes: Sequence[tuple[int, int]] = DEFAULT_WARMUP_SHAPES,
            repeats: int = 2, budget_length: int = 0) -> None:
    """Run a few shapes through the encoder before the model reports ready, so the first user
    request does not pay for lazy initialisation (ORT arenas, TorchScript's profiling executor
    specialises on its second run of a shape, CUDA kernels and cuBLAS handles). ``budget_length``
    > 0: one more batch at the token budget with rows of that length (:func:`budget_shape`), so an
    out-of-memory shows at load."""
    plan = [(rows, length, repeats) for rows, length in shapes]
    if budget_length > 0:
        plan.append((*budget_shape(encoder.settings, budget_length), 1))
    for rows, length, times in plan:
        feeds = warmup_feeds(inputs, min(rows, encoder.settings.max_rows), length)
        for _ in range(times):
            result = encoder.run([feeds])[0]
            if isinstance(result, Exception):
                raise result


def token_input_specs(names: Sequence[str]) -> list[dict]:
    """Warm-up specs of a token encoder's inputs (int64 ``[-1]`` each), as a model config lists them."""
    return [{"name": name, "data_type": "TYPE_INT64", "dims": [-1]} for name in names]


def encoder_from_params(path: str | Path, *, input_names: Sequence[str], output_names: Sequence[str],
                        runtime: RuntimeParams, max_rows: int, cpu_instance: bool = False) -> RaggedEncoder:
    """The ragged encoder of an artifact, set up from a model's typed runtime parameters: the
    embedded encoder model's own, or those a public model that runs its encoder in process got
    (``encoder_*``). One place, so both run the same way."""
    device = runtime.device
    if cpu_instance and device == "auto":
        device = "cpu"
    runner = load_runner(path, input_names=list(input_names), output_names=list(output_names), device=device,
                         intra_op_threads=runtime.intra_op_threads, allow_spinning=runtime.allow_spinning,
                         prepack_weights=runtime.prepack_weights, memory_arena=runtime.memory_arena)
    # CPU: a single row keeps the cores busy, padding is pure waste; GPU: batching pays, but
    # padding a 15-token row to 512 does not (H100: 0.5 gave 1.6x the pairs/s of no bound)
    max_padding = runtime.max_padding
    if max_padding is None:
        max_padding = 0.5 if runner.device == "cuda" else 0.1  # measured: loadtest/RESULTS.md
    return RaggedEncoder(runner, input_names, EncoderSettings(
        max_tokens=runtime.max_batch_tokens, max_rows=max(1, int(max_rows)),
        max_padding=float("inf") if max_padding < 0 else max_padding,
        mask_groups=dict(runtime.mask_groups),
    ))
