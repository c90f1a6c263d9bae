"""This project's own routes: ``POST /v1/classify`` (zero-shot) and ``POST /v1/extract`` (SiameseUIE)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from structbert_client import api

from .errors import ApiError
from .schemas import ClassifyRequest, ClassifyResponse, ExtractRequest, ExtractResponse, OpenAIError
from .state import OPENAI_ERRORS, attach_error_models, gateway_of, json_response

ERRORS = attach_error_models(OPENAI_ERRORS, OpenAIError)


def request_fields(model: api.PublicModel, *fields: str) -> dict[str, str]:
    """The model's wire inputs (required, then optional) -> the request fields they come from, so
    error messages name what the caller sent."""
    return dict(zip((*model.inputs, *(n for n, _ in model.optional_inputs)), fields))


def router(served: set[str]) -> APIRouter:
    r = APIRouter(tags=["structbert-triton"])

    if api.ZERO_SHOT_CLASSIFICATION.name in served:
        @r.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS,
                summary="Zero-shot classification (NLI): each text against candidate labels, best first")
        async def classify(body: ClassifyRequest, request: Request):
            gw = gateway_of(request)
            model = gw.model_for(body.model, api.ZERO_SHOT_CLASSIFICATION.name)
            texts, _ = gw.texts(body.texts, "texts")
            if not isinstance(body.labels, str) and not body.labels:
                raise ApiError("invalid", "labels is an empty list; send at least one candidate label", param="labels")
            fields = request_fields(api.ZERO_SHOT_CLASSIFICATION, "texts", "labels", "hypothesis_template",
                                    "multi_label")
            results = await gw.backend.classify(texts, body.labels, multi_label=body.multi_label,
                                                hypothesis_template=body.hypothesis_template, fields=fields)
            return json_response({"object": "list", "model": model, "data": [
                {"index": i, "labels": r["labels"], "scores": r["scores"]} for i, r in enumerate(results)]})

    if api.INFORMATION_EXTRACTION.name in served:
        @r.post("/v1/extract", response_model=ExtractResponse, responses=ERRORS,
                summary="Information extraction (SiameseUIE): typed spans with character offsets, per schema")
        async def extract(body: ExtractRequest, request: Request):
            gw = gateway_of(request)
            model = gw.model_for(body.model, api.INFORMATION_EXTRACTION.name)
            texts, _ = gw.texts(body.texts, "texts")
            fields = request_fields(api.INFORMATION_EXTRACTION, "texts", "schema", "output_all_prefix")
            paths = await gw.backend.extract(texts, body.schema_, output_all_prefix=body.output_all_prefix,
                                             fields=fields)
            return json_response({"object": "list", "model": model,
                                  "data": [{"index": i, "paths": p} for i, p in enumerate(paths)]})

    return r
