"""INT8 server vs FP32 server, in one run: for each workload, the two repositories are served in
turn (one server at a time, alternating rounds so that background load hits both alike) at the
same concurrency, and the report gives INT8 throughput / FP32 throughput.

    python -m structbert_bench.int8_speed --out build/bench-int8-speed --size base \
        --workloads embedding,pair,zero_shot,uie --concurrency 16 --duration-s 10 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .bench import BenchConfig, machine_info, prepare_repository
from .measure import closed_loop_processes
from .workloads import WORKLOADS, default_data_dir, payloads, sdk_worker

log = logging.getLogger(__name__)


def measure(repo: Path, workload: str, items: list[tuple], concurrency: int, duration_s: float) -> dict:
    from structbert_serving.embedded_server import EmbeddedServer

    with EmbeddedServer(repo) as server:
        warm = sdk_worker(server.grpc_url, "grpc", workload)()
        for p in items[:8]:
            warm(p)
        stats = closed_loop_processes(server.grpc_url, "grpc", workload, items, concurrency=concurrency,
                                      processes=1, duration_s=duration_s)
    return stats.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("build/bench-int8-speed"))
    parser.add_argument("--size", default="base")
    parser.add_argument("--workloads", default="embedding,pair,zero_shot,uie")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workloads = [w for w in args.workloads.split(",") if w]
    base = BenchConfig(out=args.out, size=args.size, workloads=workloads)
    repos = {p: prepare_repository(replace(base, precision=p)) for p in ("fp32", "int8")}
    data_dir = default_data_dir()
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(), "size": args.size,
               "concurrency": args.concurrency, "duration_s": args.duration_s, "rounds": args.rounds,
               "repositories": {k: str(v) for k, v in repos.items()}, "workloads": {}}
    for name in workloads:
        items = payloads(name, data_dir, 4000, seed=1)
        runs: dict[str, list[dict]] = {"fp32": [], "int8": []}
        for round_ in range(args.rounds):
            order = ("fp32", "int8") if round_ % 2 == 0 else ("int8", "fp32")
            for precision in order:
                stats = measure(repos[precision], name, items, args.concurrency, args.duration_s)
                runs[precision].append(stats)
                log.info("%s %s round %d: %.2f %s/s, p50 %.0f ms, errors %d", name, precision, round_, stats["rps"],
                         WORKLOADS[name].unit, stats["p50_ms"], stats["errors"])
        rps = {p: float(np.mean([r["rps"] for r in runs[p]])) for p in runs}
        results["workloads"][name] = {"unit": WORKLOADS[name].unit, "runs": runs,
                                      "fp32_rps": round(rps["fp32"], 2), "int8_rps": round(rps["int8"], 2),
                                      "int8_over_fp32": round(rps["int8"] / rps["fp32"], 2) if rps["fp32"] else None}
        log.info("%s: INT8 %.2f vs FP32 %.2f %s/s -> x%.2f", name, rps["int8"], rps["fp32"], WORKLOADS[name].unit,
                 results["workloads"][name]["int8_over_fp32"] or 0)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_speed.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: {m: v[m] for m in ("fp32_rps", "int8_rps", "int8_over_fp32")}
                      for k, v in results["workloads"].items()}, indent=2))


if __name__ == "__main__":
    main()
