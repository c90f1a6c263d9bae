"""End to end: each ecosystem's own client library, pinned in the ``dev`` extra, against the real
gateway and the real embedded tritonserver, unchanged but for the URL: ``openai`` (models.retrieve),
``cohere`` (Client and ClientV2: embed, rerank), ``huggingface_hub.InferenceClient`` (one model at one
URL: feature_extraction, sentence_similarity, text_classification, zero_shot_classification,
health_check, get_endpoint_info). Answers are compared with the SDK's over gRPC."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.conftest import sample_texts

pytestmark = pytest.mark.e2e


# --- openai ---------------------------------------------------------------------------------------

def test_openai_models_retrieve(tiny_gateway):
    import openai

    client = openai.OpenAI(base_url=f"{tiny_gateway.url}/v1", api_key="unused", max_retries=0)
    model = client.models.retrieve("text_embedding")
    assert model.id == "text_embedding" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("text-embedding-3-small")
    assert err.value.code == "model_not_found" and "text-embedding-3-small" in err.value.message


# --- cohere ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cohere_v1(tiny_gateway):
    import cohere

    return cohere.Client(api_key="unused", base_url=tiny_gateway.url, max_retries=0)


@pytest.fixture(scope="module")
def cohere_v2(tiny_gateway):
    import cohere

    return cohere.ClientV2(api_key="unused", base_url=tiny_gateway.url, max_retries=0)


def test_cohere_v1_embed_floats_and_by_type(cohere_v1, sdk):
    texts = sample_texts(3)
    want = sdk.embed(texts)
    floats = cohere_v1.embed(texts=texts, model="text_embedding", input_type="search_document")
    assert floats.response_type == "embeddings_floats"
    np.testing.assert_array_equal(np.asarray(floats.embeddings, dtype=np.float32), want)
    typed = cohere_v1.embed(texts=texts, model="text_embedding", input_type="search_query",
                            embedding_types=["float", "int8"], truncate="END")
    assert typed.response_type == "embeddings_by_type"
    np.testing.assert_array_equal(np.asarray(typed.embeddings.float_, dtype=np.float32), want)
    np.testing.assert_array_equal(np.asarray(typed.embeddings.int8), np.rint(want * 127))


def test_cohere_v2_embed_every_type(cohere_v2, sdk):
    texts = sample_texts(2)
    want = sdk.embed(texts)
    got = cohere_v2.embed(texts=texts, model="text_embedding", input_type="classification",
                          embedding_types=["float", "int8", "uint8", "binary", "ubinary", "base64"])
    e = got.embeddings
    np.testing.assert_array_equal(np.asarray(e.float_, dtype=np.float32), want)
    np.testing.assert_array_equal(np.asarray(e.int8), np.rint(want * 127))
    np.testing.assert_array_equal(np.asarray(e.uint8), np.rint((want + 1) * 127.5))
    bits = np.packbits(want > 0, axis=-1)
    np.testing.assert_array_equal(np.asarray(e.ubinary), bits)
    np.testing.assert_array_equal(np.asarray(e.binary), bits.astype(int) - 128)
    decoded = np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in e.base64])
    np.testing.assert_array_equal(decoded, want)
    assert got.meta.api_version.version == "2" and got.meta.billed_units.input_tokens > 0
    assert list(got.texts) == texts


def test_cohere_v1_rerank(cohere_v1, sdk):
    query, docs = "这家酒店的服务怎么样", sample_texts(3)
    want = {r["index"]: r["score"] for r in sdk.rerank(query, docs)}
    got = cohere_v1.rerank(model="reranking", query=query, documents=docs, top_n=2, return_documents=True)
    assert [r.index for r in got.results] == sorted(want, key=lambda i: -want[i])[:2]
    for r in got.results:
        assert r.relevance_score == pytest.approx(want[r.index], abs=1e-7) and r.document.text == docs[r.index]


def test_cohere_v2_rerank(cohere_v2, sdk):
    query, docs = "这家酒店的服务怎么样", sample_texts(4)
    want = {r["index"]: r["score"] for r in sdk.rerank(query, docs)}
    got = cohere_v2.rerank(model="reranking", query=query, documents=docs, top_n=2, max_tokens_per_doc=4096)
    assert [r.index for r in got.results] == sorted(want, key=lambda i: -want[i])[:2]
    for r in got.results:
        assert r.relevance_score == pytest.approx(want[r.index], abs=1e-7)
    cut = cohere_v2.rerank(model="reranking", query=query, documents=docs, max_tokens_per_doc=3)
    short = {r["index"]: r["score"] for r in sdk.rerank(query, [d[:3] for d in docs])}  # one token per character
    assert {r.index: r.relevance_score for r in cut.results} == pytest.approx(short, abs=1e-7)


def test_cohere_errors_are_the_sdks_error_classes(cohere_v1, cohere_v2):
    import cohere

    with pytest.raises(cohere.BadRequestError) as err:
        cohere_v2.embed(texts=["好", "  "], model="text_embedding", input_type="search_query")
    assert "texts[1]" in err.value.body["message"]
    with pytest.raises(cohere.NotFoundError):
        cohere_v1.embed(texts=["好"], model="embed-multilingual-v3.0")
    with pytest.raises(cohere.BadRequestError) as err:
        cohere_v2.embed(texts=["好"], model="text_embedding", input_type="search_query", truncate="START")
    assert "START" in err.value.body["message"]
    with pytest.raises(cohere.BadRequestError) as err:
        cohere_v2.rerank(model="reranking", query="q", documents=[])
    assert set(err.value.body) == {"message"}


# --- huggingface_hub.InferenceClient: one model at one URL ------------------------------------------

@pytest.fixture(autouse=True)
def hub_online_for_local_urls(monkeypatch):
    """tests/conftest.py sets HF_HUB_OFFLINE (nothing may reach the Hub), which also blocks the
    InferenceClient's requests to the local gateway; they reach 127.0.0.1 only."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "unused")  # no token lookup in the (absent) cache either


def test_inference_client_at_the_gateway_root_is_the_embedding_model(tiny_gateway, sdk):
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=tiny_gateway.url)
    texts = sample_texts(2)
    np.testing.assert_array_equal(client.feature_extraction(texts[0]), sdk.embed([texts[0]]))
    np.testing.assert_array_equal(client.feature_extraction(texts), sdk.embed(texts))
    # health_check and get_endpoint_info refuse, in the client, any provider but "hf-inference", and
    # huggingface_hub 2.5 leaves it None for a URL: name it (what a URL means for every other call)
    with pytest.raises(ValueError, match="not supported on 'None'"):
        client.health_check()
    probe = InferenceClient(model=tiny_gateway.url, provider="hf-inference")
    assert probe.health_check() and probe.get_endpoint_info()["model_type"] == {"embedding": {"pooling": "mean"}}


def test_inference_client_at_a_models_own_root(tiny_gateway, sdk):
    from huggingface_hub import InferenceClient

    root = f"{tiny_gateway.url}/models"
    text = sample_texts(1)[0]
    classifier = InferenceClient(model=f"{root}/text_classification")
    got = classifier.text_classification(text)
    want = sdk.text_classify(text)
    assert [x.label for x in got] == sorted(want, key=lambda k: -want[k])
    assert {x.label: x.score for x in got} == pytest.approx(want, abs=1e-7)
    assert len(classifier.text_classification(text, top_k=1)) == 1
    probe = InferenceClient(model=f"{root}/text_classification", provider="hf-inference")
    assert probe.health_check()
    info = probe.get_endpoint_info()
    assert info["model_type"] == {"classifier": {"id2label": {"0": "负面", "1": "正面"}, "label2id": {"负面": 0, "正面": 1}}}

    similarity = InferenceClient(model=f"{root}/sentence_similarity")
    sentences = sample_texts(3)
    assert similarity.sentence_similarity(text, sentences) == pytest.approx(sdk.similarity([text] * 3, sentences),
                                                                              abs=1e-7)
    zero_shot = InferenceClient(model=f"{root}/zero_shot_classification")
    labels = ["手机", "水果", "书籍"]
    got = zero_shot.zero_shot_classification(text, labels, multi_label=True, hypothesis_template="这篇文章的标题是{}")
    want = sdk.classify(text, labels, multi_label=True, hypothesis_template="这篇文章的标题是{}")
    assert [x.label for x in got] == want["labels"] and [x.score for x in got] == want["scores"]
    assert not InferenceClient(model=f"{root}/no_such_model", provider="hf-inference").health_check()


def test_tei_predict_serves_one_text_and_pairs(tiny_gateway, sdk):
    text = "这家酒店的服务很周到"
    with httpx.Client(base_url=tiny_gateway.url, timeout=60) as http:
        one = http.post("/predict", json={"inputs": text})
        assert one.status_code == 200, one.text
        want = sdk.text_classify(text)
        assert {p["label"]: p["score"] for p in one.json()} == pytest.approx(want, abs=1e-7)
        batch = http.post("/predict", json={"inputs": [[text], ["很差"]]}).json()
        assert len(batch) == 2 and {p["label"] for p in batch[1]} == {"负面", "正面"}
        pair = http.post("/predict", json={"inputs": [text, "服务很好"]}).json()
        assert {p["label"] for p in pair} == {"0", "1"}
        mixed = http.post("/predict", json={"inputs": [[text], [text, "好"]]})
        assert mixed.status_code == 422 and "mixes" in mixed.json()["error"]


def test_malformed_json_is_400_at_the_gateway_and_upstream_at_triton(tiny_gateway, tiny_server):
    """Triton's own HTTP port answers a malformed JSON body with its own status (a 500 on the
    Triton this project ships: upstream behaviour, documented in docs/gateway.md); the gateway,
    the HTTP API for users, answers 400 with the parser's message."""
    bad = b'{"inputs": [{"name": "TEXT", '
    triton = httpx.post(f"http://{tiny_server.http_url}/v2/models/text_embedding/infer", content=bad, timeout=30)
    assert triton.status_code >= 400
    print(f"\nTriton's HTTP port, malformed JSON: {triton.status_code} {triton.text[:120]}")
    gateway = httpx.post(f"{tiny_gateway.url}/v1/embeddings", content=bad, timeout=30,
                         headers={"content-type": "application/json"})
    assert gateway.status_code == 400 and "not valid JSON" in gateway.json()["error"]["message"]
