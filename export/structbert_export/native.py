"""Native-flavour encoders: configs for the onnxruntime backend of the nvcr.io container.

``--device cpu``: ``KIND_CPU`` instances, ONNX Runtime's CPU provider with the session options
(threads, execution mode) as the backend's model ``parameters``. ``--device cuda``: ``KIND_GPU``
instances; the FP32 graph goes to the TensorRT accelerator (FP16 engines, one engine cache per model
and artifact), the FP16 graph (ORT-fused contrib ops TensorRT cannot parse) to the CUDA provider.
``--device auto``: the container's production host is a GPU host, so ``cuda`` for FP32/FP16 and
``cpu`` for INT8 (an ONNX Runtime CPU artifact); the choice is logged and recorded in export.json.

Keys and their meaning: triton-inference-server/onnxruntime_backend ``src/onnxruntime.cc``
(``ModelState::ModelState`` reads the session options, ``LoadModel`` the TensorRT accelerator's
allowlisted keys; an unknown key fails the load), the same in r24.10 and in the container release's
backend (r26.06/main; tests/contract/release_sources.py holds the lists the contract tier checks).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from structbert_serving.runtime import weights_file
from structbert_serving.uie import HINT_MAX_TOKENS

from . import pbtxt
from .specs import EncoderSpec

log = logging.getLogger(__name__)

# opt point of a TensorRT profile (rows, tokens); min is 1 for every dynamic dim
OPT_ROWS = 16
OPT_TOKENS = 128
# warm-up at load: ORT allocates its arenas and TensorRT builds its engines before the model is ready
WARMUP_TOKENS = 16


class OptionError(ValueError):
    """An export option combination that cannot give a working repository (refused before writing)."""


def native_device(precision: str, requested: str) -> str:
    """Where a native encoder serves: ``cpu`` or ``cuda`` (see the module doc for ``auto``)."""
    if precision == "int8":
        if requested == "cuda":
            raise OptionError("--precision int8 is an ONNX Runtime CPU artifact (dynamic quantisation): use "
                              "--device cpu, or --precision fp32 on a GPU host (TensorRT builds FP16 engines from it)")
        return "cpu"
    device = "cuda" if requested == "auto" else requested
    if requested == "auto":
        log.info("--flavour native --device auto: serving on cuda (KIND_GPU%s); pass --device cpu for a CPU host",
                 ", TensorRT FP16" if precision == "fp32" else "")
    return device


def artifact_digest(artifact: Path) -> str:
    """The artifact's graph and its weights (an engine cache must follow new weights, not only a new graph)."""
    sha = hashlib.sha256()
    for path in (artifact, weights_file(artifact)):
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()


def dim_range(dim: str | int, sizes: dict[str, int], max_batch: int) -> tuple[int, int, int]:
    """(min, opt, max) of one dimension of an input, from the spec's symbolic name."""
    if dim == "batch":
        return 1, min(OPT_ROWS, max_batch), max_batch
    if dim == "sequence":
        longest = sizes["max_length"]
        return 1, min(OPT_TOKENS, longest), longest
    if dim == "hint_sequence":
        return 1, min(OPT_TOKENS, HINT_MAX_TOKENS), HINT_MAX_TOKENS
    size = dim if isinstance(dim, int) else int(sizes[dim])
    return size, size, size


def profile_shapes(spec: EncoderSpec, sizes: dict[str, int], max_batch: int) -> dict[str, str]:
    """TensorRT profile shapes, every dimension of every input (``TEXT_HIDDEN:1x1x768``)."""
    shapes = {}
    for i, key in enumerate(("min", "opt", "max")):
        shapes[key] = ",".join(
            f"{t.name}:" + "x".join(str(dim_range(d, sizes, max_batch)[i]) for d in t.dims) for t in spec.inputs)
    return shapes


def tensorrt_accelerator(spec: EncoderSpec, sizes: dict[str, int], max_batch: int, digest: str,
                         cache_dir: str) -> dict:
    """TensorRT FP16 from the FP32 graph. The engine cache is per model and artifact: ORT names an
    engine after the graph's structure, not its weights, so two models with one graph, or new
    weights for one model, must never find each other's engine. ORT creates only the last level
    of the cache path, hence one directory per (model, artifact) right under the cache volume."""
    shapes = profile_shapes(spec, sizes, max_batch)
    params = {"precision_mode": "FP16", "max_workspace_size_bytes": 1 << 31,
              "trt_engine_cache_enable": 1,
              "trt_engine_cache_path": f"{cache_dir.rstrip('/')}/{spec.triton_name}-{digest[:16]}",
              "trt_engine_cache_prefix": spec.triton_name,
              "trt_profile_min_shapes": shapes["min"], "trt_profile_opt_shapes": shapes["opt"],
              "trt_profile_max_shapes": shapes["max"]}
    return {"name": "tensorrt", "parameters": {k: str(v) for k, v in params.items()}}


def session_parameters(intra_op_threads: int, *, device: str = "cpu", memory_arena: bool = False) -> dict:
    """ONNX Runtime session options the backend reads from ``parameters`` (0 = ORT's default,
    every core of the node), and its memory settings. The backend has no prepacking switch, so each
    instance holds a prepacked copy of the MatMul weights beside the memory-mapped file; what it
    can bound are the activations: on the CPU the arena gives back what a run extended it by
    (``memory.enable_memory_arena_shrinkage``, a run option the backend reads; ORT wants the arena
    on for it), on a GPU the device arena grows by what a run asks for (``arena_extend_strategy``
    1 = kSameAsRequested) instead of to the next power of two."""
    params: dict = {"intra_op_thread_count": intra_op_threads, "inter_op_thread_count": 1, "execution_mode": 0}
    if device == "cuda":
        params["arena_extend_strategy"] = 1
    elif not memory_arena:
        params.update({"enable_mem_arena": "true", "memory.enable_memory_arena_shrinkage": "cpu:0"})
    return pbtxt.parameters(params)


def warmup(spec: EncoderSpec, sizes: dict[str, int]) -> list[dict]:
    """One zero-filled request at load (ORT arenas; TensorRT engines are built before ready)."""
    dims = {"batch": 1, "sequence": WARMUP_TOKENS, "hint_sequence": WARMUP_TOKENS}
    inputs = {}
    for t in spec.inputs:
        shape = [dims[d] if d in dims else (d if isinstance(d, int) else int(sizes[d])) for d in t.dims[1:]]
        inputs[t.name] = {"data_type": pbtxt.TRITON_DTYPES[t.dtype], "dims": shape, "zero_data": True}
    return [{"name": "zeros", "batch_size": 1, "inputs": inputs}]


def native_encoder_config(spec: EncoderSpec, sizes: dict[str, int], artifact: Path, precision: str, *,
                          device: str, instances: int, intra_op_threads: int, max_batch: int,
                          trt_cache_dir: str, memory_arena: bool = False) -> dict:
    """The platform-specific part of a native encoder's config (``onnxruntime_onnx``)."""
    if artifact.suffix != ".onnx":
        raise OptionError(f"{artifact.name}: the native flavour serves ONNX artifacts only")
    config = {"platform": "onnxruntime_onnx", "default_model_filename": artifact.name,
              "instance_group": [{"kind": "KIND_GPU" if device == "cuda" else "KIND_CPU", "count": instances}],
              "parameters": session_parameters(intra_op_threads, device=device, memory_arena=memory_arena),
              "model_warmup": warmup(spec, sizes)}
    if device == "cuda" and precision == "fp32":
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [
            tensorrt_accelerator(spec, sizes, max_batch, artifact_digest(artifact), trt_cache_dir)]}}
    return config
