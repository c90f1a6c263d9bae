"""Latency statistics, closed-loop load, and peak memory of a process tree."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class Stats:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    peak_rss_mb: float = 0.0
    error_sample: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def summarise(latencies_s: list[float], errors: int, seconds: float, error_sample: str = "") -> Stats:
    lat = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    pct = np.percentile(lat, [50, 95, 99]) if lat.size else np.zeros(3)
    return Stats(requests=int(lat.size), errors=errors, seconds=round(seconds, 3),
                 rps=round(lat.size / seconds, 3) if seconds else 0.0, p50_ms=round(float(pct[0]), 2),
                 p95_ms=round(float(pct[1]), 2), p99_ms=round(float(pct[2]), 2),
                 mean_ms=round(float(lat.mean()) if lat.size else 0.0, 2), error_sample=error_sample[:300])


def cpu_times(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs so far, or None where there is no ``/proc/stat``."""
    try:
        fields = [int(x) for x in stat.read_text().splitlines()[0].split()[1:]]
    except (OSError, IndexError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])  # guest time is already in user


def steal_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Percent of the CPU time between two :func:`cpu_times` that the hypervisor gave to other guests
    (a shared VM's neighbours: throughput drops with no change here; reported next to the numbers)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)


class CpuSteal:
    """``with CpuSteal() as steal: ...``, then ``steal.pct``: :func:`steal_pct` over the block."""

    pct: float | None = None

    def __enter__(self) -> CpuSteal:
        self._before = cpu_times()
        return self

    def __exit__(self, *exc) -> None:
        self.pct = steal_pct(self._before, cpu_times())


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, read from /proc (no psutil: GPU hosts may lack it)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


class RssSampler:
    """Peak resident memory of a process and all its children, sampled in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.2):
        self._pid = pid
        self._interval = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        return sum(rss_bytes(p) for p in process_tree(self._pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._sample())

    @property
    def peak_mb(self) -> float:
        return round(self.peak_bytes / 2**20, 1)


def closed_loop(make_worker: Callable[[], Callable[[tuple], object]], payloads: list[tuple], *,
                concurrency: int, duration_s: float, warmup_s: float = 1.0, max_wait_s: float = 300.0) -> Stats:
    """:func:`closed_loop_samples`, summarised."""
    return summarise(*closed_loop_samples(make_worker, payloads, concurrency=concurrency, duration_s=duration_s,
                                          warmup_s=warmup_s, max_wait_s=max_wait_s))


def closed_loop_samples(make_worker: Callable[[], Callable[[tuple], object]], payloads: list[tuple], *,
                        concurrency: int, duration_s: float, warmup_s: float = 1.0, max_wait_s: float = 300.0,
                        rounds: float = 3.0) -> tuple[list[float], int, float, str]:
    """``concurrency`` workers send requests back to back. The measured window opens once every
    worker has completed a request and ``warmup_s`` has passed (steady state, even when one round
    takes longer than the window), and lasts ``duration_s`` or ``rounds`` times that first round,
    whichever is longer; throughput and latencies count the requests that complete inside it."""
    latencies: list[float] = []
    errors = [0]
    sample = [""]
    lock = threading.Lock()
    started = time.perf_counter()
    first_done = [0]
    window: list[float] = []  # [start, stop] once open

    def open_window_if_ready(now: float) -> None:
        if not window and first_done[0] >= concurrency and now - started >= warmup_s:
            # at least three rounds: when one round (every client served once) takes seconds, a
            # shorter window counts a handful of lumpy completions, not a throughput
            window.extend([now, now + max(duration_s, rounds * (now - started))])

    def worker(index: int) -> None:
        call = make_worker()
        i = index
        completed_once = False
        while True:
            now = time.perf_counter()
            if (window and now >= window[1]) or now - started > max_wait_s + duration_s:
                break
            t0 = time.perf_counter()
            try:
                call(payloads[i % len(payloads)])
                ok = True
            except Exception as exc:
                ok = False
                with lock:
                    sample[0] = sample[0] or f"{type(exc).__name__}: {exc}"
            t1 = time.perf_counter()
            with lock:
                if not completed_once:
                    completed_once = True
                    first_done[0] += 1
                open_window_if_ready(t1)
                if window and window[0] <= t1 <= window[1]:
                    if ok:
                        latencies.append(t1 - t0)
                    else:
                        errors[0] += 1
            i += concurrency

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    seconds = (window[1] - window[0]) if window else time.perf_counter() - started
    return latencies, errors[0], seconds, sample[0]


def _client_process(url: str, protocol: str, workload: str, payloads: list[tuple], concurrency: int,
                    duration_s: float, results) -> None:
    from .workloads import sdk_worker

    results.put(closed_loop_samples(sdk_worker(url, protocol, workload), payloads, concurrency=concurrency,
                                    duration_s=duration_s))


def closed_loop_processes(url: str, protocol: str, workload: str, payloads: list[tuple], *, concurrency: int,
                          processes: int, duration_s: float) -> Stats:
    """:func:`closed_loop` spread over ``processes`` client processes (a Python client's threads share
    one GIL: at thousands of requests/s one process, not the server, is the bottleneck). Throughput
    is the sum over processes; latencies are pooled."""
    import multiprocessing

    from .workloads import sdk_worker

    processes = max(1, min(processes, concurrency))
    if processes == 1:
        return closed_loop(sdk_worker(url, protocol, workload), payloads, concurrency=concurrency,
                           duration_s=duration_s)
    ctx = multiprocessing.get_context("spawn")  # no fork: gRPC's threads do not survive one
    results = ctx.Queue()
    shares = [concurrency // processes + (1 if k < concurrency % processes else 0) for k in range(processes)]
    procs = [ctx.Process(target=_client_process, args=(url, protocol, workload, payloads[k::processes], share,
                                                       duration_s, results), daemon=True)
             for k, share in enumerate(shares)]
    for proc in procs:
        proc.start()
    parts = [results.get(timeout=duration_s + 600) for _ in procs]
    for proc in procs:
        proc.join(30)
    latencies = [x for lat, _, _, _ in parts for x in lat]
    errors = sum(err for _, err, _, _ in parts)
    rps = sum(len(lat) / sec for lat, _, sec, _ in parts if sec)
    sample = next((s for _, _, _, s in parts if s), "")
    stats = summarise(latencies, errors, max(sec for _, _, sec, _ in parts), sample)
    stats.rps = round(rps, 3)
    return stats
