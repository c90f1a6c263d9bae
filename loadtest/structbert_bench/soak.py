"""Soak: steady locust load on the embedded server; errors and the slope of server memory.

    python -m structbert_bench.soak --repository model_repository --minutes 10 --users 8 --out build/soak

Memory is the resident size (RSS) and the proportional set size (PSS: shared weights counted once,
``memory.tree_memory``) of tritonserver and its Python-backend stubs, sampled every few seconds; the slope is a least-squares fit after the first 20% of the run (warm-up). A flat line
(|slope| of a few MB per minute, within the noise of allocator caches) means no leak.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

LOADTEST = Path(__file__).resolve().parents[1]


def run_soak(repository: Path, out: Path, *, seconds: float, users: int, sample_s: float = 5.0,
             data_dir: Path | None = None) -> dict:
    import psutil

    from structbert_serving.embedded_server import EmbeddedServer

    out.mkdir(parents=True, exist_ok=True)
    from .memory import tree_memory

    samples: list[tuple[float, float]] = []
    pss: list[float] = []
    with EmbeddedServer(repository) as server:
        root = psutil.Process(server.process.pid)
        stop = threading.Event()

        def sample():
            start = time.monotonic()
            while not stop.is_set():
                rss = 0
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        rss += proc.memory_info().rss
                samples.append((time.monotonic() - start, rss / 2**20))
                pss.append(tree_memory(root.pid).pss_mb)
                stop.wait(sample_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        env = dict(os.environ)
        if data_dir:
            env["STRUCTBERT_DATA_DIR"] = str(data_dir)
        cmd = ["timeout", "-k", "15", str(int(seconds) + 90), sys.executable, "-m", "locust", "-f",
               str(LOADTEST / "locustfile.py"), "--host", f"http://{server.http_url}", "--headless", "-u", str(users),
               "-r", str(users), "--run-time", f"{int(seconds)}s", "--stop-timeout", "15", "--csv",
               str(out / "soak"), "--html", str(out / "soak.html"), "--only-summary"]
        run = subprocess.run(cmd, capture_output=True, text=True, env=env)
        stop.set()
        sampler.join()
        ready = server.is_ready()
    with open(out / "soak_stats.csv") as stats:
        total = next(r for r in csv.DictReader(stats) if r["Name"] == "Aggregated")
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples])
    keep = t >= 0.2 * t.max() if len(t) else t
    slope = float(np.polyfit(t[keep] / 60, mb[keep], 1)[0]) if keep.sum() >= 3 else float("nan")
    windows = []  # the shape of the curve: growth that decelerates is warm-up, a steady slope is a leak
    if len(t):
        edges = np.linspace(0, t.max() + 1e-9, 6)
        for lo, hi in itertools.pairwise(edges):
            sel = (t >= lo) & (t < hi)
            if sel.sum() >= 3:
                windows.append({"from_min": round(lo / 60, 1), "to_min": round(hi / 60, 1),
                                "mean_mb": round(float(mb[sel].mean()), 1),
                                "slope_mb_per_min": round(float(np.polyfit(t[sel] / 60, mb[sel], 1)[0]), 1)})
    report = {"seconds": seconds, "users": users, "requests": int(total["Request Count"]),
              "failures": int(total["Failure Count"]), "requests_per_s": float(total["Requests/s"]),
              "p50_ms": float(total["50%"]), "p99_ms": float(total["99%"]), "locust_exit_code": run.returncode,
              "server_ready_after": ready, "rss_mb_start": round(float(mb[0]), 1) if len(mb) else None,
              "rss_mb_end": round(float(mb[-1]), 1) if len(mb) else None,
              "rss_slope_mb_per_min_after_warmup": round(slope, 2), "rss_by_window": windows,
              "pss_mb_start": pss[0] if pss else None, "pss_mb_end": pss[-1] if pss else None,
              "pss_mb_max": max(pss) if pss else None, "samples": samples, "pss_samples": pss}
    (out / "soak.json").write_text(json.dumps(report, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("build/soak"))
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    report = run_soak(args.repository, args.out, seconds=args.minutes * 60, users=args.users, data_dir=args.data_dir)
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
