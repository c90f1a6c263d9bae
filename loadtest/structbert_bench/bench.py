"""``structbert-triton bench``: our pipelines on the embedded server at a ladder of client
concurrencies, and the PyTorch eager baseline on the same checkpoints and texts, in one run."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import report
from .gateway_client import gateway_worker
from .gpu_probe import UtilizationSampler, gpu_memory_by_process
from .measure import (
    CpuSteal,
    RssSampler,
    closed_loop,
    closed_loop_processes,
    cpu_times,
    process_tree,
    steal_pct,
    summarise,
)
from .workloads import WORKLOADS, default_data_dir, payloads, sdk_worker

log = logging.getLogger("structbert_bench")



def encoder_of_task(task: str) -> str:
    """The family's first encoder model (its export.json names the checkpoint), from the registry."""
    from structbert_export.specs import spec_for
    from structbert_registry.families import FAMILIES

    return spec_for(FAMILIES[task].encoders[0]).triton_name


@dataclass
class BenchConfig:
    out: Path
    repository: Path | None = None
    size: str = "base"
    precision: str = "fp32"
    workloads: list[str] = field(default_factory=lambda: ["similarity", "zero_shot", "uie"])
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    duration_s: float = 10.0
    baseline_duration_s: float = 20.0
    data_dir: Path | None = None
    protocol: str = "grpc"
    encoder_instances: int = 1
    intra_op_threads: int = 0
    # cuda: TorchScript artifacts traced and validated on the GPU, baseline PyTorch eager FP16 on it
    device: str = "cpu"
    attention: str = "eager"
    # Python clients share a GIL: a GPU server needs several client processes to be saturated
    client_processes: int = 1
    # also measure every workload through the HTTP gateway (structbert_gateway), next to direct gRPC
    gateway: bool = False
    gateway_protocol: str = "http"  # how the gateway reaches Triton (its --triton-protocol)


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count()
    mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    gpu = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    summary = f"{cores} cores ({cpu}), {mem_gb} GiB RAM, " + (f"GPU {gpu}" if gpu else "no GPU")
    return {"cpu": cpu, "cores": cores, "memory_gib": mem_gb, "gpu": gpu or None, "summary": summary,
            "python": platform.python_version()}


def prepare_repository(cfg: BenchConfig) -> Path:
    """Export the workloads' tasks with synthetic checkpoints of ``cfg.size`` (reused if present)."""
    from structbert_export.repository import ServingOptions
    from structbert_export.tasks import ExportRequest, run_export

    gpu = cfg.device == "cuda"
    repo = cfg.out / (f"repo-{cfg.size}-{cfg.precision}" + ("-cuda" if gpu else ""))
    manifest = repo / "structbert_manifest.json"
    done = json.loads(manifest.read_text()) if manifest.is_file() else {}
    opts = ServingOptions(encoder_instances=cfg.encoder_instances, intra_op_threads=cfg.intra_op_threads,
                          device=cfg.device)
    for name in cfg.workloads:
        task = WORKLOADS[name].task
        if task in done and done[task].get("precision") == cfg.precision:
            continue
        log.info("exporting %s (synthetic %s, %s, %s) ...", task, cfg.size, cfg.precision, cfg.device)
        run_export(ExportRequest(task=task, out=repo, synthetic=cfg.size, precision=cfg.precision,
                                 format="torchscript" if gpu else "onnx", attention=cfg.attention), opts)
    return repo


SERVED_REPOSITORY = Path("model_repository")


def covers(repo: Path, workloads: list[str]) -> bool:
    """Does ``repo`` hold an export of every workload's task?"""
    manifest = repo / "structbert_manifest.json"
    if not manifest.is_file():
        return False
    done = json.loads(manifest.read_text())
    return all(WORKLOADS[name].task in done for name in workloads)


def repository_precision(repo: Path) -> str:
    manifest = repo / "structbert_manifest.json"
    done = json.loads(manifest.read_text()) if manifest.is_file() else {}
    return ",".join(sorted({v.get("precision", "?") for v in done.values()})) or "?"


def checkpoint_of(repo: Path, task: str) -> Path:
    meta = json.loads((repo / encoder_of_task(task) / "1" / "export.json").read_text())
    return Path(meta["source"])


def run_baseline(name: str, checkpoint: Path, cfg: BenchConfig, data_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "structbert_bench.baseline_run", "--workload", name, "--checkpoint",
           str(checkpoint), "--data-dir", str(data_dir), "--duration-s", str(cfg.baseline_duration_s),
           "--device", cfg.device]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with RssSampler(proc.pid) as rss:
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"baseline {name} failed:\n{err[-2000:]}")
    data = json.loads(out.strip().splitlines()[-1])
    stats = summarise(data["latencies_s"], 0, data["seconds"]).as_dict()
    stats["peak_rss_mb"] = rss.peak_mb
    stats["torch_threads"] = data["torch_threads"]
    stats["gpu_reserved_mib"] = data.get("gpu_reserved_mib")
    return stats


def _gateway(server, repo: Path, protocol: str):
    from structbert_gateway.process import GatewayProcess

    return GatewayProcess(server.grpc_url, repo, triton_http_url=server.http_url,
                          extra_args=["--triton-protocol", protocol])


def run_bench(cfg: BenchConfig) -> dict:
    from structbert_serving.embedded_server import EmbeddedServer

    cfg.out.mkdir(parents=True, exist_ok=True)
    data_dir = cfg.data_dir or default_data_dir()
    if cfg.repository is None and covers(SERVED_REPOSITORY, cfg.workloads):
        cfg.repository = SERVED_REPOSITORY  # what scripts/serve.sh / export filled: measure what is served
        log.info("measuring %s (pass --repository to choose another)", SERVED_REPOSITORY)
    repo = cfg.repository or prepare_repository(cfg)
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(["structbert-triton", *sys.argv[1:]]),
               "machine": machine_info(), "models": f"synthetic {cfg.size}" if cfg.repository is None else str(repo),
               "precision": repository_precision(repo) if cfg.repository else cfg.precision,
               "protocol": cfg.protocol, "duration_s": cfg.duration_s,
               "device": cfg.device, "client_processes": cfg.client_processes,
               "data_dir": str(data_dir), "workloads": {},
               # other work on the machine: 1-minute load averages at the start and the end of the run
               "load_average": [round(os.getloadavg()[0], 2)]}
    run_cpu = cpu_times()  # and the hypervisor's other guests (CPU steal over the run)

    for name in cfg.workloads:  # baselines first, alone on the machine
        w = WORKLOADS[name]
        log.info("baseline %s: PyTorch eager, one request at a time ...", name)
        results["workloads"][name] = {"unit": w.unit, "description": w.description, "model": w.model,
                                      "baseline": run_baseline(name, checkpoint_of(repo, w.task), cfg, data_dir),
                                      "server": []}

    with EmbeddedServer(repo) as server, contextlib.ExitStack() as stack:
        url = server.grpc_url if cfg.protocol == "grpc" else server.http_url
        gateway = stack.enter_context(_gateway(server, repo, cfg.gateway_protocol)) if cfg.gateway else None
        if gateway is not None:
            results["gateway"] = {"url": gateway.url, "triton_protocol": cfg.gateway_protocol}
        for name in cfg.workloads:
            items = payloads(name, data_dir, 4000, seed=1)
            warm = sdk_worker(url, cfg.protocol, name)()
            t0 = time.perf_counter()
            warm(items[0])  # the first request after ready: what warm-up at load time is for
            results["workloads"][name]["first_request_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            for p in items[1:8]:
                warm(p)
            if gateway is not None:
                warm_gateway = gateway_worker(gateway.url, name)()
                for p in items[1:8]:
                    warm_gateway(p)
            base = results["workloads"][name]["baseline"]
            for concurrency in cfg.concurrency:
                log.info("server %s at concurrency %d ...", name, concurrency)
                with RssSampler(server.process.pid) as rss, UtilizationSampler() as util, CpuSteal() as steal:
                    stats = closed_loop_processes(url, cfg.protocol, name, items, concurrency=concurrency,
                                                  processes=cfg.client_processes, duration_s=cfg.duration_s)
                row = {"concurrency": concurrency, **stats.as_dict(), "peak_rss_mb": rss.peak_mb,
                       "steal_pct": steal.pct,
                       "gpu_util_mean": util.mean, "gpu_util_peak": util.peak,
                       "throughput_ratio": round(stats.rps / base["rps"], 3) if base["rps"] else None,
                       "p50_ratio": round(stats.p50_ms / base["p50_ms"], 3) if base["p50_ms"] else None}
                results["workloads"][name]["server"].append(row)
                log.info("  %.2f %s/s, p50 %.1f ms, p99 %.1f ms, errors %d, x%.2f baseline%s", stats.rps,
                         WORKLOADS[name].unit, stats.p50_ms, stats.p99_ms, stats.errors, row["throughput_ratio"] or 0,
                         f", GPU {util.mean}% busy" if util.mean is not None else "")
                if gateway is not None:  # the same load through the gateway, right after: one run, one machine
                    log.info("gateway %s at concurrency %d ...", name, concurrency)
                    with RssSampler(gateway.process.pid) as grss, CpuSteal() as gsteal:
                        gstats = closed_loop(gateway_worker(gateway.url, name), items, concurrency=concurrency,
                                             duration_s=cfg.duration_s)
                    grow = {"concurrency": concurrency, **gstats.as_dict(), "peak_rss_mb": grss.peak_mb,
                            "steal_pct": gsteal.pct,
                            "throughput_vs_direct": round(gstats.rps / stats.rps, 3) if stats.rps else None,
                            "p50_delta_ms": round(gstats.p50_ms - stats.p50_ms, 2)}
                    results["workloads"][name].setdefault("gateway", []).append(grow)
                    log.info("  gateway: %.2f %s/s (x%.3f direct gRPC), p50 %.1f ms (%+.2f ms), errors %d", gstats.rps,
                             WORKLOADS[name].unit, grow["throughput_vs_direct"] or 0, gstats.p50_ms,
                             grow["p50_delta_ms"], gstats.errors)
        results["gpu_memory_mib"] = gpu_memory_by_process(set(process_tree(server.process.pid))) or None
    results["load_average"].append(round(os.getloadavg()[0], 2))
    results["cpu_steal_pct"] = steal_pct(run_cpu, cpu_times())
    files = report.write(results, cfg.out)
    log.info("wrote %s", ", ".join(str(f) for f in files))
    return results
