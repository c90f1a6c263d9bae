"""Every served model at a root of its own, for clients that talk to one model at one URL
(``huggingface_hub.InferenceClient(model=URL)`` or ``base_url=URL``), in the pattern of Hugging Face's
inference API: ``POST /models/{model}`` answers as a one-model text-embeddings-inference server does
at its root (the body decides: embed or similarity for the embedding model, TEI's rerank, TEI's
predict for the pair classifier, Hugging Face's text-classification and zero-shot bodies for those
models), ``GET /models/{model}/health`` and ``GET /models/{model}/info`` as TEI's ``/health`` and
``/info`` for that model alone. ``POST /`` is the root of the default model (``--default-model``;
the embedding model unless set). Errors in TEI's body."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from structbert_client import api

from . import routes_tei
from .errors import ApiError
from .schemas import (
    EmbedRequest,
    HFExtractRequest,
    HFLabelScore,
    HFTextClassificationRequest,
    HFZeroShotRequest,
    Info,
    Prediction,
    PredictRequest,
    Rank,
    RerankRequest,
    SimilarityRequest,
    Span,
    TEIError,
)
from .state import Gateway, gateway_of, json_response

ERRORS = routes_tei.ERRORS


async def _embedding_root(gw: Gateway, body: EmbedRequest | SimilarityRequest):
    if isinstance(body, SimilarityRequest):
        if api.SENTENCE_SIMILARITY.name not in gw.served:
            raise ApiError("invalid", "this server has no sentence_similarity model", param="inputs")
        return await routes_tei.similarity(gw, body)
    return await routes_tei.embed(gw, body)


async def _text_classification(gw: Gateway, body: HFTextClassificationRequest) -> list[list[dict]]:
    params = body.parameters
    if params is not None and params.function_to_apply not in (None, "softmax"):
        raise ApiError("invalid", f"function_to_apply '{params.function_to_apply}' is not supported: the server "
                                  "returns softmax probabilities", param="parameters.function_to_apply")
    texts, _ = gw.texts(body.inputs, "inputs")
    probs = await routes_tei.classify_rows(gw, "single", texts, body.truncate, body.truncation_direction)
    top_k = params.top_k if params is not None else None
    return [routes_tei.ranked(p)[:top_k] for p in probs]  # one list per text, as the inference API answers


async def _zero_shot(gw: Gateway, body: HFZeroShotRequest) -> list[dict]:
    params = body.parameters
    if not params.candidate_labels:
        raise ApiError("invalid", "parameters.candidate_labels is an empty list; send at least one label",
                       param="parameters.candidate_labels")
    fields = {api.TEXT: "inputs", api.LABELS: "parameters.candidate_labels",
              api.HYPOTHESIS_TEMPLATE: "parameters.hypothesis_template", api.MULTI_LABEL: "parameters.multi_label"}
    texts, _ = gw.texts(body.inputs, "inputs")
    (result,) = await gw.backend.classify(texts, params.candidate_labels, multi_label=bool(params.multi_label),
                                          hypothesis_template=params.hypothesis_template or "{}", fields=fields)
    return [{"label": label, "score": score} for label, score in zip(result["labels"], result["scores"])]


async def _extract(gw: Gateway, body: HFExtractRequest):
    texts, single = gw.texts(body.inputs, "inputs")
    fields = {api.TEXT: "inputs", api.SCHEMA: "parameters.schema", api.OUTPUT_ALL_PREFIX: "parameters.output_all_prefix"}
    paths = await gw.backend.extract(texts, body.parameters.schema_,
                                     output_all_prefix=body.parameters.output_all_prefix, fields=fields)
    return paths[0] if single else paths


# model -> (handler, body type, answer type, what it does)
ROOTS = {
    api.TEXT_EMBEDDING.name: (_embedding_root, EmbedRequest | SimilarityRequest, list[list[float]] | list[float],
                              "TEI's embed (or, with inputs.source_sentence, its similarity)"),
    api.SENTENCE_SIMILARITY.name: (routes_tei.similarity, SimilarityRequest, list[float], "TEI's similarity"),
    api.PAIR_CLASSIFICATION.name: (routes_tei.predict, PredictRequest, list[Prediction] | list[list[Prediction]],
                                   "TEI's predict (pairs)"),
    api.TEXT_CLASSIFICATION.name: (_text_classification, HFTextClassificationRequest, list[list[Prediction]],
                                   "text classification (Hugging Face's body; one list of labels per text)"),
    api.RERANKING.name: (routes_tei.rerank, RerankRequest, list[Rank], "TEI's rerank"),
    api.ZERO_SHOT_CLASSIFICATION.name: (_zero_shot, HFZeroShotRequest, list[HFLabelScore],
                                        "zero-shot classification (Hugging Face's body)"),
    api.INFORMATION_EXTRACTION.name: (_extract, HFExtractRequest, list[list[Span]] | list[list[list[Span]]],
                                      "SiameseUIE extraction: the paths of a text (one list per text for a batch)"),
}


def _add_root(r: APIRouter, path: str, model: str) -> None:
    handler, body_type, answer, what = ROOTS[model]

    async def root(body, request):
        return json_response(await handler(gateway_of(request), body))

    root.__annotations__ = {"body": body_type, "request": Request}  # types, not strings: body_type is local

    r.add_api_route(path, root, methods=["POST"], response_model=answer, responses=ERRORS,
                    summary=f"{model}: {what}", name=f"root_{model}" if path != "/" else "root_default")


def _add_probes(r: APIRouter, model: str) -> None:
    base = f"/models/{model}"

    async def health(request: Request):
        return await routes_tei.health(gateway_of(request), [model], f"{base}/health", request)

    async def info(request: Request):
        return json_response(routes_tei.info(gateway_of(request), model))

    r.add_api_route(f"{base}/health", health, methods=["GET"], response_class=Response,
                    responses={200: {"description": "ready"}, 503: {"description": "not ready", "model": TEIError}},
                    summary=f"200 (empty body) when Triton and {model} are ready, else 503", name=f"health_{model}")
    r.add_api_route(f"{base}/info", info, methods=["GET"], response_model=Info, summary=f"TEI's info for {model}",
                    name=f"info_{model}")


def default_model(served: set[str], requested: str | None) -> str | None:
    """The model ``POST /`` answers for: ``requested`` (which must be served), else the embedding model."""
    if requested:
        if requested not in served:
            raise ValueError(f"--default-model {requested}: this server does not serve it "
                             f"(it serves {', '.join(sorted(served)) or 'nothing'})")
        return requested
    return api.TEXT_EMBEDDING.name if api.TEXT_EMBEDDING.name in served else None


def router(served: set[str], default: str | None = None) -> APIRouter:
    r = APIRouter(tags=["one model, one URL (Hugging Face inference API / TEI root)"])
    for model in api.PUBLIC_MODELS:
        if model in served:
            _add_root(r, f"/models/{model}", model)
            _add_probes(r, model)
    default = default_model(served, default)
    if default is not None:
        _add_root(r, "/", default)
    return r
