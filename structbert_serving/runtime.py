"""Run exported encoder artifacts (ONNX through ONNX Runtime, or TorchScript) on numpy feeds.

Export's validation and the served Python-backend encoder both use :func:`load_runner`, so the code
path that is validated is the one that serves.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import mmap
import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class Runner(Protocol):
    output_names: list[str]
    device: str

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


# ONNX Runtime releases whose CPU SkipLayerNormalization kernel is slower than the LayerNormalization
# and Add it fuses (loadtest/RESULTS.md, "INT8 on the CPU: the fused layer norm of ONNX Runtime 1.30"):
# the INT8 MiniLM's 12 fused nodes took ~70 ms per pass in 1.30.0 and 1.31.1 (single thread: 126 ms;
# not a threading effect) against 17-20 ms in 1.19.2-1.29.0, whose unfused LayerNormalization is
# the slower one (19-76 ms). Fusion is left to ORT below this release, turned off from it.
SLOW_CPU_SKIP_LAYER_NORM_SINCE = (1, 30)


def cpu_disabled_optimizers(version: str) -> list[str]:
    """ORT graph optimizers to turn off for a CPU session of ONNX Runtime ``version``."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return ["SkipLayerNormFusion"] if (major, minor) >= SLOW_CPU_SKIP_LAYER_NORM_SINCE else []


def weights_file(artifact: str | Path) -> Path:
    """Where an ONNX artifact keeps its weights: ``model.onnx.data`` beside ``model.onnx`` (export
    writes every artifact so; ONNX Runtime memory-maps the file)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".data")


def map_weights(artifact: str | Path) -> mmap.mmap | None:
    """Map the artifact's weights file into this process, every page (MAP_POPULATE), read-only
    and shared: the same page-cache pages ONNX Runtime maps, so nothing is copied. ONNX Runtime
    faults a page in on first use only (a vocabulary row on the first text that has its token),
    which made a server's PSS creep up for a while with the texts it saw; mapped whole at load,
    the weights cost at start what they cost later, once per host, and no request pays the page
    faults. Keep the returned map for the life of the session (None: no weights file)."""
    path = weights_file(artifact)
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                         prot=mmap.PROT_READ)


# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
RETURN_FREED_ABOVE = 128 * 1024
_returning = False


def return_freed_memory() -> bool:
    """Make glibc give freed blocks above 128 KiB back to the OS at once (their own mappings, a low
    trim threshold), for this process. Without ONNX Runtime's CPU arena an activation is freed
    after each run, but glibc raises its mmap threshold as large blocks are freed (up to 32 MiB)
    and keeps later ones in the heap: a process kept the high-water mark of the largest batch it
    had seen (base encoder: +150-450 MB per process after a few shapes, flat with this). Mapping a
    block costs page faults, a few ms per GB touched: under 2 % of a CPU batch. Idempotent; False
    where the C library has no ``mallopt`` (not glibc)."""
    global _returning
    if _returning:
        return True
    try:
        libc = ctypes.CDLL(None)
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, RETURN_FREED_ABOVE)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, RETURN_FREED_ABOVE))
    except (OSError, AttributeError):
        ok = False
    _returning = ok
    return ok


def _want_cuda(device: str) -> bool:
    return device in ("auto", "cuda") and os.environ.get("CUDA_VISIBLE_DEVICES", "0") not in ("", "-1")


class OrtRunner:
    """An ONNX Runtime session over one artifact.

    Memory (CPU): the weights stay in the artifact's memory-mapped weights file
    (:func:`weights_file`), shared by every process that loads it, unless ``prepack_weights``
    (ONNX Runtime's prepacked MatMul weights are a private copy of nearly all of them, per
    session). ``memory_arena=False`` (default) turns ONNX Runtime's CPU arena off, which keeps the
    high-water mark of the largest batch for the life of the session (onnxruntime#11627), and
    makes glibc return what a run freed (:func:`return_freed_memory`): a session costs its
    weights once per host plus the activations of the batch it is running."""

    def __init__(self, path: Path, *, device: str = "auto", intra_op_threads: int = 0, allow_spinning: bool = False,
                 optimized_model_path: Path | None = None, prepack_weights: bool = False,
                 memory_arena: bool = False):
        """``optimized_model_path``: also write the graph ONNX Runtime runs, after its fusions."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not prepack_weights:
            options.add_session_config_entry("session.disable_prepacking", "1")
        if not memory_arena:
            options.enable_cpu_mem_arena = False
            return_freed_memory()
        self.weights = map_weights(path) if not prepack_weights else None
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        # ORT's pool threads spin-wait for work by default; beside other stubs and client threads on
        # a few cores that burns the CPU the next batch needs (measured: see loadtest/RESULTS.md)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if allow_spinning else "0")
        options.log_severity_level = 3
        if optimized_model_path is not None:
            options.optimized_model_filepath = str(optimized_model_path)
        providers = ["CPUExecutionProvider"]
        disabled = cpu_disabled_optimizers(ort.__version__)
        if _want_cuda(device) and "CUDAExecutionProvider" in ort.get_available_providers():
            # the device arena grows by what a run asks for, not to the next power of two
            providers.insert(0, ("CUDAExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"}))
            disabled = []  # the CUDA kernels are what the FP16 graph was fused for
        self.session = ort.InferenceSession(str(path), options, providers=providers,
                                            disabled_optimizers=disabled or None)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        if device == "cuda" and self.device != "cuda":
            raise RuntimeError(f"{path}: device=cuda asked for, but ONNX Runtime has no working CUDA provider")
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {k: feeds[k] for k in self.input_names})
        return dict(zip(self.output_names, outputs))


def traced_devices(module) -> set[str]:
    """Device types baked into a TorchScript graph as constants: a trace records the device of every
    tensor it creates (position ids, masks), whatever ``map_location`` says at load time."""
    graph = module.inlined_graph
    return {str(n.output().toIValue()).split(":")[0] for n in graph.findAllNodes("prim::Constant", True)
            if n.output().type().kind() == "DeviceObjType"}


def check_trace_device(module, device: str, path: str | Path) -> None:
    """Refuse a TorchScript artifact traced on another device than the one it is to run on (a CPU
    trace served on ``cuda`` fails every request with "Expected all tensors to be on the same
    device")."""
    other = traced_devices(module) - {device}
    if other:
        raise RuntimeError(
            f"{path} was traced on {', '.join(sorted(other))} but is to run on {device}: a TorchScript trace "
            f"bakes in the device it ran on. Export it again with --device {device} on a machine that has "
            f"that device.")


class TorchScriptRunner:
    """``device="auto"`` runs the artifact where it was traced (a GPU trace needs a GPU)."""

    def __init__(self, path: Path, *, input_names: list[str], output_names: list[str], device: str = "auto",
                 intra_op_threads: int = 0):
        import torch

        if intra_op_threads > 0:
            torch.set_num_threads(intra_op_threads)
        self._torch = torch
        module = torch.jit.load(str(path), map_location="cpu")
        if device == "auto":
            traced = traced_devices(module)
            device = "cuda" if "cuda" in traced or (not traced and _want_cuda("auto") and torch.cuda.is_available()) \
                else "cpu"
        if device == "cuda" and not (_want_cuda(device) and torch.cuda.is_available()):
            raise RuntimeError(f"{path}: device=cuda asked for (or the artifact was traced on a GPU), but torch "
                               "sees no GPU")
        check_trace_device(module, device, path)
        self.device = device
        self.module = (torch.jit.load(str(path), map_location=device) if device != "cpu" else module).eval()
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names]
        with torch.inference_mode():
            out = self.module(*args)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        return {n: t.float().cpu().numpy() for n, t in zip(self.output_names, out)}


class ExclusiveRunner:
    """A runner whose calls exclude each other across processes: every process that wraps a runner
    with the same ``lock_path`` (an existing file or directory; ``flock`` on it) runs one call at a
    time. The instances of an embedded public model lock their model directory: Triton 2.51's
    batcher needs an idle instance to hand the next batch to (it is not woken when a busy one frees
    up), and two sessions running at once on the same cores only slow each other down. While one
    instance computes, the other decodes, tokenises and answers.

    Except small batches on the CPU: a call with fewer than ``overlap_below_tokens`` tokens (rows x
    padded length of its first input) takes the lock shared, so two instances' small batches run at
    once. ONNX Runtime keeps its threads busy only part of such a call (MiniLM, 2 cores: 1.5-1.7
    cores at <= 128 tokens, 1.85-1.95 from 512), and one instance's small batch fills the other's
    gaps; a large batch still runs alone. 0: every call exclusive."""

    def __init__(self, runner: Runner, lock_path: str | Path, *, overlap_below_tokens: int = 0):
        self.runner = runner
        self.overlap_below_tokens = overlap_below_tokens
        self._fd = os.open(lock_path, os.O_RDONLY)
        self._threads = threading.Lock()  # flock does not exclude threads sharing one descriptor

    def __getattr__(self, name: str):
        return getattr(self.runner, name)

    def shared(self, feeds: dict[str, np.ndarray]) -> bool:
        """Whether this call may run beside another instance's (a small batch on the CPU)."""
        if self.overlap_below_tokens <= 0 or self.runner.device != "cpu" or not feeds:
            return False
        return next(iter(feeds.values())).size < self.overlap_below_tokens

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._threads:
            fcntl.flock(self._fd, fcntl.LOCK_SH if self.shared(feeds) else fcntl.LOCK_EX)
            try:
                return self.runner.run(feeds)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


def load_runner(path: str | Path, *, input_names: list[str], output_names: list[str], device: str = "auto",
                intra_op_threads: int = 0, allow_spinning: bool = False, prepack_weights: bool = False,
                memory_arena: bool = False) -> Runner:
    """A runner for ``model.onnx`` or ``model.pt``, chosen by the file's suffix (the memory
    settings apply to ONNX Runtime: :class:`OrtRunner`)."""
    path = Path(path)
    if path.suffix == ".onnx":
        runner = OrtRunner(path, device=device, intra_op_threads=intra_op_threads, allow_spinning=allow_spinning,
                           prepack_weights=prepack_weights, memory_arena=memory_arena)
        if sorted(runner.output_names) != sorted(output_names):
            raise RuntimeError(f"{path}: outputs {runner.output_names}, expected {output_names}")
        return runner
    if path.suffix == ".pt":
        return TorchScriptRunner(path, input_names=input_names, output_names=output_names, device=device,
                                 intra_op_threads=intra_op_threads)
    raise ValueError(f"{path}: unknown artifact type (expected .onnx or .pt)")
