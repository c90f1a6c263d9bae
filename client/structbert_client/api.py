"""The wire API in one place: the public models and their tensors. The SDK, the exporter that writes
the models' configs, the Python-backend adapters, the gateway, the load tools and the tests all
read tensor names, types and dims from here (no other module spells a public tensor name)."""

from __future__ import annotations

from dataclasses import dataclass

# -- tensor names -----------------------------------------------------------------------------------
TEXT = "TEXT"
TEXT_A = "TEXT_A"
TEXT_B = "TEXT_B"
LABELS = "LABELS"  # zero-shot: the candidate labels in; pair and text classification: the label names out
HYPOTHESIS_TEMPLATE = "HYPOTHESIS_TEMPLATE"
MULTI_LABEL = "MULTI_LABEL"
SCHEMA = "SCHEMA"
OUTPUT_ALL_PREFIX = "OUTPUT_ALL_PREFIX"
QUERY = "QUERY"
PASSAGES = "PASSAGES"
TOP_N = "TOP_N"
EMBEDDING = "EMBEDDING"
SCORE = "SCORE"
PROBS = "PROBS"
RESULT = "RESULT"
SCORES = "SCORES"
RAW_SCORES = "RAW_SCORES"
ORDER = "ORDER"


@dataclass(frozen=True)
class Tensor:
    """One tensor of a public model, as its ``config.pbtxt`` declares it (without the batch dim).
    ``dims``: ints, -1 for a variable dim, or a name export resolves from the checkpoint
    (``hidden``: its hidden size, ``labels``: its number of labels)."""

    name: str
    datatype: str  # Triton's: BYTES, BOOL, FP32, INT32
    dims: tuple[int | str, ...] = (1,)
    optional: bool = False
    ragged: bool = False  # requests with different sizes along a -1 dim still batch together


@dataclass(frozen=True)
class PublicModel:
    name: str
    input_tensors: tuple[Tensor, ...]
    output_tensors: tuple[Tensor, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        """The inputs every request must send."""
        return tuple(t.name for t in self.input_tensors if not t.optional)

    @property
    def optional_inputs(self) -> tuple[tuple[str, str], ...]:
        """(name, Triton datatype) of the inputs a request may leave out."""
        return tuple((t.name, t.datatype) for t in self.input_tensors if t.optional)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.output_tensors)


def _text(name: str) -> Tensor:
    return Tensor(name, "BYTES")


TEXT_EMBEDDING = PublicModel("text_embedding", (_text(TEXT),), (Tensor(EMBEDDING, "FP32", ("hidden",)),))
SENTENCE_SIMILARITY = PublicModel("sentence_similarity", (_text(TEXT_A), _text(TEXT_B)), (Tensor(SCORE, "FP32"),))
PAIR_CLASSIFICATION = PublicModel("pair_classification", (_text(TEXT_A), _text(TEXT_B)),
                                  (Tensor(PROBS, "FP32", ("labels",)), Tensor(LABELS, "BYTES", ("labels",))))
# one text per row (e.g. sentiment): every label's probability and the label names, in logit order
TEXT_CLASSIFICATION = PublicModel("text_classification", (_text(TEXT),),
                                  (Tensor(PROBS, "FP32", ("labels",)), Tensor(LABELS, "BYTES", ("labels",))))
ZERO_SHOT_CLASSIFICATION = PublicModel(
    "zero_shot_classification",
    (_text(TEXT), _text(LABELS), Tensor(HYPOTHESIS_TEMPLATE, "BYTES", optional=True),
     Tensor(MULTI_LABEL, "BOOL", optional=True)),
    (_text(RESULT),))
INFORMATION_EXTRACTION = PublicModel(
    "information_extraction", (_text(TEXT), _text(SCHEMA), Tensor(OUTPUT_ALL_PREFIX, "BOOL", optional=True)),
    (_text(RESULT),))
# one query per row and its N passages; out: the passages' relevance (input order), the raw score
# (logit, or log-odds of the relevant label), and the passage indices best first (top_n of them)
RERANKING = PublicModel(
    "reranking",
    (_text(QUERY), Tensor(PASSAGES, "BYTES", (-1,), ragged=True), Tensor(TOP_N, "INT32", optional=True)),
    (Tensor(SCORES, "FP32", (-1,)), Tensor(RAW_SCORES, "FP32", (-1,)), Tensor(ORDER, "INT32", (-1,))))

PUBLIC_MODELS: dict[str, PublicModel] = {m.name: m for m in (
    TEXT_EMBEDDING, SENTENCE_SIMILARITY, PAIR_CLASSIFICATION, ZERO_SHOT_CLASSIFICATION, INFORMATION_EXTRACTION,
    RERANKING, TEXT_CLASSIFICATION)}
