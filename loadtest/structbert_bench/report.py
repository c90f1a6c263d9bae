"""Write a benchmark run as JSON, a Markdown table and PNG plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("structbert_bench")
ROUTE_OF = {"embedding": "POST /v1/embeddings", "similarity": "POST /similarity", "pair": "POST /predict",
            "zero_shot": "POST /v1/classify", "uie": "POST /v1/extract"}


def markdown(results: dict) -> str:
    lines = [f"# Benchmark: {results['date']}", "",
             f"- command: `{results['command']}`",
             f"- machine: {results['machine']['summary']}"
             + (f"; 1-minute load average {results['load_average'][0]} at the start, {results['load_average'][-1]} "
                "at the end (other work on the machine)" if results.get("load_average") else "")
             + (f"; CPU steal {results['cpu_steal_pct']} % over the run (time the hypervisor gave to other guests)"
                if results.get("cpu_steal_pct") is not None else ""),
             f"- models: {results['models']}; server precision: {results['precision']}; "
             f"client protocol: {results['protocol']}; {results['duration_s']} s per concurrency level", ""]
    gpu = results.get("device") == "cuda"
    if results.get("client_processes", 1) > 1:
        lines.insert(-1, f"- clients spread over {results['client_processes']} processes")
    for name, data in results["workloads"].items():
        base = data["baseline"]
        unit = data["unit"]
        gpu_col = " GPU busy % |" if gpu else ""
        lines += [f"## {name}: {data['description']}", "",
                  f"| run | concurrency | {unit}/s | p50 ms | p95 ms | p99 ms | errors | peak RSS MB |{gpu_col} "
                  f"× baseline {unit}/s | p50 / baseline p50 |",
                  "|---|---|---|---|---|---|---|---|" + ("---|" if gpu else "") + "---|---|",
                  f"| baseline (PyTorch eager{' FP16' if gpu else ''}, one at a time) | 1 | {base['rps']:.2f} | "
                  f"{base['p50_ms']:.1f} | {base['p95_ms']:.1f} | {base['p99_ms']:.1f} | {base['errors']} | "
                  f"{base['peak_rss_mb']:.0f} |" + (" – |" if gpu else "") + " 1.00 | 1.00 |"]
        for row in data["server"]:
            busy = f" {row.get('gpu_util_mean')} |" if gpu else ""
            lines.append(
                f"| server | {row['concurrency']} | {row['rps']:.2f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
                f"{row['p99_ms']:.1f} | {row['errors']} | {row['peak_rss_mb']:.0f} |{busy} {row['throughput_ratio']:.2f} | "
                f"{row['p50_ratio']:.2f} |")
        if data.get("gateway"):
            via = results.get("gateway", {}).get("triton_protocol", "http")
            lines += ["", f"Through the HTTP gateway ({ROUTE_OF.get(name, '')}, plain HTTP clients; gateway to Triton "
                          f"over {via}), measured right after each direct gRPC level above:", "",
                      f"| run | concurrency | {unit}/s | p50 ms | p95 ms | p99 ms | errors | gateway peak RSS MB | "
                      "× direct gRPC throughput | p50 − direct p50 (ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
            for row in data["gateway"]:
                lines.append(
                    f"| gateway | {row['concurrency']} | {row['rps']:.2f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
                    f"{row['p99_ms']:.1f} | {row['errors']} | {row['peak_rss_mb']:.0f} | {row['throughput_vs_direct']:.3f} | "
                    f"{row['p50_delta_ms']:+.2f} |")
        lines += ["", f"First request after the server was ready: {data.get('first_request_ms')} ms."]
        if gpu and base.get("gpu_reserved_mib"):
            lines.append(f"Baseline GPU memory reserved by PyTorch: {base['gpu_reserved_mib']:.0f} MiB.")
        lines.append("")
    if results.get("gpu_memory_mib"):
        lines += ["## GPU memory per server process (MiB, nvidia-smi)", "", "| process | MiB |", "|---|---|"]
        lines += [f"| {proc} | {mib:.0f} |" for proc, mib in sorted(results["gpu_memory_mib"].items())]
        lines.append("")
    return "\n".join(lines)


def plots(results: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["workloads"])
    written = []
    for metric, label, fname in (("rps", "items / s", "throughput.png"), ("p99_ms", "p99 latency (ms)", "p99.png")):
        fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
        for ax, name in zip(axes[0], names):
            data = results["workloads"][name]
            xs = [r["concurrency"] for r in data["server"]]
            ax.plot(xs, [r[metric] for r in data["server"]], "o-", label="structbert-triton")
            ax.axhline(data["baseline"][metric], color="tab:red", linestyle="--", label="PyTorch eager baseline")
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel("client concurrency")
            ax.set_ylabel(label.replace("items", data["unit"]))
            ax.set_title(name)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"{results['machine']['summary']} — {results['models']}, {results['precision']}", fontsize=9)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(results: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (out_dir / "results.md").write_text(markdown(results))
    try:
        pngs = plots(results, out_dir)
    except ImportError:  # a GPU host may lack matplotlib: the numbers are in the JSON and Markdown
        log.warning("matplotlib is not installed: no plots")
        pngs = []
    return [out_dir / "results.json", out_dir / "results.md", *pngs]
