"""What each benchmarked pipeline sends (real Chinese text) and what its baseline runs."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

from structbert_client import api
from structbert_registry.families import CATEGORIES, NER_SCHEMA, WORKLOADS, Corpus, Workload, family_of_model

__all__ = ["CATEGORIES", "NER_SCHEMA", "WORKLOADS", "Sampler", "Workload", "baseline_call", "client_call", "payloads"]


def default_data_dir() -> Path:
    """``$STRUCTBERT_DATA_DIR``, else the workplace's ``../shared/data``, else the samples in ``tests/data``."""
    here = Path(__file__).resolve()
    env = os.environ.get("STRUCTBERT_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates += [here.parents[3] / "shared" / "data", here.parents[2] / "tests" / "data"]
    for candidate in candidates:
        if (candidate / "msra_ner.jsonl").is_file():
            return candidate
    raise FileNotFoundError("no data directory with msra_ner.jsonl found; pass --data-dir or set STRUCTBERT_DATA_DIR")


def _texts(path: Path) -> list[str]:
    if not path.is_file():  # tests/data holds samples: shopping_reviews_sample.jsonl
        path = next(path.parent.glob(path.stem + "*.jsonl"))
    return [t for t in (json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip())
            if t.strip()]


def corpus(data_dir: Path) -> Corpus:
    return Corpus(reviews=_texts(data_dir / "shopping_reviews.jsonl"), news=_texts(data_dir / "msra_ner.jsonl"))


def payloads(name: str, data_dir: Path, n: int, seed: int = 0) -> list[tuple]:
    """n request payloads, sampled with a fixed seed so server and baseline see the same texts."""
    rng = random.Random(seed)
    texts = corpus(data_dir)
    return [WORKLOADS[name].draw(texts, rng) for _ in range(n)]


def client_call(name: str, client) -> Callable[[tuple], object]:
    """The SDK call a user makes for one request of the workload."""
    call = WORKLOADS[name].call
    return lambda p: call(client, p)


class Sampler:
    """Raw request inputs (``{input name: [strings]}``, one row) for every public model, drawn from
    the real texts: what locust and perf_analyzer send (the model's first workload in the registry)."""

    def __init__(self, seed: int | None = None, data_dir: Path | None = None):
        self.rng = random.Random(seed)
        self.texts = corpus(data_dir or default_data_dir())

    def inputs(self, model: str) -> dict[str, list[str]]:
        workload = next((w for w in family_of_model(model).workloads if w.model == model), None)
        if workload is None:
            raise ValueError(f"no workload for the public model {model!r}; public models: {', '.join(api.PUBLIC_MODELS)}")
        return workload.wire(workload.draw(self.texts, self.rng))


def sdk_worker(url: str, protocol: str, workload: str, timeout_s: float = 120.0
               ) -> Callable[[], Callable[[tuple], object]]:
    """A factory of the workload's SDK call, one client each, without retries (load runs count
    errors and refusals themselves)."""
    def make() -> Callable[[tuple], object]:
        from structbert_client import StructBertClient

        return client_call(workload, StructBertClient(url, protocol=protocol, retries=0, timeout_s=timeout_s))
    return make


def baseline_call(name: str, checkpoint: Path, device: str = "cpu") -> Callable[[tuple], object]:
    """The PyTorch eager code path, loaded once, called one request at a time (on ``cuda``: FP16
    autocast, what ModelScope users run on a GPU)."""
    import contextlib

    import torch

    call = WORKLOADS[name].baseline(checkpoint, device)
    if device == "cpu":
        return call

    def on_gpu(p: tuple) -> object:
        with torch.autocast("cuda", dtype=torch.float16) if device == "cuda" else contextlib.nullcontext():
            return call(p)
    return on_gpu
