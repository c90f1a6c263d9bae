"""INT8 server vs FP32 server, in one run: for each workload, the two repositories are served in
turn (one server at a time, alternating rounds so that background load hits both alike) at the
same concurrency, and the report gives INT8 throughput / FP32 throughput.

    python -m structbert_bench.int8_speed --out build/bench-int8-speed --size base \
        --workloads embedding,pair,zero_shot,uie --concurrency 16 --duration-s 10 --rounds 2

Repositories exported from real checkpoints instead of the synthetic ones (``--repo NAME=PATH``, one
``fp32`` and one ``int8`` at least; further names, e.g. an INT8 export of an earlier commit, are
measured in the same rotation and reported against ``fp32`` too):

    python -m structbert_bench.int8_speed --workloads embedding --repo fp32=build/minilm2 \
        --repo int8=build/minilm-int8 --repo int8_before=build/minilm-int8-old --client perf_analyzer
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


def measure(repo: Path, workload: str, items: list[tuple], concurrency: int, duration_s: float,
            client: str = "sdk", work: Path | None = None) -> dict:
    """One server, one window: the SDK over gRPC in this process, or perf_analyzer (Triton's C++ load
    generator, lighter on the 2 cores the server shares with it; its real-text inputs)."""
    from structbert_serving.embedded_server import EmbeddedServer

    from .overhead import served_window_perf_analyzer

    with EmbeddedServer(repo) as server:
        warm = sdk_worker(server.grpc_url, "grpc", workload)()
        for p in items[:8]:
            warm(p)
        if client == "perf_analyzer":
            work = work or Path("build")
            work.mkdir(parents=True, exist_ok=True)
            return served_window_perf_analyzer(server.grpc_url, WORKLOADS[workload].model, concurrency, duration_s,
                                               work)
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
    parser.add_argument("--client", choices=("sdk", "perf_analyzer"), default="sdk")
    parser.add_argument("--repo", action="append", default=[], metavar="NAME=PATH",
                        help="a prebuilt repository to serve (fp32 and int8 at least); default: export synthetic ones")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workloads = [w for w in args.workloads.split(",") if w]
    repos = parse_repos(args.repo)
    if not repos:
        base = BenchConfig(out=args.out, size=args.size, workloads=workloads)
        repos = {p: prepare_repository(replace(base, precision=p)) for p in ("fp32", "int8")}
    data_dir = default_data_dir()
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(), "size": args.size,
               "concurrency": args.concurrency, "duration_s": args.duration_s, "rounds": args.rounds,
               "client": args.client, "repositories": {k: str(v) for k, v in repos.items()}, "workloads": {}}
    for name in workloads:
        items = payloads(name, data_dir, 4000, seed=1)
        runs: dict[str, list[dict]] = {p: [] for p in repos}
        for round_ in range(args.rounds):
            order = list(repos) if round_ % 2 == 0 else list(reversed(repos))
            for precision in order:
                stats = measure(repos[precision], name, items, args.concurrency, args.duration_s, args.client,
                                args.out)
                runs[precision].append(stats)
                log.info("%s %s round %d: %.2f %s/s, p50 %.0f ms, errors %d", name, precision, round_, stats["rps"],
                         WORKLOADS[name].unit, stats["p50_ms"], stats["errors"])
        rps = {p: float(np.mean([r["rps"] for r in runs[p]])) for p in runs}
        results["workloads"][name] = {"unit": WORKLOADS[name].unit, "runs": runs,
                                      **{f"{p}_rps": round(v, 2) for p, v in rps.items()},
                                      **{f"{p}_over_fp32": round(v / rps["fp32"], 2) if rps["fp32"] else None
                                         for p, v in rps.items() if p != "fp32"}}
        log.info("%s: INT8 %.2f vs FP32 %.2f %s/s -> x%.2f", name, rps["int8"], rps["fp32"], WORKLOADS[name].unit,
                 results["workloads"][name]["int8_over_fp32"] or 0)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_speed.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: {m: x for m, x in v.items() if m.endswith(("_rps", "_over_fp32"))}
                      for k, v in results["workloads"].items()}, indent=2))


def parse_repos(specs: list[str]) -> dict[str, Path]:
    """``["fp32=build/a", "int8=build/b", ...]`` -> {name: path}, fp32 first; {} when none given."""
    repos = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--repo takes NAME=PATH, not {spec!r}")
        repos[name] = Path(path)
    if repos and not {"fp32", "int8"} <= set(repos):
        raise SystemExit("--repo needs an fp32 and an int8 repository (the ratio is INT8 over FP32)")
    return dict(sorted(repos.items(), key=lambda item: item[0] != "fp32"))


if __name__ == "__main__":
    main()
