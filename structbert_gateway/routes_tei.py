"""text-embeddings-inference's routes: ``/embed``, ``/rerank``, ``/similarity``, ``/predict``, ``/info``,
``/health``, with TEI's request and response shapes and its error body ``{"error", "error_type"}``.

The handlers are plain functions of (gateway, body) -> answer, so every model's own root
(:mod:`structbert_gateway.routes_models`) answers with the same code."""

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


def source_of(model: str) -> tuple[str, str]:
    """(task family, its first encoder's Triton name) behind a public model, from the registry."""
    from structbert_export.specs import spec_for
    from structbert_registry.families import family_of_model

    try:
        family = family_of_model(model)
    except ValueError:
        return "", ""
    return family.task, spec_for(family.encoders[0]).triton_name


def predict_rows(inputs) -> tuple[str, list, bool]:
    """TEI's ``/predict`` inputs, read as TEI reads them: ``"text"`` or ``[text_a, text_b]`` is one
    input; ``[[text], ...]``, ``[[text_a, text_b], ...]`` or a list of other than two strings is a
    batch. Returns ("single" or "pair", rows (texts or (a, b)), whether one input came in)."""
    if isinstance(inputs, str):
        return "single", [inputs], True
    items = list(inputs)
    if not items:
        raise ApiError("invalid", "inputs is an empty list; send a text, a pair [text_a, text_b] or a batch",
                       param="inputs")
    if all(isinstance(x, str) for x in items):
        if len(items) == 2:
            return "pair", [(items[0], items[1])], True
        return "single", items, False
    kinds = set()
    for i, row in enumerate(items):
        if isinstance(row, str) or len(row) not in (1, 2):
            raise ApiError("invalid", f"inputs[{i}] is neither [text] nor a pair [text_a, text_b]; a batch holds "
                                      "one kind of row", param="inputs")
        kinds.add(len(row))
    if len(kinds) > 1:
        raise ApiError("invalid", "inputs mixes single texts and pairs; send one kind of row per request",
                       param="inputs")
    if kinds == {1}:
        return "single", [row[0] for row in items], False
    return "pair", [(row[0], row[1]) for row in items], False


def ranked(probs: dict[str, float]) -> list[dict]:
    return sorted(({"score": v, "label": k} for k, v in probs.items()), key=lambda x: -x["score"])


async def classify_rows(gw: Gateway, kind: str, rows: list, truncate: bool | None, direction: str
                        ) -> list[dict[str, float]]:
    """``{label: probability}`` per row, from the single-text or the pair classifier."""
    model = api.TEXT_CLASSIFICATION if kind == "single" else api.PAIR_CLASSIFICATION
    if model.name not in gw.served:
        other = "pairs [text_a, text_b]" if kind == "single" else "single texts"
        raise ApiError("invalid", f"this server has no {'single-text' if kind == 'single' else 'pair'} classifier "
                                  f"({model.name}); its classifier scores {other}", param="inputs")
    gw.check_batch(len(rows), "inputs")
    gw.check_truncation(model.name, rows, truncate, direction, "inputs")
    if kind == "single":
        return await gw.backend.text_classify(rows, "inputs")
    return await gw.backend.pair_classify([a for a, _ in rows], [b for _, b in rows], ("inputs", "inputs"))


# -- handlers: (gateway, body) -> the JSON answer ---------------------------------------------------

async def embed(gw: Gateway, body: EmbedRequest) -> list:
    if not body.normalize:
        raise ApiError("invalid", "normalize: false is not supported: this server's embeddings are "
                                  "L2-normalised inside the model", param="normalize")
    if body.prompt_name:
        raise ApiError("invalid", f"prompt_name '{body.prompt_name}': this server has no prompts",
                       param="prompt_name")
    texts, _ = gw.texts(body.inputs, "inputs")
    gw.check_truncation(api.TEXT_EMBEDDING.name, texts, body.truncate, body.truncation_direction, "inputs")
    return (await gw.backend.embed(texts, "inputs")).tolist()


async def similarity(gw: Gateway, body: SimilarityRequest) -> list[float]:
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
    return await gw.backend.similarity([source] * len(sentences), sentences,
                                       ("inputs.source_sentence", "inputs.sentences"))


async def predict(gw: Gateway, body: PredictRequest) -> list:
    if body.raw_scores:
        raise ApiError("invalid", "raw_scores: true is not supported: the server returns probabilities, "
                                  "not logits", param="raw_scores")
    kind, rows, single = predict_rows(body.inputs)
    probs = await classify_rows(gw, kind, rows, body.truncate, body.truncation_direction)
    out = [ranked(p) for p in probs]
    return out[0] if single else out


async def rerank(gw: Gateway, body: RerankRequest) -> list:
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
    return ranks


async def health(gw: Gateway, models: list[str], path: str, request: Request) -> Response:
    if await gw.backend.is_ready(models):
        return Response(status_code=200)
    return error_response(ApiError("unavailable", "the inference server or one of its models is not ready"),
                          path, request.scope)


def router(served: set[str]) -> APIRouter:
    r = APIRouter(tags=["text-embeddings-inference-compatible"])

    @r.get("/health", summary="200 (empty body) when Triton and every served model are ready, else 503",
           response_class=Response, responses={200: {"description": "ready"},
                                               503: {"description": "not ready", "model": TEIError}})
    async def health_route(request: Request):
        gw = gateway_of(request)
        return await health(gw, sorted(gw.served), "/health", request)

    @r.get("/info", response_model=Info, summary="What this server serves (TEI's info)")
    async def info_route(request: Request):
        return json_response(info(gateway_of(request)))

    if api.TEXT_EMBEDDING.name in served:
        @r.post("/embed", response_model=list[list[float]], responses=ERRORS, summary="Embeddings (TEI)")
        async def embed_route(body: EmbedRequest, request: Request):
            return json_response(await embed(gateway_of(request), body))

    if api.SENTENCE_SIMILARITY.name in served:
        @r.post("/similarity", response_model=list[float], responses=ERRORS,
                summary="Cosine similarity of source_sentence to each of sentences (TEI)")
        async def similarity_route(body: SimilarityRequest, request: Request):
            return json_response(await similarity(gateway_of(request), body))

    if served & {api.PAIR_CLASSIFICATION.name, api.TEXT_CLASSIFICATION.name}:
        @r.post("/predict", response_model=list[Prediction] | list[list[Prediction]], responses=ERRORS,
                summary="Classification (TEI): a text (text_classification) or a pair (pair_classification); "
                        "every label's probability, best first")
        async def predict_route(body: PredictRequest, request: Request):
            return json_response(await predict(gateway_of(request), body))

    if api.RERANKING.name in served:
        @r.post("/rerank", response_model=list[Rank], responses=ERRORS,
                summary="Rerank texts against a query (TEI): the cross-encoder's relevance, best first")
        async def rerank_route(body: RerankRequest, request: Request):
            return json_response(await rerank(gateway_of(request), body))

    return r


def _model_type(gw: Gateway, model: str) -> dict:
    if model in (api.TEXT_EMBEDDING.name, api.SENTENCE_SIMILARITY.name):
        return {"embedding": {"pooling": gw.repo.export_meta("embedding_encoder").get("pooling", "mean")}}
    labels = gw.repo.models[model].labels if model in gw.repo.models else []
    if model == api.PAIR_CLASSIFICATION.name and not labels:
        labels = ["0", "1"]
    table = {"id2label": {str(i): lab for i, lab in enumerate(labels)}, "label2id": {lab: i for i, lab in enumerate(labels)}}
    if model == api.RERANKING.name:
        return {"reranker": {"id2label": {}, "label2id": {}}}
    if model == api.PAIR_CLASSIFICATION.name and api.RERANKING.name not in gw.served:
        return {"reranker": table}
    return {"classifier": table}


def info(gw: Gateway, model: str | None = None) -> dict:
    """TEI's info for ``model``, or for the server (its embedding model, else reranker, else pair
    classifier, else the first it serves)."""
    repo = gw.repo
    served = [m for m in api.PUBLIC_MODELS if m in gw.served]
    if model is None:
        model = next((m for m in (api.TEXT_EMBEDDING.name, api.RERANKING.name, api.PAIR_CLASSIFICATION.name)
                      if m in gw.served), served[0] if served else "")
    task, encoder = source_of(model)
    details = repo.models.get(model)
    marks = {m: repo.checkpoint(m) for m in served}
    return {
        "model_id": (marks.get(model) or {}).get("checkpoint") or repo.source(encoder) or model,
        "model_sha": None,
        "model_dtype": DTYPES.get(repo.precision(task), "unknown") if repo.local else "unknown",
        "model_type": _model_type(gw, model) if model else {"classifier": {"id2label": {}, "label2id": {}}},
        "max_concurrent_requests": gw.options.max_concurrent_requests,
        "max_input_length": details.max_length if details else 512,
        "max_batch_tokens": details.max_batch_tokens if details else DEFAULT_MAX_BATCH_TOKENS,
        "max_batch_requests": None,
        "max_client_batch_size": gw.options.max_client_batch,
        "auto_truncate": details.truncates if details else True,
        "tokenization_workers": details.instances if details else 1,
        "version": __version__,
        "served_models": served,
        "synthetic": (marks.get(model) or {}).get("synthetic"),
        "synthetic_models": [m for m, mark in marks.items() if mark and mark["synthetic"]],
    }
