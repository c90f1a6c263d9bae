"""GPU tier (``pytest -m gpu``): every family exported for the GPU (TorchScript FP16, traced and
validated on it), served by the real embedded tritonserver on the GPU, answers checked against the
FP32 PyTorch reference, a short load without errors, warm at the first request. Skipped, with the
reason, on machines without a GPU (CI): take the project to a GPU host with
``../shared/tools/pack-gpu-bundle.sh`` (see README, "On a GPU host").
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from structbert_bench.measure import closed_loop_processes
from structbert_bench.workloads import CATEGORIES, NER_SCHEMA, default_data_dir, payloads
from structbert_serving.embedded_server import EmbeddedServer
from tests.conftest import export_repo, jsonl, make_client, sample_texts
from tests.reference import (
    SiameseUieReference,
    load_classifier,
    load_reference,
    mean_pooled,
    np_softmax,
    pair_logits,
    zero_shot_reference,
)

pytestmark = [pytest.mark.gpu, pytest.mark.e2e,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")]


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory, tiny_checkpoint, nli_checkpoint, pair_checkpoint, uie_checkpoint):
    out = tmp_path_factory.mktemp("gpu-repo")
    for task, checkpoint in (("embedding", tiny_checkpoint), ("zero-shot", nli_checkpoint),
                             ("pair-classification", pair_checkpoint), ("uie", uie_checkpoint)):
        export_repo(out, task=task, model_dir=checkpoint, format="torchscript", precision="fp16",
                    opts={"device": "cuda"})
    for encoder in ("embedding_encoder", "zero_shot_classifier", "pair_classifier", "uie_encoder", "uie_cross"):
        meta = json.loads((out / encoder / "1" / "export.json").read_text())
        report = json.loads((out / encoder / "1" / "validation.json").read_text())
        assert meta["device"] == "cuda" and report["runtime_device"] == "cuda" and report["passed"], encoder
    with EmbeddedServer(out) as server:
        yield server


def test_first_requests_are_warm(gpu_server):
    """Encoders warm up at load: the first request after ready pays no lazy initialisation."""
    client = make_client(gpu_server, "grpc")
    text = sample_texts(1)[0]
    firsts = {}
    for name, call in (("embed", lambda: client.embed(text)), ("similarity", lambda: client.similarity(text, text)),
                       ("pair", lambda: client.pair_classify(text, text)),
                       ("classify", lambda: client.classify(text, CATEGORIES)),
                       ("extract", lambda: client.extract(text, NER_SCHEMA))):
        t0 = time.perf_counter()
        call()
        firsts[name] = (time.perf_counter() - t0) * 1000
    print(f"\nfirst request after ready (ms): { {k: round(v, 1) for k, v in firsts.items()} }")
    assert max(firsts.values()) <= 100, firsts
    assert "warmed up" in gpu_server.log_text()


def test_answers_match_the_fp32_reference(gpu_server, tiny_checkpoint, nli_checkpoint, pair_checkpoint,
                                          uie_checkpoint):
    texts = sample_texts(12, max_chars=400)
    for protocol in ("grpc", "http"):
        client = make_client(gpu_server, protocol)
        model, tok = load_reference(tiny_checkpoint)
        want = mean_pooled(model, tok, texts, 512)
        got = client.embed(texts)
        cosines = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
        assert cosines.min() >= 0.999, cosines.min()

        model, tok = load_classifier(pair_checkpoint)
        probs = np_softmax(pair_logits(model, tok, list(zip(texts[:6], texts[6:])), truncation="longest_first"))
        got = client.pair_classify(texts[:6], texts[6:])
        assert np.abs(np.array([[g["0"], g["1"]] for g in got]) - probs).max() < 2e-2

        model, tok = load_classifier(nli_checkpoint)
        for text, result in zip(texts[:4], client.classify(texts[:4], CATEGORIES)):
            want = zero_shot_reference(model, tok, text, CATEGORIES, multi_label=False)
            order = {label: s for label, s in zip(want["labels"], want["scores"])}
            assert max(abs(order[label] - s) for label, s in zip(result["labels"], result["scores"])) < 2e-2

    reference = SiameseUieReference(uie_checkpoint)
    news = jsonl("msra_ner.jsonl")[:200]
    got = make_client(gpu_server, "grpc", batch_size=50).extract(news, NER_SCHEMA)
    agree = np.mean([g == reference.extract(t, NER_SCHEMA) for g, t in zip(got, news)])
    print(f"\nUIE FP16 on the GPU vs FP32 PyTorch: identical paths for {agree:.1%} of 200 texts")
    assert agree >= 0.95


@pytest.mark.parametrize("workload", ["similarity", "zero_shot", "uie"])
def test_short_load_has_no_errors(gpu_server, workload):
    items = payloads(workload, default_data_dir(), 500, seed=4)
    stats = closed_loop_processes(gpu_server.grpc_url, "grpc", workload, items, concurrency=32, processes=4,
                                  duration_s=5)
    print(f"\n{workload} on the GPU (tiny, 32 clients in 4 processes): {stats.rps:.0f}/s, p99 {stats.p99_ms:.1f} ms")
    assert stats.errors == 0, stats.error_sample
    assert stats.requests > 0
