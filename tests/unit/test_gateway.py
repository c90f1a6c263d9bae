"""The gateway without a server: error mapping (one place, two body styles), the guard (API key,
body size, concurrency), token-id refusal, and Triton down / timing out (a real gRPC client to a
closed port, or a backend that never answers)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from structbert_client import api
from structbert_gateway.app import create_app
from structbert_gateway.errors import from_triton, rename_tensors
from structbert_gateway.options import GatewayOptions
from structbert_serving.embedded_server import free_port


def client(backend=None, **options) -> TestClient:
    opts = GatewayOptions(triton_url=f"127.0.0.1:{free_port()}", timeout_s=2, **options)  # nothing listens there
    return TestClient(create_app(opts, set(api.PUBLIC_MODELS), backend=backend))


class StuckBackend:
    """Answers nothing in time: what a hung Triton looks like to the gateway."""

    def __init__(self, error: BaseException | None = None):
        self.error = error

    async def embed(self, texts, field="input"):
        if self.error is not None:
            raise from_triton(self.error)
        await asyncio.sleep(0.05)
        raise from_triton(asyncio.TimeoutError())

    async def output_dims(self, model, output):
        return [-1, 8]

    async def is_ready(self, models, cache_s=0.5):
        return False

    def forget_readiness(self):
        pass


def test_rename_tensors_gives_the_callers_fields_and_absolute_rows():
    assert rename_tensors("TEXT[3] is empty or only whitespace", {"TEXT": "input"}, 32) == \
        "input[35] is empty or only whitespace"
    assert rename_tensors("SCHEMA is not valid JSON", {"SCHEMA": "schema"}) == "schema is not valid JSON"


@pytest.mark.parametrize("message,status,kind", [
    ("[StatusCode.UNAVAILABLE] Exceeds maximum queue size", "StatusCode.UNAVAILABLE", "overloaded"),
    ("[StatusCode.UNAVAILABLE] Request timeout expired", "StatusCode.UNAVAILABLE", "overloaded"),
    ("[StatusCode.UNAVAILABLE] failed to connect to all addresses", "StatusCode.UNAVAILABLE", "unavailable"),
    ("Stub process 'x' is not healthy.", "StatusCode.INTERNAL", "unavailable"),
    ("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED", "timeout"),
    ("TEXT[0] is empty", "StatusCode.INVALID_ARGUMENT", "invalid"),
    ("Request for unknown model", "StatusCode.NOT_FOUND", "unavailable"),
    ("boom", "StatusCode.INTERNAL", "backend"),
])
def test_triton_errors_map_to_one_kind_each(message, status, kind):
    from tritonclient.utils import InferenceServerException

    assert from_triton(InferenceServerException(message, status=status)).kind == kind


def test_triton_down_is_503_in_both_styles_and_health_says_so():
    with client() as c:
        openai = c.post("/v1/embeddings", json={"input": "好"})
        assert openai.status_code == 503 and openai.json()["error"]["type"] == "server_error"
        assert openai.headers["retry-after"]
        tei = c.post("/embed", json={"inputs": "好"})
        assert tei.status_code == 503 and tei.json()["error_type"] == "unhealthy"
        assert c.get("/health").status_code == 503


def test_a_timeout_is_504_and_overload_is_429():
    from tritonclient.utils import InferenceServerException

    with client(StuckBackend()) as c:
        response = c.post("/v1/embeddings", json={"input": "好"})
        assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
    refused = InferenceServerException("Exceeds maximum queue size", status="StatusCode.UNAVAILABLE")
    with client(StuckBackend(refused)) as c:
        response = c.post("/embed", json={"inputs": "好"})
        assert response.status_code == 429 and response.json() == {
            "error": "the server is overloaded, retry later: Exceeds maximum queue size", "error_type": "overloaded"}


def test_api_key_is_required_when_set_and_compared_in_constant_time():
    with client(StuckBackend(), api_key="s3cret") as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            response = c.post("/v1/embeddings", json={"input": "好"}, headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "invalid_api_key"
        assert c.post("/v1/embeddings", json={"input": "好"}, headers={"Authorization": "Bearer s3cret"}
                      ).status_code == 504  # through the guard, to the (stuck) backend
        assert c.get("/health").status_code == 503  # probes need no key
        assert c.get("/metrics").status_code == 200


def test_body_and_batch_limits_are_413_before_any_inference():
    with client(StuckBackend(), max_body_bytes=1000, max_client_batch=4) as c:
        big = c.post("/v1/embeddings", json={"input": "好" * 1000})
        assert big.status_code == 413 and "1000 bytes" in big.json()["error"]["message"]
        many = c.post("/embed", json={"inputs": ["a"] * 5})
        assert many.status_code == 413 and many.json()["error_type"] == "validation"


def test_token_ids_and_dimensions_are_refused_clearly():
    with client(StuckBackend()) as c:
        ids = c.post("/v1/embeddings", json={"input": [101, 872, 102]})
        assert ids.status_code == 400 and "token-id" in ids.json()["error"]["message"]
        dims = c.post("/v1/embeddings", json={"input": "好", "dimensions": 4})
        assert dims.status_code == 400 and dims.json()["error"]["param"] == "dimensions"


def test_the_gateways_own_concurrency_limit_refuses_fast():
    async def scenario():
        import httpx

        app = create_app(GatewayOptions(triton_url="127.0.0.1:1", max_concurrent_requests=2),
                         {api.TEXT_EMBEDDING.name}, backend=StuckBackend())
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                return await asyncio.gather(*(c.post("/v1/embeddings", json={"input": "好"}) for _ in range(6)))
    statuses = sorted(r.status_code for r in asyncio.run(scenario()))
    assert statuses.count(429) == 4 and statuses.count(504) == 2


def test_routes_exist_only_for_served_pipelines():
    app = create_app(GatewayOptions(), {api.TEXT_EMBEDDING.name, api.SENTENCE_SIMILARITY.name})
    paths = set(app.openapi()["paths"])
    assert {"/v1/embeddings", "/embed", "/similarity", "/health", "/info", "/v1/models", "/metrics"} <= paths
    assert not paths & {"/rerank", "/v1/rerank", "/predict", "/v1/classify", "/v1/extract"}



def test_cors_allows_only_the_configured_origins():
    with client(StuckBackend(), cors_origins=["https://app.example"]) as c:
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"}
        ok = c.options("/v1/embeddings", headers=preflight)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options("/v1/embeddings", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_json_response_is_compact_utf8_and_keeps_every_float():
    """Every answer body goes through json_response (a 384-float embedding took 0.55 ms to encode
    with the standard library, a third of the gateway's own time per request at one client)."""
    import json
    import math

    import numpy as np

    from structbert_gateway.state import json_response

    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32).tolist()
    content = {"object": "list", "data": [{"embedding": vector, "index": 0}], "label": "体育", "score": 1e-7,
               "tiny": 5e-324, "nested": [[1, 2.5], {"k": None, "t": True}]}
    response = json_response(content)
    assert response.media_type == "application/json"
    assert "体育".encode() in response.body and b", " not in response.body and b": " not in response.body
    back = json.loads(response.body)
    assert back == content and all(a == b for a, b in zip(back["data"][0]["embedding"], vector))
    assert not math.isnan(back["score"])


# --- the client-compatibility routes (issue 37) ------------------------------------------------------

def test_cohere_embedding_types_follow_the_documented_encodings():
    import base64

    import numpy as np

    from structbert_gateway.embedding_types import encode

    v = np.array([[1.0, -1.0, 0.5, -0.25, 0.0, 0.1, -0.1, 0.9, 0.3]], dtype=np.float32)
    assert encode(v, "int8") == [[127, -127, 64, -32, 0, 13, -13, 114, 38]]
    assert encode(v, "uint8") == [[255, 0, 191, 96, 128, 140, 115, 242, 166]]
    bits = [1, 0, 1, 0, 0, 1, 0, 1, 1]  # x > 0, padded with zeros to 16
    want = [int("".join(map(str, bits[:8])), 2), int(str(bits[8]) + "0000000", 2)]
    assert encode(v, "ubinary") == [want] and encode(v, "binary") == [[b - 128 for b in want]]
    assert np.array_equal(np.frombuffer(base64.b64decode(encode(v, "base64")[0]), "<f4"), v[0])
    assert encode(v, "float") == v.tolist()


@pytest.mark.parametrize("inputs,want", [
    ("好", ("single", ["好"], True)),
    (["好", "差"], ("pair", [("好", "差")], True)),
    (["好", "差", "一般"], ("single", ["好", "差", "一般"], False)),  # TEI: a list of other than two strings is a batch
    ([["好"], ["差"]], ("single", ["好", "差"], False)),
    ([["好", "差"]], ("pair", [("好", "差")], False)),
])
def test_predict_reads_inputs_as_tei_does(inputs, want):
    from structbert_gateway.routes_tei import predict_rows

    assert predict_rows(inputs) == want


def test_each_route_family_answers_errors_in_its_own_shape():
    with client(StuckBackend()) as c:
        cohere = c.post("/v2/embed", json={"texts": [], "model": "text_embedding"})
        assert cohere.status_code == 400 and set(cohere.json()) == {"message"}
        assert c.post("/v1/embed", json={"texts": ["好"], "model": "embed-english-v3.0"}).status_code == 404
        assert c.post("/v2/rerank", json={"query": "q", "documents": "not a list"}).json().keys() == {"message"}
        root = c.post("/models/text_embedding", json={"inputs": "好", "normalize": False})
        assert root.status_code == 422 and root.json()["error_type"] == "validation"
        default = c.post("/", json={"inputs": []})
        assert default.status_code == 422 and "inputs" in default.json()["error"]
        missing = c.get("/v1/models/gpt-4")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
        assert c.get("/v1/models/reranking").json() == {"id": "reranking", "object": "model", "created": 0,
                                                        "owned_by": "structbert-triton"}


def test_model_roots_and_default_model():
    from structbert_gateway.routes_models import default_model

    served = {api.TEXT_CLASSIFICATION.name, api.RERANKING.name}
    paths = set(create_app(GatewayOptions(), served).openapi()["paths"])
    assert {"/models/text_classification", "/models/reranking", "/models/reranking/health",
            "/models/reranking/info", "/predict", "/rerank", "/v2/rerank"} <= paths
    assert not paths & {"/", "/models/text_embedding", "/v1/embed", "/v2/embed"}  # no embedding model, no default
    with_default = create_app(GatewayOptions(default_model="text_classification"), served).openapi()["paths"]
    assert "/" in with_default
    assert default_model(set(api.PUBLIC_MODELS), None) == "text_embedding"
    with pytest.raises(ValueError, match="does not serve"):
        default_model(served, "text_embedding")


def test_model_health_probes_need_no_key_and_ask_for_that_model():
    seen = []

    class Backend(StuckBackend):
        async def is_ready(self, models, cache_s=0.5):
            seen.append(list(models))
            return models == ["reranking"]

    with client(Backend(), api_key="s3cret") as c:
        assert c.get("/models/reranking/health").status_code == 200
        assert c.get("/models/text_embedding/health").status_code == 503
        assert c.get("/models/reranking/info").status_code == 401
    assert seen == [["reranking"], ["text_embedding"]]


def test_docs_and_playground_load_nothing_from_outside():
    import re

    with client(StuckBackend(), api_key="s3cret") as c:  # the pages need no key
        for page in ("/docs", "/redoc", "/playground"):
            html = c.get(page)
            assert html.status_code == 200 and "text/html" in html.headers["content-type"], page
            urls = re.findall(r'(?:src|href)="([^"]+)"', html.text) + re.findall(r"url: '([^']+)'", html.text)
            assert urls and all(u.startswith("/") for u in urls), (page, urls)
            for url in urls:
                if url.startswith("/static/"):
                    assert c.get(url).status_code == 200, url
        assert "/docs" not in c.get("/openapi.json").json()["paths"]


def test_without_fastapi_offline_the_docs_say_what_is_missing_and_the_api_works(monkeypatch):
    """The container's gateway packages are pinned apart (container_release.json): a gateway without
    the docs' asset package must still start and serve every route."""
    from structbert_gateway import routes_docs

    monkeypatch.setattr(routes_docs, "docs_assets", lambda: None)
    with client(StuckBackend()) as c:
        docs = c.get("/docs")
        assert docs.status_code == 503 and "fastapi-offline" in docs.text
        assert c.get("/playground").status_code == 200
        assert c.get("/v1/models").status_code == 200
