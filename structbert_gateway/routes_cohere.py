"""Cohere's ``POST /v1/embed``, ``POST /v2/embed`` and ``POST /v2/rerank``, shaped as its SDK's own
types declare them (``cohere.Client`` and ``cohere.ClientV2`` parse the answers); errors in Cohere's
body ``{"message"}`` (:mod:`structbert_gateway.errors`). Cohere's v1 rerank is ``/v1/rerank``
(:mod:`structbert_gateway.routes_openai`, shared with Jina)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from structbert_client import api

from . import embedding_types, scores
from .errors import ApiError
from .schemas_cohere import (
    CohereEmbedRequest,
    CohereEmbedResponse,
    CohereEmbedV2Request,
    CohereError,
    CohereRerankV2Request,
    CohereRerankV2Response,
)
from .state import OPENAI_ERRORS, Gateway, attach_error_models, gateway_of, json_response

ERRORS = attach_error_models(OPENAI_ERRORS, CohereError)


async def _embed(gw: Gateway, body: CohereEmbedRequest, version: str) -> dict:
    model = gw.model_for(body.model, api.TEXT_EMBEDDING.name)
    if body.images or getattr(body, "inputs", None):
        field = "images" if body.images else "inputs"
        raise ApiError("invalid", f"{field}: this server embeds text only; send texts", param=field)
    if body.input_type == "image":
        raise ApiError("invalid", "input_type 'image' is not supported: this server embeds text only",
                       param="input_type")
    if body.texts is None:
        raise ApiError("invalid", "texts is missing; send the texts to embed", param="texts")
    texts, _ = gw.texts(body.texts, "texts")
    dimension = getattr(body, "output_dimension", None)
    if dimension is not None and dimension != gw.hidden:
        raise ApiError("invalid", f"output_dimension={dimension} is not supported: {model} returns "
                                  f"{gw.hidden or 'fixed-size'}-dimensional vectors; omit output_dimension",
                       param="output_dimension")
    if body.truncate == "START":
        raise ApiError("invalid", "truncate START is not supported: this server cuts over-long texts at the end; "
                                  "send END or NONE", param="truncate")
    max_tokens = getattr(body, "max_tokens", None)
    if max_tokens is not None:
        texts = gw.cut_to_tokens(model, texts, max_tokens)
    truncate = {"NONE": False, "END": True}.get(body.truncate or "")
    gw.check_truncation(model, texts, truncate, "right", "texts")
    vectors = await gw.backend.embed(texts, "texts")
    gw.hidden = gw.hidden or int(vectors.shape[1])
    tokens = gw.prompt_tokens(model, texts)
    meta = {"api_version": {"version": version}, "billed_units": {"input_tokens": tokens}}
    kinds = body.embedding_types
    if version == "1" and not kinds:
        return {"response_type": "embeddings_floats", "id": str(uuid.uuid4()), "embeddings": vectors.tolist(),
                "texts": texts, "meta": meta}
    by_type = {kind: embedding_types.encode(vectors, kind) for kind in dict.fromkeys(kinds or ["float"])}
    return {"response_type": "embeddings_by_type", "id": str(uuid.uuid4()), "embeddings": by_type, "texts": texts,
            "meta": meta}


def router(served: set[str]) -> APIRouter:
    r = APIRouter(tags=["Cohere-compatible"])

    if api.TEXT_EMBEDDING.name in served:
        @r.post("/v1/embed", response_model=CohereEmbedResponse, responses=ERRORS,
                summary="Embed (Cohere v1): float vectors, or by type when embedding_types is given")
        async def embed_v1(body: CohereEmbedRequest, request: Request):
            return json_response(await _embed(gateway_of(request), body, "1"))

        @r.post("/v2/embed", response_model=CohereEmbedResponse, responses=ERRORS,
                summary="Embed (Cohere v2): vectors by type (float unless embedding_types says otherwise)")
        async def embed_v2(body: CohereEmbedV2Request, request: Request):
            return json_response(await _embed(gateway_of(request), body, "2"))

    if api.RERANKING.name in served:
        @r.post("/v2/rerank", response_model=CohereRerankV2Response, responses=ERRORS,
                summary="Rerank documents against a query (Cohere v2): the cross-encoder's relevance, best first")
        async def rerank_v2(body: CohereRerankV2Request, request: Request):
            gw: Gateway = gateway_of(request)
            model = gw.model_for(body.model, api.RERANKING.name)
            if not body.documents:
                raise ApiError("invalid", "documents is an empty list; send at least one document", param="documents")
            gw.check_batch(len(body.documents), "documents")
            docs = list(body.documents)
            if body.max_tokens_per_doc is not None:
                docs = gw.cut_to_tokens(model, docs, body.max_tokens_per_doc)
            relevance, _ = await gw.backend.rerank(body.query, docs, ("query", "documents"))
            order = scores.ranking(relevance)[: body.top_n or len(docs)]
            return json_response({"id": str(uuid.uuid4()),
                                  "results": [{"index": i, "relevance_score": relevance[i]} for i in order],
                                  "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}})

    return r
