"""Request and response bodies of every route (pydantic; FastAPI turns them into the OpenAPI document).

Shapes follow the APIs they imitate: OpenAI's embeddings and models, text-embeddings-inference's
``/embed``, ``/rerank``, ``/similarity``, ``/predict`` and ``/info``, Cohere/Jina's ``/v1/rerank``,
Cohere's ``/v1/embed``, ``/v2/embed`` and ``/v2/rerank`` in :mod:`structbert_gateway.schemas_cohere`;
``/v1/classify`` and ``/v1/extract`` are this project's own. Unknown fields are ignored, as the
clients of those APIs may send more than this server reads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- errors -------------------------------------------------------------------------------------------

class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


class TEIError(BaseModel):
    error: str
    error_type: str


# -- OpenAI -------------------------------------------------------------------------------------------

class EmbeddingsRequest(_Body):
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text or a list of texts (token-id input is refused: send text)",
        examples=["这家酒店的早餐很好吃"])
    model: str | None = Field(None, description="`text_embedding` (the default), see GET /v1/models")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`base64`: each vector as little-endian float32 bytes, base64-encoded")
    dimensions: int | None = Field(None, description="Refused unless it equals the model's dimension")
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "structbert-triton"
    checkpoint: str | None = Field(None, description="the checkpoint exported (hub id@revision, folder or synthetic)")
    synthetic: bool | None = Field(None, description="true: random weights, the answers carry no meaning")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- text-embeddings-inference --------------------------------------------------------------------

TruncationDirection = Literal["right", "left", "Right", "Left"]


class EmbedRequest(_Body):
    inputs: str | list[str] | list[int] | list[list[int]] = Field(examples=["这家酒店的早餐很好吃"])
    normalize: bool = Field(True, description="Embeddings are L2-normalised by the model: false is refused")
    truncate: bool | None = Field(
        None, description="Absent: the server's policy (truncate unless exported with --overlength reject); "
                          "false: over-long inputs are refused (413); true: truncated, if the server truncates")
    truncation_direction: TruncationDirection = "right"
    prompt_name: str | None = None


class RerankRequest(_Body):
    query: str
    texts: list[str]
    raw_scores: bool = Field(False, description="true: log(P(1)/P(0)), the logit whose sigmoid is the score")
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "right"


class Rank(BaseModel):
    index: int
    score: float
    text: str | None = None


class SimilarityInput(BaseModel):
    source_sentence: str
    sentences: list[str]


class SimilarityParameters(_Body):
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "right"
    prompt_name: str | None = None


class SimilarityRequest(_Body):
    inputs: SimilarityInput
    parameters: SimilarityParameters | None = None


class PredictRequest(_Body):
    inputs: str | list[str] | list[list[str]] = Field(
        description="A pair of texts [a, b], or a batch of pairs [[a, b], ...] (the pair classifier needs pairs)",
        examples=[["今天天气很好", "今天天气不错"]])
    raw_scores: bool = Field(False, description="Raw logits are not available from this server: true is refused")
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "right"


class Prediction(BaseModel):
    score: float
    label: str


class ClassifierModel(BaseModel):
    id2label: dict[str, str]
    label2id: dict[str, int]


class Info(BaseModel):
    model_id: str
    model_sha: str | None = None
    model_dtype: str
    model_type: dict[str, Any]
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None = None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    version: str
    served_models: list[str] = Field(default_factory=list, description="this server's public Triton models")
    synthetic: bool | None = Field(None, description="model_id is a random-weight (synthetic) checkpoint")
    synthetic_models: list[str] = Field(default_factory=list,
                                        description="served models whose weights are random (answers mean nothing)")


# -- Cohere / Jina rerank -----------------------------------------------------------------------------

class DocumentText(BaseModel):
    text: str


class CohereRerankRequest(_Body):
    query: str
    documents: list[str | DocumentText]
    model: str | None = None
    top_n: int | None = Field(None, ge=1, description="Return only the best n (all by default)")
    return_documents: bool = False


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: DocumentText | None = None


class RerankUsage(BaseModel):
    total_tokens: int


class CohereRerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage


# -- every model's own root (/models/{model}, Hugging Face's inference API bodies) ---------------------

class HFClassificationParameters(_Body):
    top_k: int | None = Field(None, ge=1, description="Only the k best labels")
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = Field(
        None, description="softmax (the default) only: the server returns probabilities")


class HFTextClassificationRequest(_Body):
    inputs: str | list[str] = Field(examples=["这家酒店的服务很周到，下次还来"])
    parameters: HFClassificationParameters | None = None
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "right"


class HFZeroShotParameters(_Body):
    candidate_labels: list[str] = Field(examples=[["手机", "水果", "书籍"]])
    multi_label: bool | None = False
    hypothesis_template: str | None = Field(None, examples=["这篇文章的标题是{}"])


class HFZeroShotRequest(_Body):
    inputs: str = Field(examples=["这款手机拍照效果很好，电池也耐用"])
    parameters: HFZeroShotParameters


class HFLabelScore(BaseModel):
    label: str
    score: float


class HFExtractParameters(_Body):
    schema_: dict[str, Any] = Field(alias="schema", examples=[{"人物": None, "组织机构": None}])
    output_all_prefix: bool = False


class HFExtractRequest(_Body):
    inputs: str | list[str] = Field(examples=["谷口清太郎是名古屋铁道会长"])
    parameters: HFExtractParameters


# -- this project's own -------------------------------------------------------------------------------

class ClassifyRequest(_Body):
    texts: str | list[str] = Field(examples=["这款手机拍照效果很好，电池也耐用"])
    labels: list[str] | str = Field(description="Candidate labels: a list, or one string separated by , or ，",
                                          examples=[["手机", "水果", "书籍"]])
    multi_label: bool = False
    hypothesis_template: str = Field("{}", examples=["这篇文章的标题是{}"])
    model: str | None = None


class Classification(BaseModel):
    index: int
    labels: list[str]
    scores: list[float]


class ClassifyResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[Classification]


class ExtractRequest(_Body):
    texts: str | list[str]
    schema_: dict[str, Any] = Field(alias="schema", description='e.g. {"人物": {"任职": null}, "组织机构": null}',
                                    examples=[{"人物": None, "组织机构": None}])
    output_all_prefix: bool = False
    model: str | None = None


class Span(BaseModel):
    type: str
    span: str
    offset: list[int]


class Extraction(BaseModel):
    index: int
    paths: list[list[Span]]


class ExtractResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[Extraction]
