"""End to end: the HTTP gateway (real uvicorn process) in front of the real embedded tritonserver,
driven by real clients: the official ``openai`` package, TEI's documented request bodies, and plain
HTTP; answers compared with the SDK's over gRPC."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.conftest import sample_texts

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def http(tiny_gateway):
    with httpx.Client(base_url=tiny_gateway.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def openai_client(tiny_gateway):
    import openai

    return openai.OpenAI(base_url=f"{tiny_gateway.url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("encoding_format", [None, "float"])
def test_openai_embeddings_equal_the_sdk(openai_client, sdk, encoding_format):
    """Unasked, the openai package requests base64 and decodes it itself; "float" is JSON numbers."""
    texts = sample_texts(5)
    kwargs = {"encoding_format": encoding_format} if encoding_format else {}
    one = openai_client.embeddings.create(model="text_embedding", input=texts[0], **kwargs)
    assert len(one.data) == 1 and one.model == "text_embedding"
    np.testing.assert_array_equal(np.asarray(one.data[0].embedding, dtype=np.float32), sdk.embed(texts[0]))
    many = openai_client.embeddings.create(model="text_embedding", input=texts, **kwargs)
    got = np.asarray([d.embedding for d in many.data], dtype=np.float32)
    assert [d.index for d in many.data] == list(range(len(texts)))
    np.testing.assert_array_equal(got, sdk.embed(texts))


def test_openai_base64_embeddings(openai_client, sdk):
    """Asked for explicitly, base64 comes back as the string (little-endian float32 bytes)."""
    texts = sample_texts(3)
    packed = openai_client.embeddings.create(model="text_embedding", input=texts, encoding_format="base64")
    got = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in packed.data])
    np.testing.assert_array_equal(got, sdk.embed(texts))
    assert packed.usage.prompt_tokens > 0


def test_embeddings_usage_counts_the_servers_tokens(http, tiny_checkpoint):
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(str(tiny_checkpoint))
    texts = [sample_texts(1)[0], sample_texts()[-1]]  # the second is over 512 tokens: truncated
    body = http.post("/v1/embeddings", json={"input": texts, "model": "text_embedding"}).json()
    want = sum(len(tok(t, truncation=True, max_length=512)["input_ids"]) for t in texts)
    assert body["usage"] == {"prompt_tokens": want, "total_tokens": want}


def test_base64_is_little_endian_float32(http, sdk):
    body = http.post("/v1/embeddings", json={"input": "今天天气很好", "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vector, sdk.embed("今天天气很好"))


# --- text-embeddings-inference's documented bodies ------------------------------------------------

def test_tei_embed(http, sdk):
    one = http.post("/embed", json={"inputs": "What is Deep Learning?"})
    assert one.status_code == 200
    np.testing.assert_array_equal(np.asarray(one.json(), dtype=np.float32), sdk.embed(["What is Deep Learning?"]))
    texts = sample_texts(3)
    many = http.post("/embed", json={"inputs": texts, "normalize": True, "truncate": True}).json()
    np.testing.assert_array_equal(np.asarray(many, dtype=np.float32), sdk.embed(texts))


def test_tei_embed_refusals(http):
    long_text = sample_texts()[-1]  # over 512 tokens
    for body, status, word in [
        ({"inputs": "abc", "normalize": False}, 422, "normalize"),
        ({"inputs": long_text, "truncate": False}, 413, "must have less than 512 tokens"),
        ({"inputs": [1, 2, 3]}, 422, "token-id"),
        ({"inputs": ""}, 422, "empty"),
        ({"inputs": "abc", "truncation_direction": "left"}, 422, "left"),
    ]:
        response = http.post("/embed", json=body)
        assert response.status_code == status, (body, response.text)
        error = response.json()
        assert set(error) == {"error", "error_type"} and word in error["error"], error


def test_tei_rerank(http, sdk):
    query, texts = "今天天气很好", ["今天天气不错", "酒店服务很周到", "今天天气很好"]
    ranks = http.post("/rerank", json={"query": query, "texts": texts}).json()
    want = {r["index"]: r["score"] for r in sdk.rerank(query, texts)}  # the reranking model
    assert sorted(r["index"] for r in ranks) == [0, 1, 2]
    assert [r["score"] for r in ranks] == sorted(want.values(), reverse=True)
    for r in ranks:
        assert r["score"] == pytest.approx(want[r["index"]], abs=1e-7) and "text" not in r
    raw = http.post("/rerank", json={"query": query, "texts": texts, "raw_scores": True, "return_text": True}).json()
    for r in raw:
        assert r["text"] == texts[r["index"]]
        assert 1 / (1 + np.exp(-r["score"])) == pytest.approx(want[r["index"]], abs=1e-6)  # sigmoid(raw) = score


def test_tei_similarity_and_predict(http, sdk):
    source, sentences = "今天天气很好", ["今天天气不错", "酒店服务很周到"]
    got = http.post("/similarity", json={"inputs": {"source_sentence": source, "sentences": sentences}}).json()
    assert got == pytest.approx(sdk.similarity([source] * 2, sentences), abs=1e-7)
    single = http.post("/predict", json={"inputs": [source, sentences[0]]}).json()
    want = sdk.pair_classify(source, sentences[0])
    assert {p["label"]: p["score"] for p in single} == pytest.approx(want, abs=1e-7)
    assert [p["score"] for p in single] == sorted(want.values(), reverse=True)
    batch = http.post("/predict", json={"inputs": [[source, s] for s in sentences]}).json()
    assert len(batch) == 2 and all(len(row) == len(want) for row in batch)
    refused = http.post("/predict", json={"inputs": [source, sentences[0]], "raw_scores": True})
    assert refused.status_code == 422 and "raw_scores" in refused.json()["error"]


def test_tei_info_and_health(http, tiny_gateway):
    assert http.get("/health").status_code == 200
    info = http.get("/info").json()
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 512 and info["model_dtype"] == "float32"
    assert info["max_client_batch_size"] == 64
    assert set(info["served_models"]) == {"text_embedding", "sentence_similarity", "pair_classification",
                                          "zero_shot_classification", "information_extraction", "reranking",
                                          "text_classification"}


# --- Cohere/Jina rerank, and this project's own routes --------------------------------------------

def test_cohere_rerank(http, sdk):
    query, docs = "今天天气很好", ["今天天气不错", {"text": "酒店服务很周到"}, "房间很干净"]
    body = http.post("/v1/rerank", json={"model": "reranking", "query": query, "documents": docs,
                                         "top_n": 2, "return_documents": True}).json()
    texts = [d if isinstance(d, str) else d["text"] for d in docs]
    want = {r["index"]: r["score"] for r in sdk.rerank(query, texts)}
    assert len(body["results"]) == 2 and body["usage"]["total_tokens"] > 0
    best = sorted(range(3), key=lambda i: -want[i])[:2]
    assert [r["index"] for r in body["results"]] == best
    for r in body["results"]:
        assert r["relevance_score"] == pytest.approx(want[r["index"]], abs=1e-7)
        assert r["document"] == {"text": texts[r["index"]]}


def test_classify_and_extract_equal_the_sdk(http, sdk):
    texts = sample_texts(2)
    labels = ["手机", "水果", "书籍"]
    got = http.post("/v1/classify", json={"texts": texts, "labels": labels, "multi_label": True,
                                          "hypothesis_template": "这篇文章的标题是{}"}).json()
    want = sdk.classify(texts, labels, multi_label=True, hypothesis_template="这篇文章的标题是{}")
    assert [{"labels": d["labels"], "scores": d["scores"]} for d in got["data"]] == want
    text = "1944年毕业于北大的名古屋铁道会长谷口清太郎等人在日本积极筹资。"
    schema = {"人物": {"任职": None}, "组织机构": None}
    got = http.post("/v1/extract", json={"texts": text, "schema": schema}).json()
    assert got["data"][0]["paths"] == sdk.extract(text, schema)


# --- errors: one place, OpenAI's body on /v1, TEI's on TEI's routes ------------------------------

@pytest.mark.parametrize("path,body,status,words", [
    ("/v1/embeddings", {"input": ""}, 400, ["input[0]", "empty"]),
    ("/v1/embeddings", {"input": ["好", "  "]}, 400, ["input[1]", "whitespace"]),
    ("/v1/embeddings", {"input": "a", "dimensions": 8}, 400, ["dimensions"]),
    ("/v1/embeddings", {"input": [[101, 102]]}, 400, ["token-id"]),
    ("/v1/embeddings", {"input": "a", "model": "text-embedding-3-small"}, 404, ["text-embedding-3-small"]),
    ("/v1/embeddings", {"input": ["a"] * 65}, 413, ["at most 64"]),
    ("/v1/embeddings", {"inputs": "a"}, 400, ["input"]),
    ("/v1/classify", {"texts": "手机很好", "labels": []}, 400, ["labels"]),
    ("/v1/classify", {"texts": "手机很好", "labels": ["a"], "hypothesis_template": "没有占位符"}, 400, ["placeholder"]),
    ("/v1/extract", {"texts": "文本", "schema": {"人物": [1]}}, 400, ["schema['人物']"]),
    ("/v1/rerank", {"query": "q", "documents": []}, 400, ["documents"]),
])
def test_openai_style_errors(http, path, body, status, words):
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for word in words:
        assert word in error["message"], error


def test_malformed_and_oversized_bodies(http):
    bad = http.post("/v1/embeddings", content=b'{"input": ', headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    bad_tei = http.post("/embed", content=b"not json", headers={"content-type": "application/json"})
    assert bad_tei.status_code == 422 and bad_tei.json()["error_type"] == "validation"
    huge = http.post("/v1/embeddings", json={"input": "好" * 400_000})  # 1.2 MB > the 1 MB limit of the fixture
    assert huge.status_code == 413 and "bytes" in huge.json()["error"]["message"]

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(40):
            yield b" " * 50_000
    streamed = http.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    lone_surrogate = http.post("/v1/embeddings", content=b'{"input": "\\ud800"}',
                               headers={"content-type": "application/json"})
    assert lone_surrogate.status_code == 400 and "Unicode" in lone_surrogate.json()["error"]["message"]
    assert http.get("/health").status_code == 200


def test_models_and_metrics(http):
    models = http.get("/v1/models").json()
    assert models["object"] == "list"
    assert {m["id"] for m in models["data"]} >= {"text_embedding", "pair_classification"}
    http.post("/v1/embeddings", json={"input": ""})
    http.post("/v1/embeddings", json={"input": "好"})
    text = http.get("/metrics").text
    assert 'structbert_gateway_requests_total{method="POST",route="/v1/embeddings",status="200"}' in text
    assert 'structbert_gateway_errors_total{kind="invalid",route="/v1/embeddings"}' in text
    assert "structbert_gateway_request_duration_seconds_bucket" in text


# --- the same answers with inference over gRPC (--triton-protocol grpc) ----------------------------

def test_grpc_transport_gives_the_same_answers_and_errors(tiny_server, tiny_repo, http, sdk):
    from structbert_gateway.process import GatewayProcess

    texts = sample_texts(4)
    with GatewayProcess(tiny_server.grpc_url, tiny_repo, extra_args=["--triton-protocol", "grpc"]) as gateway, \
            httpx.Client(base_url=gateway.url, timeout=60) as grpc_http:
        for path, body in (("/v1/embeddings", {"input": texts}), ("/embed", {"inputs": texts}),
                           ("/v1/classify", {"texts": texts, "labels": ["手机", "书籍"]}),
                           ("/rerank", {"query": texts[0], "texts": texts})):
            assert grpc_http.post(path, json=body).json() == http.post(path, json=body).json()
        bad = grpc_http.post("/v1/embeddings", json={"input": ["好", ""]})
        assert bad.status_code == 400 and "input[1]" in bad.json()["error"]["message"]
        got = grpc_http.post("/v1/embeddings", json={"input": texts[0]}).json()["data"][0]["embedding"]
        np.testing.assert_array_equal(np.asarray(got, dtype=np.float32), sdk.embed(texts[0]))
