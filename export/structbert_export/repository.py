"""Write Triton models into a model repository: encoders (two flavours) and the public Python (BLS)
models in front of them. Every config is derived from the family's spec, so names and dims follow
the artifact."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from structbert_client import api
from structbert_serving.params import DEFAULT_MAX_BATCH_TOKENS, EncoderModelParams, Params, RuntimeParams

from . import pbtxt
from .native import native_encoder_config
from .specs import EncoderSpec, TensorSpec

DEFAULT_LENGTH_BUCKETS = (16, 32, 64, 128, 256, 384, 512)
BLS_INSTANCES = 2


@dataclass
class ServingOptions:
    """Knobs that land in config.pbtxt; defaults fit the 2-core CPU embedded server."""

    flavour: str = "embedded"
    max_batch_size: int = 64
    max_queue_delay_us: int = 2000
    encoder_instances: int = 1
    intra_op_threads: int = 0
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    overlength: str = "truncate"
    max_chars: int = 100_000
    device: str = "auto"
    trt_cache_dir: str = "/trt_cache"
    # overload: a bounded queue on each public model; requests beyond it, or waiting longer than
    # the timeout, are rejected at once (UNAVAILABLE) instead of growing latency without bound
    max_queue_size: int = 256
    queue_timeout_us: int = 30_000_000
    # encoders batch whatever is queued when an instance frees up; their callers (the public BLS
    # models) already merge the rows of a whole dynamic batch into a few large requests
    encoder_queue_delay_us: int = 0
    # embedded flavour: the token pipelines (embedding, similarity, pair, zero-shot) run their
    # encoder's artifact in their own stub instead of calling the encoder model through BLS (one
    # stub round trip and two shared-memory copies less per batch; see loadtest/RESULTS.md)
    encoder_in_process: bool = True
    # two instances, taking turns on the runtime (structbert_serving.runtime.ExclusiveRunner): with a
    # bounded queue, Triton 2.51's batcher hands a batch only to an idle instance and is not woken
    # when a busy one frees up, so with one instance requests that arrive while it computes can
    # sleep up to 500 ms (see compute_admission_batching; measured in loadtest/RESULTS.md)
    in_process_instances: int = 2
    # a model that computes batches what queued while it was busy: waiting for more only adds latency
    in_process_queue_delay_us: int = 0
    # memory (structbert_serving.runtime.OrtRunner): off = every process shares the artifact's
    # memory-mapped weights, and a run's activations are given back after it
    prepack_weights: bool = False
    memory_arena: bool = False
    # warm up one batch at the token budget at load (an out-of-memory shows at start); None: on a GPU
    warmup_at_budget: bool | None = None

    def budget_warmup(self, device: str) -> bool:
        return device == "cuda" if self.warmup_at_budget is None else self.warmup_at_budget


def admission_batching(opts: ServingOptions) -> dict:
    """A public model's dynamic batching, with the admission control of the whole pipeline: a bounded
    queue and a queue timeout, both refused with UNAVAILABLE at once."""
    return {"max_queue_delay_microseconds": opts.max_queue_delay_us,
            "default_queue_policy": {"timeout_action": "REJECT", "default_timeout_microseconds": opts.queue_timeout_us,
                                     "allow_timeout_override": True, "max_queue_size": opts.max_queue_size}}


def compute_admission_batching(opts: ServingOptions) -> dict:
    """Admission control of a public model that computes itself (embedded flavour, encoder in
    process): a bounded queue only (a full queue refuses at once with UNAVAILABLE), **no queue
    timeout**; clients bound their own wait (the SDK's ``timeout_s``).

    Why it needs two instances (``in_process_instances``): in Triton 2.51 (core r24.10,
    ``dynamic_batch_scheduler.cc``) any ``default_queue_policy`` turns off payload prefetching, so
    the batcher forms a batch only while an instance is idle, and nothing wakes it when a busy
    instance frees up (``RateLimiter::DequeuePayload`` does not notify it): requests that arrived
    meanwhile wait for the next arrival or the batcher's 500 ms timeout. A second instance is idle
    while the first computes (text_embedding, MiniLM, 8 clients: 47 texts/s with one instance,
    79 with two, 73 without any policy; loadtest/RESULTS.md)."""
    return {"max_queue_delay_microseconds": opts.in_process_queue_delay_us,
            "default_queue_policy": {"max_queue_size": opts.max_queue_size}}


def encoder_batching(opts: ServingOptions) -> dict:
    """An internal encoder's dynamic batching: no queue policy. Its only callers are the public BLS
    models, whose instances bound how many requests can wait here; and in Triton 2.51 any
    ``default_queue_policy`` leaves the batcher asleep for up to 500 ms after an instance frees up
    while requests wait (measured: 64-row requests from 2 clients, 1,650-2,070 rows/s with a
    policy, 4,500 without; see loadtest/RESULTS.md)."""
    return {"max_queue_delay_microseconds": opts.encoder_queue_delay_us}


def python_model_source(name: str) -> str:
    return (resources.files("structbert_serving") / "triton_models" / f"{name}.py").read_text()


def copy_python_model(model_dir: Path, adapter: str) -> Path:
    version = model_dir / "1"
    version.mkdir(parents=True, exist_ok=True)
    target = version / "model.py"
    target.write_text(python_model_source(adapter))
    return version


def _tensors(specs: tuple[TensorSpec, ...], sizes: dict[str, int], names: dict[str, str], **extra) -> list[dict]:
    return [pbtxt.tensor(names.get(t.name, t.name), t.dtype, t.resolve(sizes), **extra) for t in specs]


# On a GPU, batching is what pays: rows per encoder execution and padded tokens per runtime call
# (in-process on an H100, pair-classification-large peaked at batches of 512-1024 rows; see
# loadtest/RESULTS.md). Native encoders keep the spec's limits: TensorRT profiles are sized to them.
GPU_ENCODER_ROWS = 1024
GPU_BATCH_TOKENS = 1 << 18


def encoder_max_batch_size(spec: EncoderSpec, opts: ServingOptions) -> int:
    """Rows per encoder execution: fan-out families (zero-shot) need more than a request's limit,
    and an embedded encoder on a GPU takes large batches."""
    rows = max(spec.max_batch_size, opts.max_batch_size)
    if opts.device == "cuda" and opts.flavour == "embedded":
        rows = max(rows, GPU_ENCODER_ROWS)
    return rows


def encoder_config(spec: EncoderSpec, sizes: dict[str, int], artifact: Path, precision: str,
                   opts: ServingOptions, device: str | None = None) -> tuple[dict, dict[str, str]]:
    """The encoder's config and the tensor-name map its BLS callers must use (public names in both
    flavours). ``device``: where the artifact must run (a TorchScript trace's device), default
    ``opts.device``; the native flavour's encoders are ``native.native_encoder_config``."""
    device = device or opts.device
    max_batch = encoder_max_batch_size(spec, opts)
    base = {"name": spec.triton_name, "max_batch_size": max_batch,
            "dynamic_batching": encoder_batching(opts)}
    names = {t.name: t.name for t in (*spec.inputs, *spec.outputs)}
    if opts.flavour == "embedded":
        config = {
            **base, "backend": "python",
            # ragged: requests of different sequence lengths batch together; the model pads per chunk
            "input": _tensors(spec.inputs, sizes, names, allow_ragged_batch=True),
            "output": _tensors(spec.outputs, sizes, names),
            "instance_group": [{"kind": "KIND_CPU", "count": opts.encoder_instances}],
            "parameters": pbtxt.parameters(EncoderModelParams(
                artifact=artifact.name,
                # its public models run the artifact themselves: load it only if called directly
                lazy=runs_in_public_model(spec, opts),
                runtime=RuntimeParams(
                    device=device, intra_op_threads=opts.intra_op_threads, mask_groups=spec.mask_groups(),
                    max_batch_tokens=max(opts.max_batch_tokens, GPU_BATCH_TOKENS) if device == "cuda"
                    else opts.max_batch_tokens,
                    prepack_weights=opts.prepack_weights, memory_arena=opts.memory_arena,
                    budget_warmup_length=int(sizes["max_length"]) if opts.budget_warmup(device) else 0),
            ).to_parameters()),
        }
        return config, names
    config = {**base, "input": _tensors(spec.inputs, sizes, names), "output": _tensors(spec.outputs, sizes, names),
              **native_encoder_config(spec, sizes, artifact, precision, device=device,
                                      instances=opts.encoder_instances, intra_op_threads=opts.intra_op_threads,
                                      max_batch=max_batch, trt_cache_dir=opts.trt_cache_dir,
                                      memory_arena=opts.memory_arena)}
    return config, names


def tokenizer_params(max_length: int, opts: ServingOptions, pair_truncation: str = "longest_first") -> dict:
    """The tokenisation fields of a pipeline's parameters (``PipelineParams``; ``TextTokenizer``'s
    arguments)."""
    params = {"max_length": max_length, "overlength": opts.overlength, "max_chars": opts.max_chars,
              "pair_truncation": pair_truncation}
    if opts.flavour == "native":
        # a native encoder batches only equal shapes: rows are grouped by length bucket
        params["length_buckets"] = (*(b for b in DEFAULT_LENGTH_BUCKETS if b < max_length), max_length)
    return params


def encoder_params(spec: EncoderSpec, names: dict[str, str], opts: ServingOptions) -> dict:
    """How a BLS model reaches its encoder: model name, rows per request, tensor names."""
    return {"encoder_model": spec.triton_name, "encoder_max_batch_size": encoder_max_batch_size(spec, opts),
            "encoder_tensor_names": dict(names)}


def runs_in_public_model(spec: EncoderSpec, opts: ServingOptions) -> bool:
    """Embedded flavour: do the family's public models run this encoder's artifact themselves?
    Not on a GPU: every process that touches CUDA holds its own context (0.5-0.6 GB) and its own
    device copy of the weights, so there the public models call the one encoder model (BLS)."""
    from structbert_registry.families import family_of_encoder

    return (opts.flavour == "embedded" and opts.encoder_in_process and opts.device != "cuda"
            and family_of_encoder(spec.family).in_process)


def in_process_params(out: Path, spec: EncoderSpec, opts: ServingOptions) -> dict:
    """Embedded flavour: the fields with which a public model runs its encoder's artifact in its own
    stub, read back from the encoder's config just written (one source: the same runtime settings)."""
    if not runs_in_public_model(spec, opts):
        return {}
    config = pbtxt.parse((out / spec.triton_name / "config.pbtxt").read_text())
    encoder = EncoderModelParams.parse({k: v.string_value for k, v in config.parameters.items()},
                                       model=spec.triton_name)
    return {"encoder_in_process": True, "encoder_artifact": f"{spec.triton_name}/1/{encoder.artifact}",
            "encoder_inputs": tuple(spec.input_names), "encoder": encoder.runtime}


def public_tensors(model: api.PublicModel, sizes: dict[str, int] | None = None) -> tuple[list[dict], list[dict]]:
    """A public model's inputs and outputs as the wire API (``structbert_client.api``) declares them;
    named dims (``hidden``, ``labels``) resolved from the checkpoint's ``sizes``."""
    def render(t: api.Tensor) -> dict:
        dims = [d if isinstance(d, int) else int((sizes or {})[d]) for d in t.dims]
        extra = {"optional": True} if t.optional else {}
        if t.ragged:
            extra["allow_ragged_batch"] = True
        return pbtxt.tensor(t.name, t.datatype, dims, **extra)
    return [render(t) for t in model.input_tensors], [render(t) for t in model.output_tensors]


def python_model(out: Path, name: str, *, inputs: list[dict], outputs: list[dict],
                 opts: ServingOptions, params: Params, tokenizer: Callable[[Path], object] | None = None,
                 instances: int = BLS_INSTANCES) -> list[str]:
    """Write a public Python-backend model: ``<out>/<name>/config.pbtxt`` and ``1/model.py`` (the
    adapter ``structbert_serving/triton_models/<name>.py``), plus ``1/tokenizer.json`` through ``tokenizer(path)``. Its bounded queue (REJECT) is
    where overload is refused. Several instances: one waiting on its encoder must not serialise the
    others (BLS calls block an instance in the non-decoupled Python backend)."""
    batching = admission_batching(opts)
    if getattr(params, "encoder_in_process", False):  # it computes itself: each instance holds a runtime session
        instances = opts.in_process_instances
        batching = compute_admission_batching(opts)
    model_dir = out / name
    version = copy_python_model(model_dir, name)
    if tokenizer is not None:
        tokenizer(version / "tokenizer.json")
    pbtxt.write(model_dir, {
        "name": name, "backend": "python", "max_batch_size": opts.max_batch_size,
        "input": inputs, "output": outputs,
        "instance_group": [{"kind": "KIND_CPU", "count": instances}],
        "dynamic_batching": batching,
        "parameters": pbtxt.parameters(params.to_parameters()),
    })
    return [name]


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
