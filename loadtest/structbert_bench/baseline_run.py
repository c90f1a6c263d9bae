"""Run one workload's PyTorch eager baseline, one request at a time, in its own process:
``python -m structbert_bench.baseline_run --workload uie --checkpoint DIR --data-dir DIR``.
Prints one JSON line with the latencies (the parent samples this process's memory)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--duration-s", type=float, default=20)
    parser.add_argument("--max-requests", type=int, default=2000)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()

    import torch

    from .workloads import baseline_call, payloads

    call = baseline_call(args.workload, args.checkpoint, args.device)
    items = payloads(args.workload, args.data_dir, args.max_requests, seed=1)
    for p in items[:3]:  # warm-up
        call(p)
    latencies = []
    start = time.perf_counter()
    for p in items:
        t0 = time.perf_counter()
        call(p)
        latencies.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= args.duration_s:
            break
    gpu_mib = torch.cuda.max_memory_reserved() / 2**20 if args.device == "cuda" else None
    print(json.dumps({"latencies_s": latencies, "seconds": time.perf_counter() - start,
                      "torch_threads": torch.get_num_threads(), "gpu_reserved_mib": gpu_mib}))


if __name__ == "__main__":
    main()
