"""One declarative spec per model family.

Export, validation and the Triton ``config.pbtxt`` of each encoder all read the same spec, so tensor
names, dims and tolerances cannot drift apart (optimum's ``OnnxConfig`` habit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from structbert_client import api

# Symbolic dims: "batch" and "sequence" are dynamic; others are resolved from the checkpoint config.
DYNAMIC = ("batch", "sequence", "hint_sequence")


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
    # on held-out real text (calibration_data/, validation split), each row alone and in padded
    # batches; None: not checked for this precision. See validation.validate_real_text.
    real: RealTextTolerance | None = None


@dataclass(frozen=True)
class RealTextTolerance:
    """INT8 on real text: fidelity to PyTorch FP32 and independence of the batch.

    ``decision_margin``: rows (classifiers: top-1 minus top-2 logit) or positions (UIE pointers:
    distance of the logit from the 0.5 threshold) closer than this in FP32 are near ties, left out
    of the agreement (and counted in the report)."""

    mean_cosine: float
    min_cosine: float
    # min cosine of a row alone vs the same row in a padded batch; UIE pointers: every clear decision
    # the same instead (validation.validate_real_text)
    batch_invariance: float = 0.99999
    min_agreement: float | None = None  # argmax (classifiers) or pointer (UIE) agreement, non-ties
    decision_margin: float = 0.0


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
    # what validation feeds the graph: "tokens" (ids, masks, types[, positions]) or "uie-cross"
    example_kind: str = "tokens"
    # the PyTorch module export traces (modules.BUILDERS), i.e. the checkpoint head it needs
    module: str = "classifier"

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def mask_groups(self) -> dict[str, str]:
        """Tensor name -> the mask input giving its true length along dim 1 (for ragged batching).
        Tensors without a sequence dim (pooled outputs, logits per label) are left out."""
        masks = {t.dims[1]: t.name for t in self.inputs if t.name.endswith("MASK") and len(t.dims) > 1}
        return {t.name: masks[t.dims[1]] for t in (*self.inputs, *self.outputs)
                if len(t.dims) > 1 and t.dims[1] in masks}

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
    outputs=(TensorSpec(api.EMBEDDING, "float32", ("batch", "hidden")),),
    tolerances={
        "fp32": Tolerance(max_abs_diff=1e-4, min_cosine=0.99999),
        "fp16": Tolerance(max_abs_diff=2e-2, min_cosine=0.999),
        "int8": Tolerance(max_abs_diff=None, min_cosine=0.97, real=RealTextTolerance(mean_cosine=0.995, min_cosine=0.99)),
    },
    module="mean-pooled",
)

_CLASSIFIER_TOLERANCES = {
    "fp32": Tolerance(max_abs_diff=1e-4, min_cosine=0.99999, min_argmax_agreement=1.0),
    "fp16": Tolerance(max_abs_diff=5e-2, min_cosine=0.999, min_argmax_agreement=0.95),
    "int8": Tolerance(max_abs_diff=None, min_cosine=0.95, min_argmax_agreement=0.8,
                      real=RealTextTolerance(mean_cosine=0.99, min_cosine=0.95, min_agreement=0.95, decision_margin=0.1)),
}



def _classifier(family: str, triton_name: str, *, pair_input: bool = False, **extra) -> EncoderSpec:
    """A token classifier: encoder + pooler (dense+tanh on [CLS]) + classifier -> logits."""
    return EncoderSpec(family=family, triton_name=triton_name, inputs=TOKEN_INPUTS,
                       outputs=(TensorSpec("LOGITS", "float32", ("batch", "labels")),),
                       tolerances=_CLASSIFIER_TOLERANCES, pair_input=pair_input, **extra)


# Sentence-pair classifiers: [CLS] a [SEP] b [SEP].
PAIR_CLASSIFICATION = _classifier("pair-classification", "pair_classifier", pair_input=True)
# Single-text classifiers (e.g. sentiment): the same graph over [CLS] text [SEP].
TEXT_CLASSIFICATION = _classifier("text-classification", "text_classifier")
# a request fans out into one pair per candidate label
ZERO_SHOT = _classifier("zero-shot", "zero_shot_classifier", pair_input=True, max_batch_size=128)
# Cross-encoder rerankers: the same classifier graph (1 logit, or the pair classifier's labels); a
# request fans out into one pair per passage
RERANKING = _classifier("reranking", "reranker", pair_input=True, max_batch_size=128)

_HIDDEN_TOLERANCES = {
    "fp32": Tolerance(max_abs_diff=1e-3, min_cosine=0.99999),
    "fp16": Tolerance(max_abs_diff=5e-2, min_cosine=0.999),
    "int8": Tolerance(max_abs_diff=None, min_cosine=0.95, real=RealTextTolerance(mean_cosine=0.995, min_cosine=0.99)),
}

# SiameseUIE, split in two: embeddings + the first L-6 layers (text windows and hints) ...
UIE_ENCODER = EncoderSpec(
    family="uie-encoder",
    triton_name="uie_encoder",
    inputs=(*TOKEN_INPUTS, TensorSpec("POSITION_IDS", "int64", ("batch", "sequence"))),
    outputs=(TensorSpec("HIDDEN", "float32", ("batch", "sequence", "hidden")),),
    tolerances=_HIDDEN_TOLERANCES,
    max_batch_size=128,
    module="uie-encoder",
)
# ... and the last 6 layers over [window ; hint] with the joint mask, then head/tail pointers.
UIE_CROSS = EncoderSpec(
    family="uie-cross",
    triton_name="uie_cross",
    inputs=(
        TensorSpec("TEXT_HIDDEN", "float32", ("batch", "sequence", "hidden")),
        TensorSpec("TEXT_MASK", "int64", ("batch", "sequence")),
        TensorSpec("HINT_HIDDEN", "float32", ("batch", "hint_sequence", "hidden")),
        TensorSpec("HINT_MASK", "int64", ("batch", "hint_sequence")),
    ),
    outputs=(TensorSpec("HEAD_LOGITS", "float32", ("batch", "sequence")),
             TensorSpec("TAIL_LOGITS", "float32", ("batch", "sequence"))),
    tolerances={
        "fp32": Tolerance(max_abs_diff=1e-3, min_cosine=0.99999),
        "fp16": Tolerance(max_abs_diff=1e-1, min_cosine=0.999),
        "int8": Tolerance(max_abs_diff=None, min_cosine=0.95, real=RealTextTolerance(
            mean_cosine=0.99, min_cosine=0.95, min_agreement=0.98, decision_margin=0.1)),
    },
    max_batch_size=128,
    example_kind="uie-cross",
    module="uie-cross",
)

SPECS: dict[str, EncoderSpec] = {
    spec.family: spec for spec in (EMBEDDING, PAIR_CLASSIFICATION, TEXT_CLASSIFICATION, ZERO_SHOT, RERANKING,
                                   UIE_ENCODER, UIE_CROSS)
}
# outputs whose argmax is a prediction: validation reports argmax agreement for them
CLASSIFY_OUTPUTS = ("LOGITS",)


def spec_for(family: str) -> EncoderSpec:
    try:
        return SPECS[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(SPECS)}") from None
