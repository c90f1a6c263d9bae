"""Fuzz the gateway against its own OpenAPI document (schemathesis: bodies that conform to it and
bodies that violate it, for every route), in front of the real server: no 5xx (nor TEI's 424
backend error), answers conform to the document, and the gateway and Triton stay ready. Bounded: a
few examples per route and mode. (schemathesis's pytest plugin does not run under pytest 9 yet, so
the test draws its cases from the operations' hypothesis strategies itself.)"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from structbert_client import api

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = 8  # per route and mode (a model root's probes: 2): ~370 requests in all
ROUTES = [("POST", p) for p in ("/v1/embeddings", "/v1/rerank", "/embed", "/rerank", "/similarity", "/predict",
                                "/v1/classify", "/v1/extract", "/v1/embed", "/v2/embed", "/v2/rerank", "/")] + \
         [("GET", p) for p in ("/v1/models", "/v1/models/{model}", "/info", "/health", "/metrics")] + \
         [(method, f"/models/{m}{tail}") for m in api.PUBLIC_MODELS for method, tail in
          (("POST", ""), ("GET", "/health"), ("GET", "/info"))]  # every model's own root
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def gateway_schema(tiny_gateway):
    return schemathesis.openapi.from_url(f"{tiny_gateway.url}/openapi.json")


def test_the_document_lists_every_route(gateway_schema):
    listed = {(method.upper(), path) for path, ops in gateway_schema.raw_schema["paths"].items() for method in ops}
    assert set(ROUTES) == listed


@pytest.mark.parametrize("method,path,mode", [
    (m, p, mode) for m, p in ROUTES for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if m == "POST" or mode is GenerationMode.POSITIVE])  # a GET without parameters cannot be malformed
def test_no_server_errors_and_answers_match_the_document(gateway_schema, tiny_gateway, method, path, mode):
    operation = gateway_schema[path][method]
    seen = []
    probe = path.startswith("/models/") and method == "GET"  # no parameters: every example is the same request

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=2 if probe else EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call_and_validate(base_url=tiny_gateway.url, timeout=60, checks=CHECKS)
        assert response.status_code != 424, response.text  # TEI's "backend" error: a server-side failure too
        if mode is GenerationMode.NEGATIVE:
            assert 400 <= response.status_code < 500, (case.body, response.status_code, response.text)
        seen.append(response.status_code)

    run()
    assert seen


def test_still_ready_after_the_fuzz(tiny_gateway, tiny_server):
    assert httpx.get(f"{tiny_gateway.url}/health", timeout=10).status_code == 200
    assert tiny_server.is_ready() and tiny_server.process.poll() is None
    assert tiny_gateway.process.poll() is None
    good = httpx.post(f"{tiny_gateway.url}/v1/embeddings", json={"input": "今天天气很好"}, timeout=30)
    assert good.status_code == 200
