"""Cohere's request and response bodies (``/v1/embed``, ``/v2/embed``, ``/v2/rerank``), as its SDK's
own types (``cohere.types``, ``cohere.v2.types``) declare them, so both SDK generations parse the
answers. Unknown fields are ignored."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .schemas import _Body

# -- Cohere embed (v1, v2) and rerank (v2) ----------------------------------------------------------

CohereEmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]
CohereInputType = Literal["search_document", "search_query", "classification", "clustering", "image"]


class CohereEmbedRequest(_Body):
    texts: list[str] | None = Field(None, description="The texts to embed (images are not supported)",
                                    examples=[["今天天气很好", "这家酒店的早餐很好吃"]])
    images: list[str] | None = Field(None, description="Refused: this server embeds text only")
    model: str | None = Field(None, description="`text_embedding` (the default), see GET /v1/models")
    input_type: CohereInputType | None = Field(
        None, description="Accepted and ignored (the model has no query/document prompts); `image` is refused")
    embedding_types: list[CohereEmbeddingType] | None = Field(
        None, description="int8/uint8: fixed scale of the L2-normalised vector (x*127, (x+1)*127.5); "
                          "binary/ubinary: sign bits packed 8 to a byte; base64: little-endian float32")
    truncate: Literal["NONE", "START", "END"] | None = Field(
        None, description="END (or absent): the server's policy; NONE: over-long texts are refused; START is refused")


class CohereEmbedV2Request(CohereEmbedRequest):
    inputs: list[dict[str, Any]] | None = Field(None, description="Refused: send `texts`")
    max_tokens: int | None = Field(None, ge=1, description="Each text is cut to this many tokens")
    output_dimension: int | None = Field(None, description="Refused unless it equals the model's dimension")
    priority: int | None = None


class CohereBilledUnits(BaseModel):
    input_tokens: float | None = None
    search_units: float | None = None


class CohereApiVersion(BaseModel):
    version: str


class CohereMeta(BaseModel):
    api_version: CohereApiVersion
    billed_units: CohereBilledUnits | None = None
    warnings: list[str] | None = None


class CohereEmbeddingsByType(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    float_: list[list[float]] | None = Field(None, alias="float")
    int8: list[list[int]] | None = None
    uint8: list[list[int]] | None = None
    binary: list[list[int]] | None = None
    ubinary: list[list[int]] | None = None
    base64: list[str] | None = None


class CohereEmbedResponse(BaseModel):
    """v1 without ``embedding_types``: ``embeddings_floats``; v1 with them, and v2: ``embeddings_by_type``."""

    response_type: Literal["embeddings_floats", "embeddings_by_type"]
    id: str
    embeddings: list[list[float]] | CohereEmbeddingsByType
    texts: list[str]
    meta: CohereMeta


class CohereRerankV2Request(_Body):
    query: str
    documents: list[str]
    model: str | None = Field(None, description="`reranking` (the default)")
    top_n: int | None = Field(None, ge=1, description="Return only the best n (all by default)")
    max_tokens_per_doc: int | None = Field(None, ge=1, description="Each document is cut to this many tokens "
                                                                    "(Cohere's default: 4096)")
    priority: int | None = None


class CohereRerankV2Result(BaseModel):
    index: int
    relevance_score: float


class CohereRerankV2Response(BaseModel):
    id: str
    results: list[CohereRerankV2Result]
    meta: CohereMeta


class CohereError(BaseModel):
    message: str
