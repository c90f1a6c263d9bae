"""End to end: the HTTP gateway (real uvicorn process) in front of the real embedded tritonserver,
driven by real clients: the official ``openai`` package, TEI's documented request bodies, and plain
HTTP; answers compared with the SDK's over gRPC."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from tests.conftest import make_client, sample_texts

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sdk(tiny_server):
    client = make_client(tiny_server, "grpc")
    yield client
    client.close()


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
