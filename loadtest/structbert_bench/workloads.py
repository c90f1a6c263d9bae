"""What each benchmarked pipeline sends (real Chinese text) and what its baseline runs."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from structbert_client import api

CATEGORIES = ["书籍", "平板", "手机", "水果", "洗发水", "热水器", "蒙牛", "衣服", "计算机", "酒店"]
NER_SCHEMA = {"人物": None, "地理位置": None, "组织机构": None}


@dataclass(frozen=True)
class Workload:
    name: str
    task: str  # export task
    model: str  # public Triton model
    unit: str  # what one request carries
    description: str


WORKLOADS = {w.name: w for w in (
    Workload("embedding", "embedding", api.TEXT_EMBEDDING.name, "texts",
             "L2-normalised mean-pooled embedding of one shopping review (text_embedding)"),
    Workload("similarity", "embedding", api.SENTENCE_SIMILARITY.name, "pairs",
             "bi-encoder cosine of two shopping reviews (sentence_similarity)"),
    Workload("zero_shot", "zero-shot", api.ZERO_SHOT_CLASSIFICATION.name, "texts",
             "one shopping review against the 10 category labels"),
    Workload("uie", "uie", api.INFORMATION_EXTRACTION.name, "extractions",
             "one MSRA news sentence, schema {人物, 地理位置, 组织机构}"),
    Workload("pair", "pair-classification", api.PAIR_CLASSIFICATION.name, "pairs",
             "cross-encoder P(similar) of two shopping reviews"),
)}


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


def payloads(name: str, data_dir: Path, n: int, seed: int = 0) -> list[tuple]:
    """n request payloads, sampled with a fixed seed so server and baseline see the same texts."""
    rng = random.Random(seed)
    if name == "uie":
        texts = _texts(data_dir / "msra_ner.jsonl")
        return [(rng.choice(texts),) for _ in range(n)]
    reviews = _texts(data_dir / "shopping_reviews.jsonl")
    if name in ("zero_shot", "embedding"):
        return [(rng.choice(reviews),) for _ in range(n)]
    return [(rng.choice(reviews), rng.choice(reviews)) for _ in range(n)]


def client_call(name: str, client) -> Callable[[tuple], object]:
    """The SDK call a user makes for one request of the workload."""
    if name == "embedding":
        return lambda p: client.embed(p[0])
    if name == "similarity":
        return lambda p: client.similarity(p[0], p[1])
    if name == "pair":
        return lambda p: client.pair_classify(p[0], p[1])
    if name == "zero_shot":
        return lambda p: client.classify(p[0], CATEGORIES)
    if name == "uie":
        return lambda p: client.extract(p[0], NER_SCHEMA)
    raise ValueError(name)


class Sampler:
    """Raw request inputs (``{input name: [strings]}``, one row) for every public model, drawn from
    the real texts: what locust and perf_analyzer send."""

    def __init__(self, seed: int | None = None, data_dir: Path | None = None):
        folder = data_dir or default_data_dir()
        self.rng = random.Random(seed)
        self.reviews = _texts(folder / "shopping_reviews.jsonl")
        self.news = _texts(folder / "msra_ner.jsonl")

    def inputs(self, model: str) -> dict[str, list[str]]:
        r = self.rng
        if model == api.TEXT_EMBEDDING.name:
            return {"TEXT": [r.choice(self.reviews)]}
        if model in (api.SENTENCE_SIMILARITY.name, api.PAIR_CLASSIFICATION.name):
            return {"TEXT_A": [r.choice(self.reviews)], "TEXT_B": [r.choice(self.reviews)]}
        if model == api.ZERO_SHOT_CLASSIFICATION.name:
            return {"TEXT": [r.choice(self.reviews)], "LABELS": [json.dumps(CATEGORIES, ensure_ascii=False)]}
        if model == api.INFORMATION_EXTRACTION.name:
            return {"TEXT": [r.choice(self.news)], "SCHEMA": [json.dumps(NER_SCHEMA, ensure_ascii=False)]}
        raise ValueError(f"unknown model {model!r}; public models: {', '.join(api.PUBLIC_MODELS)}")


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

    from . import baseline

    if name in ("embedding", "similarity"):
        model, tok = baseline.load_reference(checkpoint, device)
        call = (lambda p: baseline.mean_pooled(model, tok, [p[0]], 512)) if name == "embedding" \
            else (lambda p: baseline.cosine_pair(model, tok, p[0], p[1]))
    elif name == "pair":
        model, tok = baseline.load_classifier(checkpoint, device)
        call = lambda p: baseline.np_softmax(baseline.pair_logits(model, tok, [p], truncation="longest_first"))  # noqa: E731
    elif name == "zero_shot":
        model, tok = baseline.load_classifier(checkpoint, device)
        call = lambda p: baseline.zero_shot_batched(model, tok, p[0], CATEGORIES)  # noqa: E731
    elif name == "uie":
        uie = baseline.SiameseUieReference(checkpoint, device)
        call = lambda p: uie.extract(p[0], NER_SCHEMA)  # noqa: E731
    else:
        raise ValueError(name)
    if device == "cpu":
        return call

    def on_gpu(p: tuple) -> object:
        with torch.autocast("cuda", dtype=torch.float16) if device == "cuda" else contextlib.nullcontext():
            return call(p)
    return on_gpu
