"""Helpers shared by the Python-backend adapters. Importable only inside Triton's Python stub."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from .errors import InputError, UpstreamError

log = logging.getLogger("structbert_serving")


def model_config(args: dict) -> dict:
    return json.loads(args["model_config"])


def setup(args: dict) -> tuple[dict, dict[str, str], dict[str, Any]]:
    """What every adapter's initialize() starts with: (model config, its parameters, output dtypes).
    Every stub gives freed blocks back to the OS (``runtime.return_freed_memory``): a BLS model
    without a session of its own (information_extraction) kept its largest batch's arrays in the
    heap, +90 MB per instance over a 10-minute soak."""
    from .params import model_parameters
    from .runtime import return_freed_memory

    return_freed_memory()

    config = model_config(args)
    return config, model_parameters(config), output_dtypes(config)


def version_dir(args: dict) -> Path:
    return Path(args["model_repository"]) / str(args["model_version"])


def output_dtypes(config: dict) -> dict[str, Any]:
    return {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]}


def input_array(request, name: str, *, required: bool = True) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        if required:
            raise InputError(f"input {name} is missing")
        return None
    return tensor.as_numpy()


def error_response(exc: Exception):
    if isinstance(exc, InputError):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
    if isinstance(exc, UpstreamError) and exc.code is not None:
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), exc.code))
    log.exception("internal error", exc_info=exc)
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(f"internal error: {type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL)
    )


def responses(results: Sequence[dict[str, np.ndarray] | Exception], dtypes: dict[str, Any]) -> list:
    """One response per request, in order: tensors for results, an error for exceptions."""
    out = []
    for result in results:
        if isinstance(result, Exception):
            out.append(error_response(result))
        else:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=dtypes[name]))
                       for name, value in result.items()]
            out.append(pb_utils.InferenceResponse(output_tensors=tensors))
    return out


def per_request(requests: Sequence, handle: Callable[[Any], Any]) -> list:
    """Run ``handle`` on each request; its exceptions become that request's error only."""
    return [guarded(handle, request) for request in requests]  # one bad request never takes the batch down


def run_valid(items: Sequence, fn: Callable[[list], Sequence]) -> list:
    """Per-request error isolation: one result per item, in order. Exceptions (a request already
    refused) pass through; the other items go to ``fn`` together, which returns one result (or
    exception) each; if ``fn`` raises, each of them gets that error (e.g. the encoder refused)."""
    valid = [x for x in items if not isinstance(x, Exception)]
    try:
        out = iter(fn(valid)) if valid else iter(())
    except Exception as exc:  # the shared step failed: every request in it gets the error
        out = itertools.repeat(exc)
    return [x if isinstance(x, Exception) else next(out) for x in items]


async def run_valid_async(items: Sequence, fn: Callable[[list], Awaitable[Sequence]]) -> list:
    """:func:`run_valid` for a coroutine ``fn`` (BLS calls)."""
    valid = [x for x in items if not isinstance(x, Exception)]
    try:
        out = iter(await fn(valid)) if valid else iter(())
    except Exception as exc:
        out = itertools.repeat(exc)
    return [x if isinstance(x, Exception) else next(out) for x in items]


def guarded(fn: Callable[..., Any], *args) -> Any:
    """``fn(*args)``, or the exception it raised (for one request's step)."""
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def check_response(model: str, response) -> None:
    """Raise :class:`UpstreamError` (keeping the error code) if a BLS response failed."""
    if response.has_error():
        error = response.error()
        code = error.code() if hasattr(error, "code") else None
        raise UpstreamError(f"{model}: {error.message()}", code)
