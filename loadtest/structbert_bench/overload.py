"""Overload: offer every public pipeline several times what the server can hold, count what happens.

    python -m structbert_bench.overload --repository model_repository --factors 4,16 \\
        --out loadtest/results/overload.json

For each workload: first its **capacity** (closed loop at ``capacity_clients`` clients, no
overload: successful requests/s), then runs with ``factor x capacity_clients`` clients for a
bounded time. Each client sends one request at a time with a client deadline; after a refusal
(UNAVAILABLE: queue full or queue timeout) it backs off exponentially with jitter, as the SDK's
retry does, and after a success it sends at once. Every request ends in exactly one bucket:

- ``ok``: answered with a result;
- ``refused``: answered with UNAVAILABLE (``ServerOverloadedError``) - refused, fast;
- ``other``: answered with any other error (a bug under overload);
- ``unanswered``: no answer before the client deadline (a hung request: the thing that must be 0).

Goodput is the successful requests/s during overload over the capacity without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .measure import closed_loop
from .workloads import WORKLOADS, default_data_dir, payloads, sdk_worker

log = logging.getLogger("structbert_bench.overload")


@dataclass
class OverloadRun:
    workload: str
    clients: int
    seconds: float
    ok: int = 0
    refused: int = 0
    other: int = 0
    unanswered: int = 0
    ok_p50_ms: float = 0.0
    ok_p99_ms: float = 0.0
    refused_p50_ms: float = 0.0
    refused_p99_ms: float = 0.0
    max_answer_ms: float = 0.0  # the slowest answer of any kind
    goodput_rps: float = 0.0  # successful requests/s inside the load window
    offered_rps: float = 0.0  # answered requests/s inside the load window (all buckets)
    other_sample: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else 0.0


def overload_run(make_call: Callable[[], Callable[[tuple], object]], items: list[tuple], *, workload: str,
                 clients: int, duration_s: float, deadline_s: float, backoff_s: float = 0.2,
                 max_backoff_s: float = 3.2, clients_per_connection: int = 16, warmup_s: float = 1.0) -> OverloadRun:
    """``clients`` threads send for ``duration_s``; every request carries a ``deadline_s`` client
    deadline. Requests still in flight at the end are waited for (up to their deadline), so none
    goes uncounted. Goodput and offered load count what completes inside the load window (after
    ``warmup_s``, before the clients stop sending), not the drain afterwards."""
    from structbert_client import RequestTimeoutError, ServerOverloadedError

    lock = threading.Lock()
    ok: list[float] = []
    refused: list[float] = []
    in_window = {"ok": 0, "all": 0}
    answered: list[float] = []
    counts = {"other": 0, "unanswered": 0}
    samples: list[str] = []
    calls = [make_call() for _ in range(max(1, -(-clients // clients_per_connection)))]
    start = time.perf_counter()
    stop_at = start + duration_s
    window_start = start + min(warmup_s, duration_s / 2)

    def client(index: int) -> None:
        call = calls[index // clients_per_connection]
        rng = random.Random(index)
        i, delay = index, backoff_s
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                call(items[i % len(items)])
                bucket = "ok"
            except ServerOverloadedError:
                bucket = "refused"
            except RequestTimeoutError:
                bucket = "unanswered"
            except Exception as exc:  # anything else under overload is a bug worth a sample
                bucket = "other"
                with lock:
                    if len(samples) < 5:
                        samples.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            done = time.perf_counter()
            elapsed = done - t0
            with lock:
                if window_start <= done <= stop_at:
                    in_window["all"] += 1
                    in_window["ok"] += bucket == "ok"
                if bucket in ("ok", "refused"):
                    (ok if bucket == "ok" else refused).append(elapsed)
                else:
                    counts[bucket] += 1
                if bucket != "unanswered":
                    answered.append(elapsed)
            i += clients
            if bucket == "ok":
                delay = backoff_s
            else:  # back off after a refusal, as a polite client (and the SDK's retry) does
                time.sleep(min(delay, max(0.0, stop_at - time.perf_counter())) * (0.5 + rng.random()))
                delay = min(delay * 2, max_backoff_s)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + deadline_s + 30)
    seconds = time.perf_counter() - start
    stuck = sum(t.is_alive() for t in threads)  # a thread still waiting past its deadline: unanswered too
    return OverloadRun(
        workload=workload, clients=clients, seconds=round(seconds, 2), ok=len(ok), refused=len(refused),
        other=counts["other"], unanswered=counts["unanswered"] + stuck, ok_p50_ms=_ms(ok, 50),
        ok_p99_ms=_ms(ok, 99), refused_p50_ms=_ms(refused, 50), refused_p99_ms=_ms(refused, 99),
        max_answer_ms=round(max(answered, default=0.0) * 1000, 1),
        goodput_rps=round(in_window["ok"] / (stop_at - window_start), 2),
        offered_rps=round(in_window["all"] / (stop_at - window_start), 2), other_sample=samples)


def run_workload(server, workload: str, *, data_dir: Path, factors: list[int], capacity_clients: int,
                 duration_s: float, deadline_s: float, protocol: str = "grpc") -> dict:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    items = payloads(workload, data_dir, 2000, seed=3)
    make = sdk_worker(url, protocol, workload, deadline_s)
    warm = make()
    for p in items[:4]:
        warm(p)
    capacity = closed_loop(make, items, concurrency=capacity_clients, duration_s=duration_s)
    log.info("%s: capacity %.1f req/s at %d clients (p99 %.0f ms)", workload, capacity.rps, capacity_clients,
             capacity.p99_ms)
    runs = []
    for factor in factors:
        run = overload_run(make, items, workload=workload, clients=factor * capacity_clients,
                           duration_s=duration_s, deadline_s=deadline_s)
        row = {"factor": factor, **run.as_dict(),
               "goodput_ratio": round(run.goodput_rps / capacity.rps, 3) if capacity.rps else None,
               "server_ready_after": server.is_ready()}
        log.info("%s x%d (%d clients): ok %d, refused %d (p50 %.0f ms), other %d, unanswered %d, goodput %.2f",
                 workload, factor, run.clients, run.ok, run.refused, run.refused_p50_ms, run.other,
                 run.unanswered, row["goodput_ratio"] or 0)
        runs.append(row)
    return {"model": WORKLOADS[workload].model, "capacity_clients": capacity_clients,
            "capacity_rps": capacity.rps, "capacity_p99_ms": capacity.p99_ms, "capacity_errors": capacity.errors,
            "runs": runs}


def markdown(results: dict) -> list[str]:
    """The overload runs as a Markdown table (RESULTS.md, README)."""
    lines = [f"Command: `{results['command']}` ({results['date']}; {results.get('machine', '')}). Admission control "
             f"of the repository: {results.get('admission', '')}.", "",
             "| model | clients (x capacity clients) | offered req/s | answered ok | goodput req/s (x capacity) | "
             "refused | refusal p50 / p99 ms | ok p99 ms | slowest answer ms | other errors | unanswered |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for data in results["workloads"].values():
        lines.append(f"| {data['model']} (capacity: {data['capacity_rps']:.0f} req/s at {data['capacity_clients']} "
                     f"clients) | | | | | | | | | | |")
        for r in data["runs"]:
            lines.append(
                f"| | {r['clients']} (x{r['factor']}) | {r['offered_rps']:.0f} | {r['ok']} | {r['goodput_rps']:.0f} "
                f"(x{r['goodput_ratio']:.2f}) | {r['refused']} | {r['refused_p50_ms']:.0f} / {r['refused_p99_ms']:.0f} | "
                f"{r['ok_p99_ms']:.0f} | {r['max_answer_ms']:.0f} | {r['other']} | {r['unanswered']} |")
    return lines


def admission_summary(repository: Path) -> str:
    from structbert_export import pbtxt

    configs = [pbtxt.parse(p.read_text()) for p in sorted(Path(repository).glob("*/config.pbtxt"))]
    public = [c for c in configs if c.dynamic_batching.HasField("default_queue_policy")]
    if not public:
        return "none"
    policy, c = public[0].dynamic_batching.default_queue_policy, public[0]
    return (f"max_queue_size {policy.max_queue_size}, queue timeout {policy.default_timeout_microseconds / 1e6:g} s, "
            f"max_batch_size {c.max_batch_size}, {c.instance_group[0].count} instances per public model")


def main(argv: list[str] | None = None) -> int:
    from structbert_serving.embedded_server import EmbeddedServer

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repository", type=Path, required=True)
    p.add_argument("--workloads", default="embedding,similarity,pair,zero_shot,uie")
    p.add_argument("--factors", default="4,16", help="overload runs at these multiples of --capacity-clients")
    p.add_argument("--capacity-clients", type=int, default=16,
                   help="clients that saturate the server without overloading it (the capacity run)")
    p.add_argument("--duration-s", type=float, default=15.0)
    p.add_argument("--deadline-s", type=float, default=30.0, help="client deadline: no answer by then = hung")
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("build/overload.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    factors = [int(f) for f in args.factors.split(",")]
    from .bench import machine_info

    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "repository": str(args.repository),
               "machine": machine_info()["summary"], "admission": admission_summary(args.repository),
               "command": "python -m structbert_bench.overload " + " ".join(argv or __import__("sys").argv[1:]),
               "workloads": {}}
    with EmbeddedServer(args.repository) as server:
        for workload in [w for w in args.workloads.split(",") if w]:
            results["workloads"][workload] = run_workload(
                server, workload, data_dir=args.data_dir or default_data_dir(), factors=factors,
                capacity_clients=args.capacity_clients, duration_s=args.duration_s, deadline_s=args.deadline_s,
                protocol=args.protocol)
        results["server_alive_after"] = server.process.poll() is None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    args.out.with_suffix(".md").write_text("\n".join(markdown(results)) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
