"""The instances of one in-process public model take turns on the runtime (issue 16).

Triton 2.51's dynamic batcher, with any ``default_queue_policy``, forms a batch only for an idle
instance and is not woken when a busy one frees up: requests that arrived meanwhile sleep up to
500 ms. Two instances keep an idle one for the batcher; a lock shared by the instances keeps them
from running two sessions at once on the same cores."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import time

import numpy as np
import pytest

from structbert_serving.runtime import ExclusiveRunner


class SlowRunner:
    device = "cpu"
    output_names = ["Y"]

    def __init__(self, seconds: float):
        self.seconds = seconds

    def run(self, feeds):
        start = time.monotonic()
        time.sleep(self.seconds)
        return {"Y": np.array([start, time.monotonic()])}


def test_processes_sharing_a_lock_never_run_at_once(tmp_path):
    spans = sorted(span[1:] for span in _spans(tmp_path, [1, 1, 1], n=4, overlap_below_tokens=0))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 1e-4, f"two runtime calls overlapped: {spans}"


def test_exclusive_runner_passes_results_errors_and_attributes_through(tmp_path):
    class Failing(SlowRunner):
        def run(self, feeds):
            raise ValueError("bad feed")

    runner = ExclusiveRunner(SlowRunner(0), tmp_path)
    assert runner.device == "cpu" and runner.output_names == ["Y"]
    assert runner.run({})["Y"].shape == (2,)
    failing = ExclusiveRunner(Failing(0), tmp_path)
    with pytest.raises(ValueError, match="bad feed"):
        failing.run({})
    assert runner.run({})["Y"].shape == (2,)  # the lock was released after the error


def _sized_calls(lock_dir: str, rows: int, n: int, overlap_below_tokens: int, start, queue) -> None:
    runner = ExclusiveRunner(SlowRunner(0.15), lock_dir, overlap_below_tokens=overlap_below_tokens)
    feeds = {"INPUT_IDS": np.zeros((rows, 64), np.int64)}  # rows x 64 tokens
    start.wait(60)
    for _ in range(n):
        queue.put((rows, *runner.run(feeds)["Y"]))


def _spans(tmp_path, sizes: list[int], n: int = 3, overlap_below_tokens: int = 512) -> list[tuple[int, float, float]]:
    """(rows, start, end) of every call of one process per entry of ``sizes`` (rows per call),
    ``n`` calls each, all sharing one lock."""
    ctx = mp.get_context("spawn")
    queue, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_sized_calls, args=(str(tmp_path), rows, n, overlap_below_tokens, start, queue))
             for rows in sizes]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    spans = [queue.get(timeout=60) for _ in range(n * len(sizes))]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return spans


def _overlap(a, b) -> bool:
    return a[1] < b[2] - 1e-4 and b[1] < a[2] - 1e-4


def test_small_cpu_batches_of_two_instances_overlap(tmp_path):
    """A batch under ``overlap_below_tokens`` leaves a CPU runtime's threads idle part of the time
    (MiniLM on 2 cores: ORT keeps 1.5-1.7 cores busy at <= 128 tokens, 1.85+ from 512): two instances'
    small batches run at once and fill each other's gaps."""
    spans = _spans(tmp_path, [1, 1])
    assert any(_overlap(a, b) for a, b in itertools.combinations(spans, 2)), spans


def test_a_large_batch_never_shares_the_runtime(tmp_path):
    spans = _spans(tmp_path, [1, 16])  # 64 and 1024 tokens
    large = [s for s in spans if s[0] == 16]
    for big in large:
        assert not any(_overlap(big, other) for other in spans if other is not big), spans


def test_a_gpu_runtime_is_never_shared(tmp_path):
    class GpuRunner(SlowRunner):
        device = "cuda"

    runner = ExclusiveRunner(GpuRunner(0), tmp_path, overlap_below_tokens=512)
    assert not runner.shared({"INPUT_IDS": np.zeros((1, 8), np.int64)})
    cpu = ExclusiveRunner(SlowRunner(0), tmp_path, overlap_below_tokens=512)
    assert cpu.shared({"INPUT_IDS": np.zeros((1, 8), np.int64)})
    assert not cpu.shared({"INPUT_IDS": np.zeros((8, 64), np.int64)})
