"""Memory of the served repository as a user runs it: ``structbert-triton serve`` (tritonserver, its
stubs, the gateway) measured as PSS of the whole tree, per model, idle, after warm-up, after a
varied-shape load on every public model (1-64 short texts, texts near the length limit), and over
a soak of the same load.

    python -m structbert_bench.memory_bench --repository model_repository --out build/memory --soak-minutes 10

Writes ``memory.json``, ``memory.md`` and ``memory.png`` (the soak's PSS over time).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from structbert_client import api

from .memory import tree_memory
from .workloads import CATEGORIES, NER_SCHEMA, corpus, default_data_dir

log = logging.getLogger("structbert_bench")

# (texts per request, long): long texts are ~480 characters (one token each: near the 512 limit)
SHAPES = ((1, False), (16, False), (64, False), (1, True), (4, True))
# the schema walk and the label fan-out multiply rows: fewer texts per request there
FEWER = {api.INFORMATION_EXTRACTION.name: 8, api.ZERO_SHOT_CLASSIFICATION.name: 16}


def long_texts(news: list[str], n: int, rng: random.Random, chars: int = 480) -> list[str]:
    out = []
    for _ in range(n):
        text = ""
        while len(text) < chars:
            text += rng.choice(news)
        out.append(text[:chars])
    return out


def calls(client, data_dir: Path, rng: random.Random) -> dict[str, Callable[[int, bool], object]]:
    """Per public model: ``call(n, long)`` sends one request of ``n`` texts through the SDK."""
    texts = corpus(data_dir)

    def pick(n: int, long: bool) -> list[str]:
        return long_texts(texts.news, n, rng) if long else [rng.choice(texts.reviews) for _ in range(n)]

    return {
        api.TEXT_EMBEDDING.name: lambda n, long: client.embed(pick(n, long)),
        api.SENTENCE_SIMILARITY.name: lambda n, long: client.similarity(pick(n, long), pick(n, long)),
        api.PAIR_CLASSIFICATION.name: lambda n, long: client.pair_classify(pick(n, long), pick(n, long)),
        api.TEXT_CLASSIFICATION.name: lambda n, long: client.text_classify(pick(n, long)),
        api.ZERO_SHOT_CLASSIFICATION.name: lambda n, long: client.classify(pick(n, long), CATEGORIES),
        api.RERANKING.name: lambda n, long: client.rerank(pick(1, False)[0], pick(n, long)),
        api.INFORMATION_EXTRACTION.name: lambda n, long: client.extract(pick(n, long), NER_SCHEMA),
    }


def served_models(grpc_url: str) -> list[str]:
    """The public models the server has loaded (a model without a call here fails loudly)."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(grpc_url) as triton:
        return [m for m in api.PUBLIC_MODELS if triton.is_model_ready(m)]


def varied_load(grpc_url: str, data_dir: Path, *, seed: int = 0, rounds: int = 1) -> dict:
    """Every shape of :data:`SHAPES` on every served public model, the models at once (one thread
    each); returns requests and errors per model."""
    from structbert_client import StructBertClient

    def one_model(model: str) -> tuple[str, int, int]:
        rng = random.Random(f"{seed}-{model}")
        with StructBertClient(grpc_url, timeout_s=600) as client:
            call = calls(client, data_dir, rng)[model]
            done = errors = 0
            for _ in range(rounds):
                for n, long in SHAPES:
                    try:
                        call(min(n, FEWER.get(model, n)), long)
                        done += 1
                    except Exception as exc:  # counted and reported: a memory run must not hide errors
                        log.warning("%s: %s", model, exc)
                        errors += 1
        return model, done, errors

    models = served_models(grpc_url)
    with ThreadPoolExecutor(len(models)) as pool:
        results = list(pool.map(one_model, models))
    return {m: {"requests": d, "errors": e} for m, d, e in results}


def settle(pid: int, seconds: float = 3.0) -> dict:
    time.sleep(seconds)
    return tree_memory(pid).as_dict()


def measure(pid: int, grpc_url: str, data_dir: Path, *, soak_s: float = 0.0, sample_s: float = 10.0) -> dict:
    """The memory figures of a running server tree rooted at ``pid``."""
    from structbert_client import StructBertClient

    out = {"idle": settle(pid, 5.0)}
    with StructBertClient(grpc_url, timeout_s=300) as client:
        for model in served_models(grpc_url):
            calls(client, data_dir, random.Random(0))[model](1, False)
    out["after_warmup"] = settle(pid)
    out["varied_load"] = varied_load(grpc_url, data_dir)
    out["after_varied"] = settle(pid)
    if soak_s > 0:
        series, stop = [], threading.Event()

        def sample():
            start = time.monotonic()
            while not stop.wait(sample_s):
                series.append((round(time.monotonic() - start, 1), tree_memory(pid).pss_mb))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        deadline, rounds, errors = time.monotonic() + soak_s, 0, 0
        while time.monotonic() < deadline:
            result = varied_load(grpc_url, data_dir, seed=rounds + 1)
            errors += sum(r["errors"] for r in result.values())
            rounds += 1
        stop.set()
        sampler.join()
        out["soak"] = {"seconds": soak_s, "rounds": rounds, "errors": errors, "pss_mb": series,
                       "max_pss_mb": max((mb for _, mb in series), default=None)}
        out["after_soak"] = settle(pid)
    idle = out["idle"]["pss_mb"]
    out["growth_pct"] = {k: round(100 * (out[k]["pss_mb"] / idle - 1), 1)
                         for k in ("after_warmup", "after_varied", "after_soak") if k in out}
    return out


def report_md(result: dict) -> str:
    phases = [k for k in ("idle", "after_warmup", "after_varied", "after_soak") if k in result]
    names = list(result["idle"]["by_model"])
    lines = [f"# Memory of the served repository (PSS, MiB)\n\n`{result.get('command', '')}`\n",
             "| model / process | " + " | ".join(phases) + " |", "|---|" + "---:|" * len(phases)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{result[p]['by_model'].get(name, 0):.0f}" for p in phases) + " |")
    lines.append("| **server tree** | " + " | ".join(f"**{result[p]['pss_mb']:.0f}**" for p in phases) + " |")
    lines.append(f"\nprocesses: {result['idle']['processes']}; growth over idle: {result['growth_pct']}")
    if "soak" in result:
        soak = result["soak"]
        lines.append(f"\nsoak: {soak['seconds']:.0f} s, {soak['rounds']} rounds of the varied load, "
                     f"{soak['errors']} errors, max PSS {soak['max_pss_mb']} MiB")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path | None:
    series = result.get("soak", {}).get("pss_mb")
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([t / 60 for t, _ in series], [mb for _, mb in series], marker=".")
    ax.axhline(result["idle"]["pss_mb"], ls="--", c="grey", label="idle")
    ax.axhline(result["idle"]["pss_mb"] * 1.1, ls=":", c="red", label="idle + 10 %")
    ax.set_xlabel("minutes of varied-shape load")
    ax.set_ylabel("PSS of the server tree (MiB)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def start_serve(repository: Path, log_path: Path, timeout_s: float = 900) -> tuple[subprocess.Popen, str]:
    """``structbert-triton serve`` (with its gateway) on free loopback ports; its gRPC address."""
    from structbert_serving.embedded_server import free_port

    grpc = free_port()
    cmd = [sys.executable, "-m", "structbert_triton", "serve", "--model-repository", str(repository),
           "--http-port", str(free_port()), "--grpc-port", str(grpc), "--metrics-port", str(free_port()),
           "--gateway-port", str(free_port())]
    handle = open(log_path, "w")  # noqa: SIM115 - the child writes it for its whole life
    serve = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            raise RuntimeError(f"serve exited with {serve.returncode}:\n{log_path.read_text()[-3000:]}")
        if "gateway ready" in log_path.read_text():
            return serve, f"127.0.0.1:{grpc}"
        time.sleep(1)
    serve.kill()
    raise RuntimeError(f"serve not ready after {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--out", type=Path, default=Path("build/memory"))
    p.add_argument("--soak-minutes", type=float, default=0.0)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--attach", type=int, default=None, metavar="PID",
                   help="measure a running server tree instead (with --grpc-url)")
    p.add_argument("--grpc-url", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir or default_data_dir()
    serve = None
    if args.attach:
        pid, grpc_url = args.attach, args.grpc_url
    else:
        serve, grpc_url = start_serve(args.repository, args.out / "serve.log")
        pid = serve.pid
    try:
        result = {"command": " ".join(["python -m structbert_bench.memory_bench", *(argv or sys.argv[1:])]),
                  "date": time.strftime("%Y-%m-%d %H:%M:%S"), "repository": str(args.repository),
                  **measure(pid, grpc_url, data_dir, soak_s=args.soak_minutes * 60)}
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=60)
    (args.out / "memory.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    (args.out / "memory.md").write_text(report_md(result))
    plot(result, args.out / "memory.png")
    print(report_md(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
