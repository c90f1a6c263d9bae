"""The gateway's own cost per request: CPU seconds of the gateway process and p50 latency, one
client sending sequentially, next to the SDK over gRPC, for each way the gateway reaches Triton.

    python -m structbert_bench.gateway_cost --repository REPO [--requests 500] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

TEXT = "这家酒店的早餐很好吃，房间也很干净"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _p50_ms(call, n: int) -> float:
    for _ in range(20):
        call()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t0)
    return round(float(np.percentile(lat, 50)) * 1000, 2)


def measure(repository: Path, requests: int) -> dict:
    from structbert_client import StructBertClient
    from structbert_gateway.process import GatewayProcess
    from structbert_serving.embedded_server import EmbeddedServer

    from .gateway_client import gateway_worker

    out = {"requests": requests, "load_average": [round(os.getloadavg()[0], 2)], "runs": {}}
    with EmbeddedServer(repository) as server:
        sdk = StructBertClient(server.grpc_url, retries=0)
        out["runs"]["direct gRPC (SDK)"] = {"p50_ms": _p50_ms(lambda: sdk.embed(TEXT), requests)}
        for protocol in ("http", "grpc"):
            with GatewayProcess(server.grpc_url, repository, triton_http_url=server.http_url,
                                extra_args=["--triton-protocol", protocol]) as gateway:
                call = gateway_worker(gateway.url, "embedding")()
                before = _cpu_s(gateway.process.pid)
                p50 = _p50_ms(lambda call=call: call((TEXT,)), requests)
                cpu_ms = (_cpu_s(gateway.process.pid) - before) / (requests + 20) * 1000
                out["runs"][f"gateway, Triton over {protocol}"] = {"p50_ms": p50, "gateway_cpu_ms_per_request":
                                                                    round(cpu_ms, 2)}
        out["runs"]["direct gRPC (SDK), again"] = {"p50_ms": _p50_ms(lambda: sdk.embed(TEXT), requests)}
    out["load_average"].append(round(os.getloadavg()[0], 2))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repository", type=Path, required=True, help="a repository with the embedding task")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    result = measure(args.repository, args.requests)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
