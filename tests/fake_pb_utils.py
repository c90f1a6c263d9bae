"""A small stand-in for Triton's ``triton_python_backend_utils``: enough of its API for the
adapters in ``structbert_serving.triton_models`` to run in a unit test, without a server.

BLS calls (``InferenceRequest(...).async_exec()``) go to Python callables registered in
``MODELS``: ``{name: fn(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]}``; a callable
may raise :class:`TritonError` to answer with an error (e.g. UNAVAILABLE for overload).

Memory: a model named in ``GPU_MODELS`` answers in GPU memory (as a ``KIND_GPU`` onnxruntime or
libtorch model does) unless the request asks for CPU outputs through ``preferred_memory``; like the
real stub, ``as_numpy()`` on a GPU tensor raises.
"""

from __future__ import annotations

import asyncio
import json
import sys
from types import ModuleType

import numpy as np

MODELS: dict = {}
CALLS: list[tuple[str, dict[str, tuple]]] = []  # (model, {input: shape}) of every BLS request
GPU_MODELS: set[str] = set()
TRITONSERVER_MEMORY_CPU, TRITONSERVER_MEMORY_CPU_PINNED, TRITONSERVER_MEMORY_GPU = 0, 1, 2


class PreferredMemory:
    def __init__(self, preferred_memory_type: int, preferred_device_id: int = 0):
        self.preferred_memory_type, self.preferred_device_id = preferred_memory_type, preferred_device_id


class TritonError(Exception):
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS = range(7)

    def __init__(self, msg: str, code: int = 1):
        super().__init__(msg)
        self._msg, self._code = msg, code

    def message(self) -> str:
        return self._msg

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array: np.ndarray, *, on_gpu: bool = False):
        self._name, self._array, self._on_gpu = name, np.asarray(array), on_gpu

    def name(self) -> str:
        return self._name

    def is_cpu(self) -> bool:
        return not self._on_gpu

    def as_numpy(self) -> np.ndarray:
        if self._on_gpu:
            raise TritonError("Tensor is stored in GPU and cannot be converted to NumPy.")
        return self._array

    def to_dlpack(self):
        return self._array  # numpy's from_dlpack takes it (the real one is a GPU capsule)


class InferenceResponse:
    def __init__(self, output_tensors=(), error: TritonError | None = None):
        self.output_tensors, self._error = list(output_tensors), error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class InferenceRequest:
    def __init__(self, model_name: str, inputs, requested_output_names, *, preferred_memory=None, **_):
        self.model_name, self.inputs, self.requested = model_name, list(inputs), list(requested_output_names)
        self.preferred_memory = preferred_memory

    def exec(self) -> InferenceResponse:
        feeds = {t.name(): t.as_numpy() for t in self.inputs}
        CALLS.append((self.model_name, {k: v.shape for k, v in feeds.items()}))
        try:
            out = MODELS[self.model_name](feeds)
        except TritonError as exc:
            return InferenceResponse(error=exc)
        on_gpu = self.model_name in GPU_MODELS and (
            self.preferred_memory is None or self.preferred_memory.preferred_memory_type == TRITONSERVER_MEMORY_GPU)
        return InferenceResponse([Tensor(n, out[n], on_gpu=on_gpu) for n in self.requested])

    async def async_exec(self) -> InferenceResponse:
        await asyncio.sleep(0)
        return self.exec()


def get_input_tensor_by_name(request, name: str) -> Tensor | None:
    return next((t for t in request.inputs if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors if t.name() == name), None)


def triton_string_to_numpy(dtype: str):
    return {"TYPE_FP32": np.float32, "TYPE_INT64": np.int64, "TYPE_INT32": np.int32, "TYPE_BOOL": np.bool_,
            "TYPE_STRING": np.object_}[dtype]


def request(**inputs: np.ndarray) -> InferenceRequest:
    """A request as Triton hands it to ``execute``."""
    return InferenceRequest("", [Tensor(k, v) for k, v in inputs.items()], [])


def texts(*values: str | bytes) -> np.ndarray:
    return np.array([[v.encode() if isinstance(v, str) else v] for v in values], dtype=object)


def install() -> ModuleType:
    """Register this module as ``triton_python_backend_utils`` (before importing an adapter)."""
    module = sys.modules[__name__]
    sys.modules["triton_python_backend_utils"] = module
    MODELS.clear()
    CALLS.clear()
    GPU_MODELS.clear()
    return module


def model_args(model_dir, config: dict) -> dict:
    """``initialize``'s args for a model written by export (``<model_dir>/config.pbtxt``)."""
    return {"model_config": json.dumps(config), "model_repository": str(model_dir), "model_version": "1",
            "model_name": config["name"], "model_instance_kind": "CPU"}
