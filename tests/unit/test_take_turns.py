"""The instances of one in-process public model take turns on the runtime (issue 16).

Triton 2.51's dynamic batcher, with any ``default_queue_policy``, forms a batch only for an idle
instance and is not woken when a busy one frees up: requests that arrived meanwhile sleep up to
500 ms. Two instances keep an idle one for the batcher; a lock shared by the instances keeps them
from running two sessions at once on the same cores, and a batch keeps its turn over all its
length-sorted chunks."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import time

import numpy as np
import pytest

from structbert_serving.encoder import EncoderSettings, RaggedEncoder
from structbert_serving.runtime import TakeTurns

NAMES = ["INPUT_IDS", "ATTENTION_MASK"]


class SlowRunner:
    """Sleeps ``seconds`` per call; every output row holds the call's (start, end)."""

    device = "cpu"
    output_names = ["Y"]

    def __init__(self, seconds: float):
        self.seconds = seconds

    def run(self, feeds):
        start = time.monotonic()
        time.sleep(self.seconds)
        return {"Y": np.tile([start, time.monotonic()], (len(feeds["INPUT_IDS"]), 1))}


def encoder(runner, lock_dir, *, overlap_below_tokens: int = 0, rows_per_chunk: int = 64) -> RaggedEncoder:
    turns = TakeTurns(lock_dir, overlap_below_tokens=overlap_below_tokens, device=runner.device)
    return RaggedEncoder(runner, NAMES, EncoderSettings(max_rows=rows_per_chunk, max_tokens=10**6), turns=turns)


def feeds(rows: int, length: int = 64) -> dict[str, np.ndarray]:
    return {name: np.ones((rows, length), np.int64) for name in NAMES}


def _batches(lock_dir: str, rows: int, n: int, overlap_below_tokens: int, rows_per_chunk: int, start, queue) -> None:
    enc = encoder(SlowRunner(0.05 if rows_per_chunk < rows else 0.15), lock_dir,
                  overlap_below_tokens=overlap_below_tokens, rows_per_chunk=rows_per_chunk)
    start.wait(60)
    for _ in range(n):
        out = enc.run([feeds(rows)])[0]["Y"]
        queue.put((rows, [tuple(span) for span in np.unique(out, axis=0)]))  # one span per runtime call


def _runs(tmp_path, sizes: list[int], n: int = 3, overlap_below_tokens: int = 512,
          rows_per_chunk: int = 64) -> list[tuple[int, list[tuple[float, float]]]]:
    """(rows, [(start, end) of each runtime call]) of every batch of one process per entry of
    ``sizes`` (rows per batch), ``n`` batches each, all sharing one lock."""
    ctx = mp.get_context("spawn")
    queue, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_batches, args=(str(tmp_path), rows, n, overlap_below_tokens, rows_per_chunk,
                                                start, queue))
             for rows in sizes]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    runs = [queue.get(timeout=60) for _ in range(n * len(sizes))]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return runs


def _spans(runs) -> list[tuple[int, float, float]]:
    return [(rows, *span) for rows, spans in runs for span in spans]


def _overlap(a, b) -> bool:
    return a[1] < b[2] - 1e-4 and b[1] < a[2] - 1e-4


def test_processes_sharing_a_lock_never_run_at_once(tmp_path):
    spans = sorted(span[1:] for span in _spans(_runs(tmp_path, [1, 1, 1], n=4, overlap_below_tokens=0)))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 1e-4, f"two runtime calls overlapped: {spans}"


def test_a_batch_keeps_its_turn_over_all_its_chunks(tmp_path):
    """A batch split into several chunks runs them all in one turn: two processes alternating chunk by
    chunk ran zero-shot 6-7 % slower than one process (MiniLM NLI, batches of 11 texts x 10 labels,
    2 cores: 9.9-10.1 against 10.5-10.8 texts/s; one turn per batch 10.5-10.6), and that was the
    served path's loss at 32 clients."""
    runs = _runs(tmp_path, [3, 3], overlap_below_tokens=0, rows_per_chunk=1)  # 3 chunks per batch
    batches = [(min(s for s, _ in spans), max(e for _, e in spans), spans) for _, spans in runs]
    assert all(len(spans) == 3 for *_, spans in batches)
    for lo, hi, spans in batches:
        others = [s for *_, other in batches if other is not spans for s, _ in other]
        assert not any(lo < s < hi for s in others), f"another batch's call ran between this batch's chunks: {runs}"


def test_a_turn_is_released_after_an_error(tmp_path):
    class Failing(SlowRunner):
        def run(self, feeds):
            raise ValueError("bad feed")

    with pytest.raises(ValueError, match="bad feed"):
        encoder(Failing(0), tmp_path).run([feeds(1)])
    other = encoder(SlowRunner(0), tmp_path)  # another instance gets its turn
    assert other.run([feeds(1)])[0]["Y"].shape == (1, 2)


def test_small_cpu_batches_of_two_instances_overlap(tmp_path):
    """A batch under ``overlap_below_tokens`` leaves a CPU runtime's threads idle part of the time
    (MiniLM on 2 cores: ORT keeps 1.5-1.7 cores busy at <= 128 tokens, 1.85+ from 512): two instances'
    small batches run at once and fill each other's gaps."""
    spans = _spans(_runs(tmp_path, [1, 1]))
    assert any(_overlap(a, b) for a, b in itertools.combinations(spans, 2)), spans


def test_a_large_batch_never_shares_the_runtime(tmp_path):
    spans = _spans(_runs(tmp_path, [1, 16]))  # 64 and 1024 tokens
    large = [s for s in spans if s[0] == 16]
    for big in large:
        assert not any(_overlap(big, other) for other in spans if other is not big), spans


def test_the_whole_batch_decides_whether_it_may_share():
    """Padded tokens of all the batch's chunks count, not one chunk's: 8 rows of 64 in chunks of
    one row are still a 512-token batch."""
    turns = TakeTurns(".", overlap_below_tokens=512, device="cpu")
    assert turns.shared(8 * 8) and not turns.shared(8 * 64)
    seen = []

    class Recording(TakeTurns):
        def turn(self, tokens):
            seen.append(tokens)
            return super().turn(tokens)

    enc = RaggedEncoder(SlowRunner(0), NAMES, EncoderSettings(max_rows=1, max_tokens=10**6),
                        turns=Recording(".", overlap_below_tokens=512, device="cpu"))
    enc.run([feeds(8, 64)])
    assert seen == [512]


def test_a_gpu_runtime_is_never_shared():
    assert not TakeTurns(".", overlap_below_tokens=512, device="cuda").shared(8)
    assert TakeTurns(".", overlap_below_tokens=512, device="cpu").shared(8)
    assert not TakeTurns(".", overlap_below_tokens=0, device="cpu").shared(8)
