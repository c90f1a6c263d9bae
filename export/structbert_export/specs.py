"""One declarative spec per model family.

Export, validation and the Triton ``config.pbtxt`` of each encoder all read the same spec, so tensor
names, dims and tolerances cannot drift apart (optimum's ``OnnxConfig`` habit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Symbolic dims: "batch" and "sequence" are dynamic; others are resolved from the checkpoint config.
DYNAMIC = ("batch", "sequence")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: int64, float32, bool, bytes
    dims: tuple[str | int, ...]  # including the leading "batch" dim

    def resolve(self, sizes: dict[str, int]) -> list[int]:
        """Concrete dims without the batch dim, as Triton wants them (-1 for dynamic)."""
        out = []
        for dim in self.dims[1:]:
            if isinstance(dim, int):
                out.append(dim)
            elif dim in DYNAMIC:
                out.append(-1)
            else:
                out.append(int(sizes[dim]))
        return out


@dataclass(frozen=True)
class Tolerance:
    """Per-precision acceptance: a miss is an export error, never a warning."""

    max_abs_diff: float | None
    min_cosine: float
    min_argmax_agreement: float | None = None


@dataclass(frozen=True)
class EncoderSpec:
    family: str
    triton_name: str  # name of the encoder model in the repository
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tolerances: dict[str, Tolerance]
    opset: int = 17
    max_batch_size: int = 64
    # (batch, sequence) pairs checked by validation; deliberately not the trace shape (2, 16).
    validation_shapes: tuple[tuple[int, int], ...] = field(
        default=((1, 7), (1, 128), (3, 33), (3, 128), (8, 7), (8, 33))
    )
    trace_shape: tuple[int, int] = (2, 16)
    # pair families draw token types 0/1; single-sequence families use all-zero token types
    pair_input: bool = False

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes: dict[str, dict[int, str]] = {}
        for tensor in (*self.inputs, *self.outputs):
            axes[tensor.name] = {i: d for i, d in enumerate(tensor.dims) if d in DYNAMIC}
        return axes


TOKEN_INPUTS = (
    TensorSpec("INPUT_IDS", "int64", ("batch", "sequence")),
    TensorSpec("ATTENTION_MASK", "int64", ("batch", "sequence")),
    TensorSpec("TOKEN_TYPE_IDS", "int64", ("batch", "sequence")),
)

EMBEDDING = EncoderSpec(
    family="embedding",
    triton_name="embedding_encoder",
    inputs=TOKEN_INPUTS,
    # mean pooling over the attention mask (in float32) and L2 normalisation are part of the graph
    outputs=(TensorSpec("EMBEDDING", "float32", ("batch", "hidden")),),
    tolerances={
        "fp32": Tolerance(max_abs_diff=1e-4, min_cosine=0.99999),
        "fp16": Tolerance(max_abs_diff=2e-2, min_cosine=0.999),
        "int8": Tolerance(max_abs_diff=None, min_cosine=0.97),
    },
)

_CLASSIFIER_TOLERANCES = {
    "fp32": Tolerance(max_abs_diff=1e-4, min_cosine=0.99999, min_argmax_agreement=1.0),
    "fp16": Tolerance(max_abs_diff=5e-2, min_cosine=0.999, min_argmax_agreement=0.95),
    "int8": Tolerance(max_abs_diff=None, min_cosine=0.95, min_argmax_agreement=0.8),
}

# Sentence-pair classifiers: encoder + pooler (dense+tanh on [CLS]) + classifier -> logits.
PAIR_CLASSIFICATION = EncoderSpec(
    family="pair-classification",
    triton_name="pair_classifier",
    inputs=TOKEN_INPUTS,
    outputs=(TensorSpec("LOGITS", "float32", ("batch", "labels")),),
    tolerances=_CLASSIFIER_TOLERANCES,
    pair_input=True,
)
ZERO_SHOT = EncoderSpec(
    family="zero-shot",
    triton_name="zero_shot_classifier",
    inputs=TOKEN_INPUTS,
    outputs=(TensorSpec("LOGITS", "float32", ("batch", "labels")),),
    tolerances=_CLASSIFIER_TOLERANCES,
    pair_input=True,
    max_batch_size=128,  # a request fans out into one pair per candidate label
)

SPECS: dict[str, EncoderSpec] = {spec.family: spec for spec in (EMBEDDING, PAIR_CLASSIFICATION, ZERO_SHOT)}
# outputs whose argmax is a prediction: validation reports argmax agreement for them
CLASSIFY_OUTPUTS = ("LOGITS",)


def spec_for(family: str) -> EncoderSpec:
    try:
        return SPECS[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(SPECS)}") from None
