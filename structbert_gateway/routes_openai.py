"""OpenAI's ``POST /v1/embeddings``, ``GET /v1/models`` and ``GET /v1/models/{model}``; Cohere/Jina's
``POST /v1/rerank``."""

from __future__ import annotations

import base64
import uuid

import numpy as np
from fastapi import APIRouter, Request

from structbert_client import api

from . import scores
from .errors import ApiError
from .schemas import (
    CohereRerankRequest,
    CohereRerankResponse,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ModelCard,
    ModelList,
    OpenAIError,
)
from .state import OPENAI_ERRORS, Gateway, attach_error_models, gateway_of, json_response

ERRORS = attach_error_models(OPENAI_ERRORS, OpenAIError)


def _card(gw, name: str) -> dict:
    """OpenAI's model object, and what the model serves ("synthetic": true marks random weights)."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "structbert-triton",
            **(gw.repo.checkpoint(name) or {})}


def router(served: set[str]) -> APIRouter:
    r = APIRouter(tags=["OpenAI-compatible"])

    @r.get("/v1/models", response_model=ModelList, summary="The public models this server serves")
    async def models(request: Request):
        gw = gateway_of(request)
        return json_response({"object": "list", "data": [_card(gw, name) for name in api.PUBLIC_MODELS if name in gw.served]})

    @r.get("/v1/models/{model}", response_model=ModelCard, responses={404: ERRORS[404]},
           summary="One public model (OpenAI's retrieve); 404 for a model this server does not serve")
    async def model(model: str, request: Request):
        gw = gateway_of(request)
        if model not in gw.served:
            raise ApiError("not_found", f"The model '{model}' does not exist (GET /v1/models lists this server's "
                                        "models)", param="model", code="model_not_found")
        return json_response(_card(gw, model))

    if api.TEXT_EMBEDDING.name in served:
        @r.post("/v1/embeddings", response_model=EmbeddingsResponse, responses=ERRORS,
                summary="Embeddings (OpenAI): L2-normalised mean-pooled vectors")
        async def embeddings(body: EmbeddingsRequest, request: Request):
            gw = gateway_of(request)
            model = gw.model_for(body.model, api.TEXT_EMBEDDING.name)
            texts, _ = gw.texts(body.input, "input")
            if body.dimensions is not None and body.dimensions != gw.hidden:
                raise ApiError("invalid", f"dimensions={body.dimensions} is not supported: {model} returns "
                                          f"{gw.hidden or 'fixed-size'}-dimensional vectors and cannot shorten them; "
                                          "omit dimensions", param="dimensions")
            vectors = await gw.backend.embed(texts, "input")
            gw.hidden = gw.hidden or int(vectors.shape[1])
            if body.encoding_format == "base64":
                raw = np.ascontiguousarray(vectors, dtype="<f4")
                encoded: list = [base64.b64encode(row.tobytes()).decode("ascii") for row in raw]
            else:
                encoded = vectors.tolist()
            tokens = gw.prompt_tokens(model, texts)
            return json_response({
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    if api.RERANKING.name in served:
        @r.post("/v1/rerank", response_model=CohereRerankResponse, responses=ERRORS, tags=["Cohere/Jina-compatible"],
                summary="Rerank documents against a query (Cohere/Jina): the cross-encoder's relevance")
        async def rerank(body: CohereRerankRequest, request: Request):
            gw: Gateway = gateway_of(request)
            model = gw.model_for(body.model, api.RERANKING.name)
            docs = [d if isinstance(d, str) else d.text for d in body.documents]
            if not docs:
                raise ApiError("invalid", "documents is an empty list; send at least one document", param="documents")
            gw.check_batch(len(docs), "documents")
            relevance, _ = await gw.backend.rerank(body.query, docs, ("query", "documents"))
            order = scores.ranking(relevance)[: body.top_n or len(docs)]
            results = []
            for i in order:
                item = {"index": i, "relevance_score": relevance[i]}
                if body.return_documents:
                    item["document"] = {"text": docs[i]}
                results.append(item)
            tokens = gw.prompt_tokens(model, [(body.query, d) for d in docs])
            return json_response({"id": str(uuid.uuid4()), "model": model, "results": results,
                                  "usage": {"total_tokens": tokens}})

    return r
