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


def _calls(lock_dir: str, n: int, queue) -> None:
    runner = ExclusiveRunner(SlowRunner(0.05), lock_dir)
    for _ in range(n):
        queue.put(tuple(runner.run({})["Y"]))


def test_processes_sharing_a_lock_never_run_at_once(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_calls, args=(str(tmp_path), 4, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    spans = sorted(queue.get(timeout=60) for _ in range(12))
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
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
