"""What every route shares: the backend, the repository's facts, the served models, the limits, and
the checks every route makes the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from fastapi import Request
from starlette.responses import Response

from .backend import TritonBackend
from .errors import ApiError
from .options import GatewayOptions
from .repository import RepositoryInfo

# error responses every inference route may give, for the OpenAPI document
OPENAI_ERRORS = {code: {"description": text, "model": None} for code, text in (
    (400, "Invalid request (OpenAI-style error body)"), (401, "Missing or wrong API key"),
    (404, "Unknown model"), (413, "Body or batch too large"), (429, "Overloaded: retry later"),
    (500, "Inference failed"), (503, "Inference server unavailable"), (504, "Inference timed out"))}
TEI_ERRORS = {code: {"description": text, "model": None} for code, text in (
    (401, "Missing or wrong API key"), (413, "Body or batch too large (TEI: validation)"),
    (422, "Invalid request (TEI-style error body)"), (424, "Inference failed (TEI: backend)"),
    (429, "Overloaded: retry later"), (503, "Inference server unavailable"), (504, "Inference timed out"))}


def attach_error_models(errors: dict, model) -> dict:
    return {code: {**spec, "model": model} for code, spec in errors.items()}


def json_response(content) -> Response:
    """A JSON answer (compact UTF-8). orjson: the standard library took 0.55 ms for one 384-float
    embedding, a third of the gateway's own time per request at one client (loadtest/RESULTS.md);
    floats keep the shortest text that reads back as the same value, as ``json`` writes them."""
    return Response(orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS), media_type="application/json")


@dataclass
class Gateway:
    options: GatewayOptions
    backend: TritonBackend
    repo: RepositoryInfo
    served: set[str]
    hidden: int | None = None  # the embedding dimension, when known
    extra: dict = field(default_factory=dict)

    def model_for(self, requested: str | None, model: str) -> str:
        """The route's Triton model; ``requested`` (the body's ``model``) must name it when given."""
        if requested in (None, "", model):
            return model
        raise ApiError("not_found", f"The model '{requested}' does not exist on this route; it serves '{model}' "
                                    f"(GET /v1/models lists this server's models)", param="model",
                       code="model_not_found")

    def texts(self, value: str | Sequence, field: str) -> tuple[list[str], bool]:
        """(texts, whether one string came in), checked the same way for every route."""
        if isinstance(value, str):
            return [value], True
        items = list(value)
        if not items:
            raise ApiError("invalid", f"{field} is an empty list; send at least one text", param=field)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise ApiError("invalid", f"{field}[{i}] is not a string: token-id input is not supported by this "
                                          "server; send text (the server tokenises it itself)", param=field)
        self.check_batch(len(items), field)
        return items, False

    def check_batch(self, n: int, field: str) -> None:
        if n > self.options.max_client_batch:
            raise ApiError("too_large", f"{field} holds {n} items; this server accepts at most "
                                        f"{self.options.max_client_batch} per request (--max-client-batch)",
                           param=field)

    def check_truncation(self, model: str, texts: Sequence, truncate: bool | None, direction: str,
                         field: str) -> None:
        """TEI's ``truncate``/``truncation_direction`` against the server's fixed policy."""
        if direction.lower() != "right":
            raise ApiError("invalid", "truncation_direction 'left' is not supported: this server truncates on "
                                      "the right", param="truncation_direction")
        info = self.repo.models.get(model)
        if truncate is False:
            counts = self.repo.count_tokens(model, texts, truncated=False)
            limit = info.max_length if info else None
            if counts is not None and limit is not None:
                for i, n in enumerate(counts):
                    if n > limit:
                        raise ApiError("too_large", f"Input validation error: `{field}[{i}]` must have less than "
                                                    f"{limit} tokens. Given: {n} (send truncate: true to cut it)",
                                       param=field)
        elif truncate is True and info is not None and not info.truncates:
            raise ApiError("invalid", "truncate: true is not possible: this server was exported with "
                                      "--overlength reject and refuses over-long texts", param="truncate")

    def cut_to_tokens(self, model: str, texts: Sequence[str], limit: int) -> list[str]:
        """Each text cut after its first ``limit`` tokens (the server's tokenizer, special tokens not
        counted; Cohere's ``max_tokens_per_doc``, ``max_tokens``). Unchanged without a local tokenizer."""
        tok = self.repo.tokenizer(model)
        if tok is None:
            return list(texts)
        out = []
        for text, enc in zip(texts, tok.encode_batch(list(texts), add_special_tokens=False)):
            offsets = [o for o in enc.offsets if o[1] > o[0]]
            out.append(text[: offsets[limit - 1][1]] if len(offsets) > limit else text)
        return out

    def prompt_tokens(self, model: str, texts: Sequence) -> int:
        counts = self.repo.count_tokens(model, texts)
        return sum(counts) if counts else 0


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway
