"""The export->serve contract: the ``parameters`` of each Python model, one declared type per model.

Export builds these dataclasses and writes them (:meth:`Params.to_parameters`) into the model's
``config.pbtxt``; the adapter parses them back at ``initialize`` (:meth:`Params.parse`). An unknown,
missing or malformed key is a load error that names the key: a repository written by another
version, or a config edited by hand, fails loudly at load instead of serving with a silent default.
Defaults live here, once. Nested groups (an encoder's runtime settings) are written with a prefix.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .reranking import MAX_PASSAGES
from .texts import DEFAULT_MAX_CHARS
from .uie import MAX_TEXT_TOKENS
from .zero_shot import MAX_LABELS

DEFAULT_MAX_BATCH_TOKENS = 16384  # padded tokens per runtime call on a CPU (a GPU takes more: export)
DEFAULT_OVERLAP_BELOW_TOKENS = 512  # CPU batches smaller than this leave the runtime's threads partly idle (runtime.ExclusiveRunner)
DEFAULT_MAX_LENGTH = 512
TOKEN_NAMES = ("INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS")  # a token encoder's inputs


class ParamError(ValueError):
    """A model's parameters do not match its declared type: the model must not load."""


def model_parameters(model_config: str | dict) -> dict[str, str]:
    config = json.loads(model_config) if isinstance(model_config, str) else model_config
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _decode(kind: Any, raw: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is bool:
        if raw.lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return raw.lower() == "true"
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if kind is str:
        return raw
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":  # X | None
        inner = next(a for a in typing.get_args(kind) if a is not type(None))
        return None if raw == "" else _decode(inner, raw)
    if origin is tuple:
        item = typing.get_args(kind)[0]
        return tuple(_decode(item, x.strip()) for x in raw.split(",") if x.strip())
    if kind in (dict, list) or origin in (dict, list):
        value = json.loads(raw)
        if not isinstance(value, origin or kind):
            raise ValueError(f"expected a JSON {(origin or kind).__name__}")
        return value
    raise TypeError(f"no codec for {kind!r}")


@dataclass(frozen=True, kw_only=True)
class Params:
    """Base of the declared parameter types. A field whose type is another :class:`Params` is a
    group, written with ``metadata={"prefix": ...}`` before each of its keys."""

    model: ClassVar[str] = ""  # for messages

    @classmethod
    def _fields(cls) -> list[tuple[dataclasses.Field, Any]]:
        hints = typing.get_type_hints(cls)
        return [(f, hints[f.name]) for f in dataclasses.fields(cls)]

    @classmethod
    def keys(cls, prefix: str = "") -> set[str]:
        out: set[str] = set()
        for f, kind in cls._fields():
            if isinstance(kind, type) and issubclass(kind, Params):
                out |= kind.keys(prefix + f.metadata.get("prefix", ""))
            else:
                out.add(prefix + f.name)
        return out

    def to_parameters(self, prefix: str = "") -> dict[str, str]:
        out: dict[str, str] = {}
        for f, kind in self._fields():
            value = getattr(self, f.name)
            if isinstance(kind, type) and issubclass(kind, Params):
                out.update(value.to_parameters(prefix + f.metadata.get("prefix", "")))
            else:
                out[prefix + f.name] = _encode(value)
        return out

    @classmethod
    def parse(cls, params: dict[str, str], *, model: str = "", strict: bool = True, prefix: str = ""):
        """The typed parameters of a model's config; :class:`ParamError` names the first unknown,
        missing or malformed key."""
        where = f"model {model}: " if model else ""
        if strict:
            unknown = sorted(set(params) - cls.keys(prefix))
            if unknown:
                raise ParamError(f"{where}unknown parameter {unknown[0]!r} (a {cls.__name__} takes "
                                 f"{', '.join(sorted(cls.keys(prefix)))}); re-export the model with this version")
        values = {}
        for f, kind in cls._fields():
            if isinstance(kind, type) and issubclass(kind, Params):
                values[f.name] = kind.parse(params, model=model, strict=False, prefix=prefix + f.metadata.get("prefix", ""))
                continue
            key = prefix + f.name
            if key not in params:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ParamError(f"{where}parameter {key!r} is missing; re-export the model")
                continue
            try:
                values[f.name] = _decode(kind, params[key])
            except (ValueError, TypeError) as exc:
                raise ParamError(f"{where}parameter {key!r} = {params[key]!r} is not a valid {kind}: {exc}") from None
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class RuntimeParams(Params):
    """How an encoder artifact runs (``encoder.encoder_from_params``): the embedded encoder model
    reads them unprefixed; a public model that runs its encoder in process with ``encoder_``."""

    device: str = "auto"
    intra_op_threads: int = 0
    allow_spinning: bool = False
    max_padding: float | None = None  # None: the device's own (encoder_from_params); < 0: unbounded
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    mask_groups: dict = field(default_factory=dict)  # tensor -> its mask input (ragged batching)
    warmup: bool = True
    # > 0: also warm up one batch at the token budget, rows of this many tokens (the checkpoint's
    # maximum length), when the model loads, so a budget the host cannot hold fails at start, not
    # under load (encoder.budget_shape; export sets it for GPUs, --warmup-at-budget elsewhere)
    budget_warmup_length: int = 0
    # ONNX Runtime memory (runtime.OrtRunner): prepacked MatMul weights are a private copy per
    # session (off: every process shares the artifact's memory-mapped weights); the CPU arena
    # keeps the high-water mark of the largest batch (off: a run's activations are given back)
    prepack_weights: bool = False
    memory_arena: bool = False


@dataclass(frozen=True, kw_only=True)
class EncoderModelParams(Params):
    """``triton_models/encoder.py`` (embedded flavour)."""

    artifact: str
    lazy: bool = False  # load on the first request (its public models run the artifact themselves)
    runtime: RuntimeParams = field(default_factory=RuntimeParams, metadata={"prefix": ""})


@dataclass(frozen=True, kw_only=True)
class PipelineParams(Params):
    """``pipelines.TokenPipeline`` models (text_embedding, sentence_similarity, and the ones below)."""

    max_length: int = DEFAULT_MAX_LENGTH
    overlength: str = "truncate"
    max_chars: int = DEFAULT_MAX_CHARS
    pair_truncation: str = "longest_first"
    length_buckets: tuple[int, ...] = ()  # native flavour: rows grouped by padded length
    encoder_model: str
    encoder_max_batch_size: int = 64
    encoder_tensor_names: dict = field(default_factory=dict)  # public -> the encoder model's tensor names
    encoder_in_process: bool = False  # embedded flavour: run the encoder's artifact in this stub
    encoder_artifact: str = ""  # relative to the model repository
    encoder_inputs: tuple[str, ...] = TOKEN_NAMES
    # the instances take turns on the in-process runtime, except CPU batches under this many tokens,
    # which may run beside each other (runtime.ExclusiveRunner; 0: always one at a time)
    encoder_overlap_below_tokens: int = DEFAULT_OVERLAP_BELOW_TOKENS
    encoder: RuntimeParams = field(default_factory=RuntimeParams, metadata={"prefix": "encoder_"})

    def __post_init__(self):
        if self.encoder_in_process and not self.encoder_artifact:
            raise ParamError("parameter 'encoder_artifact' is missing although 'encoder_in_process' is true")


@dataclass(frozen=True, kw_only=True)
class PairClassificationParams(PipelineParams):
    labels: list  # the checkpoint's label names, in logit order


@dataclass(frozen=True, kw_only=True)
class ZeroShotParams(PipelineParams):
    max_labels: int = MAX_LABELS
    entailment_index: int = 0
    contradiction_index: int = 2


@dataclass(frozen=True, kw_only=True)
class RerankingParams(PipelineParams):
    max_passages: int = MAX_PASSAGES
    relevance_index: int = 0  # the logit whose probability is the relevance (reranking.relevance_index)


@dataclass(frozen=True, kw_only=True)
class UieParams(Params):
    """``information_extraction``: two encoder models called through BLS."""

    max_chars: int = DEFAULT_MAX_CHARS
    encoder_model: str
    cross_model: str
    encoder_max_batch_size: int = 64
    encoder_tensor_names: dict = field(default_factory=dict)
    max_text_tokens: int = MAX_TEXT_TOKENS
