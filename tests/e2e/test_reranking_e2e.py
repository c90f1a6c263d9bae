"""End to end: the reranking model (a Hugging Face one-logit cross-encoder, tiny random weights) over
gRPC and HTTP against the real server, scores against PyTorch at FP32 1e-5, bad input, batch
independence; and the gateway's TEI /rerank and Cohere /v1/rerank on top of it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from structbert_client import InvalidInputError
from tests.conftest import make_client, sample_texts
from tests.reference import load_classifier, rerank_reference

pytestmark = pytest.mark.e2e

QUERY = "这家酒店的服务怎么样"


@pytest.fixture(scope="module")
def reference(rerank_checkpoint):
    return load_classifier(rerank_checkpoint)


@pytest.fixture(scope="module")
def passages() -> list[str]:
    texts = sample_texts(12)
    return [*texts[:10], sample_texts()[-1]]  # the last one is far over 512 tokens: cut, the query kept


def test_rerank_matches_pytorch_and_sorts(tiny_client, reference, passages):
    want = rerank_reference(*reference, QUERY, passages)
    assert want.max() - want.min() > 1e-3  # random weights: close scores, but not one value
    got = tiny_client.rerank(QUERY, passages, return_passages=True)
    assert sorted(r["index"] for r in got) == list(range(len(passages)))
    assert [r["score"] for r in got] == sorted((r["score"] for r in got), reverse=True)
    assert max(abs(r["score"] - want[r["index"]]) for r in got) < 1e-5
    assert all(r["passage"] == passages[r["index"]] for r in got)
    top = tiny_client.rerank(QUERY, passages, top_n=3)
    assert [r["index"] for r in top] == [r["index"] for r in got[:3]] and "passage" not in top[0]
    many = tiny_client.rerank([QUERY, "手机"], passages[:4], top_n=10)  # top_n beyond N: all of them
    assert len(many) == 2 and [len(r) for r in many] == [4, 4]


def test_a_passages_score_does_not_depend_on_the_others(tiny_server, protocol, passages):
    """Concurrent requests with different passage counts share dynamic batches (PASSAGES is ragged)
    and one encoder pass; each passage's score is the one it gets alone."""
    client = make_client(tiny_server, protocol)
    alone = [client.rerank(QUERY, [p])[0]["score"] for p in passages[:6]]

    def one(n):
        c = make_client(tiny_server, protocol)
        try:
            return c.rerank(QUERY, passages[:n])
        finally:
            c.close()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(1, 7)))
    for result in results:
        for r in result:
            assert r["score"] == pytest.approx(alone[r["index"]], abs=1e-6)


@pytest.mark.parametrize("query,passages,top_n,match", [
    ("", ["好"], None, r"QUERY\[0\] is empty"),
    ("酒店", ["好", "  "], None, r"PASSAGES\[1\] is empty"),
    ("酒店", ["好"] * 257, None, "at most 256"),
    ("酒店", ["好"], 0, "top_n must be a positive"),
])
def test_bad_rerank_requests_are_invalid_arguments(tiny_client, query, passages, top_n, match):
    with pytest.raises(InvalidInputError, match=match):
        tiny_client.rerank(query, passages, top_n=top_n)


def test_server_refuses_a_bad_top_n_and_other_requests_still_succeed(tiny_server, protocol, reference, passages):
    """TOP_N < 1 straight to the server (past the SDK's own check) is INVALID_ARG for that request only."""
    import tritonclient.grpc as grpc_client
    import tritonclient.http as http_client
    from tritonclient.utils import InferenceServerException

    from structbert_client import api

    module = grpc_client if protocol == "grpc" else http_client
    url = tiny_server.grpc_url if protocol == "grpc" else tiny_server.http_url
    inputs = []
    for name, array, dtype in ((api.QUERY, np.array([[QUERY.encode()]], dtype=object), "BYTES"),
                               (api.PASSAGES, np.array([[p.encode() for p in passages[:3]]], dtype=object), "BYTES"),
                               (api.TOP_N, np.array([[0]], dtype=np.int32), "INT32")):
        tensor = module.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    want = rerank_reference(*reference, QUERY, passages[:3])

    def send(i):  # one client per call: tritonclient's HTTP client is not thread-safe
        if i % 2:
            raw = module.InferenceServerClient(url)
            try:
                with pytest.raises(InferenceServerException, match="TOP_N is 0") as refused:
                    raw.infer(api.RERANKING.name, inputs)
                assert str(refused.value.status()) in ("StatusCode.INVALID_ARGUMENT", "400")
            finally:
                raw.close()
            return None
        client = make_client(tiny_server, protocol)
        try:
            return client.rerank(QUERY, passages[:3])
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(8)))
    for result in results[::2]:
        assert max(abs(r["score"] - want[r["index"]]) for r in result) < 1e-5


def test_gateway_rerank_routes_use_the_reranking_model(tiny_gateway, reference, passages):
    want = rerank_reference(*reference, QUERY, passages[:5])
    tei = httpx.post(f"{tiny_gateway.url}/rerank", json={"query": QUERY, "texts": passages[:5], "return_text": True},
                     timeout=60)
    assert tei.status_code == 200, tei.text
    order = [r["index"] for r in tei.json()]
    assert sorted(order) == list(range(5)) and [r["score"] for r in tei.json()] == sorted(
        (r["score"] for r in tei.json()), reverse=True)
    assert max(abs(r["score"] - want[r["index"]]) for r in tei.json()) < 1e-5
    assert tei.json()[0]["text"] == passages[order[0]]
    raw = httpx.post(f"{tiny_gateway.url}/rerank", json={"query": QUERY, "texts": passages[:5], "raw_scores": True},
                     timeout=60).json()
    logits = np.log(want / (1 - want))
    assert max(abs(r["score"] - logits[r["index"]]) for r in raw) < 1e-4
    cohere = httpx.post(f"{tiny_gateway.url}/v1/rerank", json={"query": QUERY, "documents": passages[:5], "top_n": 2,
                                                               "return_documents": True}, timeout=60)
    assert cohere.status_code == 200, cohere.text
    results = cohere.json()["results"]
    assert [r["index"] for r in results] == order[:2]
    assert results[0]["document"] == {"text": passages[order[0]]}
    bad = httpx.post(f"{tiny_gateway.url}/v1/rerank", json={"query": QUERY, "documents": ["好", " "]}, timeout=60)
    assert bad.status_code == 400 and "documents[1]" in bad.json()["error"]["message"], bad.text
