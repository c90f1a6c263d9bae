"""text-embeddings-inference's routes: ``/embed``, ``/rerank``, ``/similarity``, ``/predict``, ``/info``,
``/health``, with TEI's request and response shapes and its error body ``{"error", "error_type"}``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from structbert_client import __version__, api
from structbert_serving.params import DEFAULT_MAX_BATCH_TOKENS

from . import scores
from .errors import ApiError, error_response
from .schemas import (
    EmbedRequest,
    Info,
    Prediction,
    PredictRequest,
    Rank,
    RerankRequest,
    SimilarityRequest,
    TEIError,
)
from .state import TEI_ERRORS, Gateway, attach_error_models, gateway_of, json_response

ERRORS = attach_error_models(TEI_ERRORS, TEIError)
DTYPES = {"fp32": "float32", "fp16": "float16", "int8": "int8"}


def _pairs(inputs) -> tuple[list[str], list[str], bool]:
    """TEI's ``/predict`` inputs as (texts_a, texts_b, whether a single pair came in)."""
    if isinstance(inputs, str):
        raise ApiError("invalid", "this server's classifier scores sentence pairs: send inputs as [text_a, text_b] "
                                  "or [[text_a, text_b], ...]", param="inputs")
    items = list(inputs)
    if items and all(isinstance(x, str) for x in items):
        if len(items) != 2:
            raise ApiError("invalid", f"inputs holds {len(items)} strings; a pair is exactly [text_a, text_b]",
                           param="inputs")
        return [items[0]], [items[1]], True
    if not items:
        raise ApiError("invalid", "inputs is an empty list; send at least one pair", param="inputs")
    for i, pair in enumerate(items):
        if isinstance(pair, str) or len(pair) != 2:
            raise ApiError("invalid", f"inputs[{i}] is not a pair [text_a, text_b]: this server's classifier "
                                      "scores sentence pairs", param="inputs")
    return [p[0] for p in items], [p[1] for p in items], False


def router(served: set[str]) -> APIRouter:
    r = APIRouter(tags=["text-embeddings-inference-compatible"])

    @r.get("/health", summary="200 (empty body) when Triton and every served model are ready, else 503",
           response_class=Response, responses={200: {"description": "ready"},
                                               503: {"description": "not ready", "model": TEIError}})
    async def health(request: Request):
        gw = gateway_of(request)
        if await gw.backend.is_ready(sorted(gw.served)):
            return Response(status_code=200)
        return error_response(ApiError("unavailable", "the inference server or one of its models is not ready"),
                              "/health", request.scope)

    @r.get("/info", response_model=Info, summary="What this server serves (TEI's info)")
    async def info(request: Request):
        gw: Gateway = gateway_of(request)
        return json_response(_info(gw))

    if api.TEXT_EMBEDDING.name in served:
        @r.post("/embed", response_model=list[list[float]], responses=ERRORS, summary="Embeddings (TEI)")
        async def embed(body: EmbedRequest, request: Request):
            gw = gateway_of(request)
            if not body.normalize:
                raise ApiError("invalid", "normalize: false is not supported: this server's embeddings are "
                                          "L2-normalised inside the model", param="normalize")
            if body.prompt_name:
                raise ApiError("invalid", f"prompt_name '{body.prompt_name}': this server has no prompts",
                               param="prompt_name")
            texts, _ = gw.texts(body.inputs, "inputs")
            gw.check_truncation(api.TEXT_EMBEDDING.name, texts, body.truncate, body.truncation_direction, "inputs")
            return json_response((await gw.backend.embed(texts, "inputs")).tolist())

    if api.SENTENCE_SIMILARITY.name in served:
        @r.post("/similarity", response_model=list[float], responses=ERRORS,
                summary="Cosine similarity of source_sentence to each of sentences (TEI)")
        async def similarity(body: SimilarityRequest, request: Request):
            gw = gateway_of(request)
            source, sentences = body.inputs.source_sentence, body.inputs.sentences
            if not sentences:
                raise ApiError("invalid", "inputs.sentences is an empty list", param="inputs.sentences")
            gw.check_batch(len(sentences), "inputs.sentences")
            params = body.parameters
            if params is not None:
                if params.prompt_name:
                    raise ApiError("invalid", "this server has no prompts: drop parameters.prompt_name",
                                   param="parameters.prompt_name")
                gw.check_truncation(api.SENTENCE_SIMILARITY.name, [source, *sentences], params.truncate,
                                    params.truncation_direction, "inputs")
            result = await gw.backend.similarity([source] * len(sentences), sentences,
                                                 ("inputs.source_sentence", "inputs.sentences"))
            return json_response(result)

    if api.PAIR_CLASSIFICATION.name in served:
        @r.post("/predict", response_model=list[Prediction] | list[list[Prediction]], responses=ERRORS,
                summary="Pair classification (TEI): every label's probability, best first")
        async def predict(body: PredictRequest, request: Request):
            gw = gateway_of(request)
            if body.raw_scores:
                raise ApiError("invalid", "raw_scores: true is not supported: the server returns probabilities, "
                                          "not logits", param="raw_scores")
            a, b, single = _pairs(body.inputs)
            gw.check_batch(len(a), "inputs")
            gw.check_truncation(api.PAIR_CLASSIFICATION.name, list(zip(a, b)), body.truncate,
                                body.truncation_direction, "inputs")
            probs = await gw.backend.pair_classify(a, b, ("inputs", "inputs"))
            out = [sorted(({"score": v, "label": k} for k, v in p.items()), key=lambda x: -x["score"])
                   for p in probs]
            return json_response(out[0] if single else out)

    if api.RERANKING.name in served:
        @r.post("/rerank", response_model=list[Rank], responses=ERRORS,
                summary="Rerank texts against a query (TEI): the cross-encoder's relevance, best first")
        async def rerank(body: RerankRequest, request: Request):
            gw = gateway_of(request)
            if not body.texts:
                raise ApiError("invalid", "texts is an empty list; send at least one text", param="texts")
            gw.check_batch(len(body.texts), "texts")
            gw.check_truncation(api.RERANKING.name, [(body.query, t) for t in body.texts], body.truncate,
                                body.truncation_direction, "texts")
            relevance, raw = await gw.backend.rerank(body.query, body.texts, ("query", "texts"))
            values = raw if body.raw_scores else relevance
            ranks = []
            for i in scores.ranking(values):
                rank = {"index": i, "score": values[i]}
                if body.return_text:
                    rank["text"] = body.texts[i]
                ranks.append(rank)
            return json_response(ranks)

    return r


def _info(gw: Gateway) -> dict:
    repo = gw.repo
    served = [m for m in api.PUBLIC_MODELS if m in gw.served]
    if api.TEXT_EMBEDDING.name in gw.served:
        primary, task, encoder = api.TEXT_EMBEDDING.name, "embedding", "embedding_encoder"
        model_type: dict = {"embedding": {"pooling": repo.export_meta(encoder).get("pooling", "mean")}}
    elif api.RERANKING.name in gw.served:
        primary, task, encoder = api.RERANKING.name, "reranking", "reranker"
        model_type = {"reranker": {"id2label": {}, "label2id": {}}}
    elif api.PAIR_CLASSIFICATION.name in gw.served:
        primary, task, encoder = api.PAIR_CLASSIFICATION.name, "pair-classification", "pair_classifier"
        labels = repo.models[primary].labels if primary in repo.models else ["0", "1"]
        model_type = {"reranker": {"id2label": {str(i): lab for i, lab in enumerate(labels)},
                                   "label2id": {lab: i for i, lab in enumerate(labels)}}}
    else:
        primary, task, encoder = (served[0] if served else ""), "", ""
        model_type = {"classifier": {"id2label": {}, "label2id": {}}}
    info = repo.models.get(primary)
    marks = {m: repo.checkpoint(m) for m in served}
    return {
        "model_id": (marks.get(primary) or {}).get("checkpoint") or repo.source(encoder) or primary,
        "model_sha": None,
        "model_dtype": DTYPES.get(repo.precision(task), "unknown") if repo.local else "unknown",
        "model_type": model_type,
        "max_concurrent_requests": gw.options.max_concurrent_requests,
        "max_input_length": info.max_length if info else 512,
        "max_batch_tokens": info.max_batch_tokens if info else DEFAULT_MAX_BATCH_TOKENS,
        "max_batch_requests": None,
        "max_client_batch_size": gw.options.max_client_batch,
        "auto_truncate": info.truncates if info else True,
        "tokenization_workers": info.instances if info else 1,
        "version": __version__,
        "served_models": served,
        "synthetic": (marks.get(primary) or {}).get("synthetic"),
        "synthetic_models": [m for m, mark in marks.items() if mark and mark["synthetic"]],
    }
