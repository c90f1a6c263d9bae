"""Two running servers, A and B, measured in turns (A B A B ...) on the same workloads, texts and
client concurrencies: what a change does to throughput, with the machine's drift spread over both.

    python -m structbert_bench.ab --a 127.0.0.1:8001 --b 127.0.0.1:9001 --workloads embedding,zero_shot \\
        --concurrency 1,8,32 --duration-s 8 --rounds 2 --out build/ab.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from .measure import closed_loop
from .workloads import default_data_dir, payloads, sdk_worker


def run(servers: dict[str, str], workloads: list[str], concurrency: list[int], duration_s: float,
        rounds: int, data_dir: Path) -> dict:
    rows = []
    for name in workloads:
        items = payloads(name, data_dir, 2000, seed=1)
        for url in servers.values():  # warm both before any window counts
            warm = sdk_worker(url, "grpc", name)()
            for p in items[:8]:
                warm(p)
        for c in concurrency:
            for r in range(rounds):
                for label, url in servers.items():
                    stats = closed_loop(sdk_worker(url, "grpc", name), items, concurrency=c, duration_s=duration_s)
                    rows.append({"workload": name, "concurrency": c, "round": r, "server": label,
                                 "rps": stats.rps, "p50_ms": stats.p50_ms, "p99_ms": stats.p99_ms,
                                 "errors": stats.errors})
                    print(json.dumps(rows[-1]), flush=True)
    summary = []
    for name in workloads:
        for c in concurrency:
            rps = {s: statistics.median(x["rps"] for x in rows if (x["workload"], x["concurrency"], x["server"])
                                        == (name, c, s)) for s in servers}
            a, b = list(rps.values())
            summary.append({"workload": name, "concurrency": c, **{f"{s}_rps": round(v, 2) for s, v in rps.items()},
                            "b_over_a": round(b / a, 3) if a else None})
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "servers": servers, "duration_s": duration_s,
            "rounds": rounds, "windows": rows, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="gRPC address of server A (the baseline)")
    p.add_argument("--b", required=True, help="gRPC address of server B")
    p.add_argument("--workloads", default="embedding,similarity,zero_shot")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--duration-s", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("build/ab.json"))
    args = p.parse_args(argv)
    result = run({"a": args.a, "b": args.b}, args.workloads.split(","), [int(c) for c in args.concurrency.split(",")],
                 args.duration_s, args.rounds, default_data_dir())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for row in result["summary"]:
        print(f"{row['workload']:>10} x{row['concurrency']:<3} A {row['a_rps']:8.2f}  B {row['b_rps']:8.2f}  "
              f"B/A {row['b_over_a']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
