"""The Python-backend adapters' one I/O helper: requests and responses, BLS calls, and the adapter of
a token pipeline (:class:`PipelineModel`). Importable only inside Triton's Python stub; the logic
it adapts lives in plain modules (:mod:`structbert_serving.pipelines`).

Every public pipeline is a Python model that calls its encoder through BLS, never an ensemble:
Triton 2.51 (and the 24.10 image) never answers an ensemble request whose composing step refuses it
because that step's queue is full (triton-inference-server/server#8631, fixed in 2026), and under
such a load the server crashed (signal 11). A BLS model's own bounded queue refuses at the entry
(UNAVAILABLE, fast), and a refusal from the encoder comes back to the BLS model as an ordinary
error response that it passes on (:func:`check_response` keeps the code).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from .errors import InputError, UpstreamError
from .isolation import guarded, per_request, run_valid, run_valid_async
from .tokenization import Batch, TextTokenizer, bucket_length

__all__ = ["guarded", "per_request", "run_valid", "run_valid_async"]  # re-exported for the adapters

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


def check_response(model: str, response) -> None:
    """Raise :class:`UpstreamError` (keeping the error code) if a BLS response failed."""
    if response.has_error():
        error = response.error()
        code = error.code() if hasattr(error, "code") else None
        raise UpstreamError(f"{model}: {error.message()}", code)


def cpu_memory():
    """Ask the callee for outputs in CPU memory: a KIND_GPU encoder (native onnxruntime on a GPU)
    answers in GPU memory otherwise, and ``as_numpy()`` raises on a GPU tensor."""
    return pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)


def output_array(tensor) -> np.ndarray:
    """A BLS output as numpy; should a backend answer in GPU memory anyway, copy it through DLPack."""
    if tensor.is_cpu():
        return tensor.as_numpy()
    try:
        from torch.utils import dlpack
    except ImportError as exc:
        raise RuntimeError(f"output {tensor.name()} came back in GPU memory although CPU memory was requested, "
                           "and torch is not installed to copy it") from exc
    return dlpack.from_dlpack(tensor.to_dlpack()).cpu().numpy()


async def infer_rows(model: str, feeds: dict[str, np.ndarray], outputs: Sequence[str], *, names: dict[str, str],
                     max_rows: int, widths: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """One logical call of ``model`` over all rows of ``feeds``, sent as concurrent ``async_exec``
    requests of at most ``max_rows`` rows. ``widths`` (one per row) groups rows of equal width and
    cuts every feed's dim 1 to it: a native encoder batches only equal shapes. Outputs come back in
    row order; outputs with a sequence dim are zero-padded to the widest part. ``names`` maps public
    tensor names to the model's (libtorch wants ``NAME__i``)."""
    rows = next(iter(feeds.values())).shape[0]
    groups: dict[int | None, list[int]] = {}
    for i in range(rows):
        groups.setdefault(None if widths is None else int(widths[i]), []).append(i)
    jobs, parts = [], []
    for width, idx in groups.items():
        for start in range(0, len(idx), max_rows):
            chunk = np.asarray(idx[start:start + max_rows])
            inputs = [pb_utils.Tensor(names.get(k, k), np.ascontiguousarray(v[chunk] if width is None
                                                                             else v[chunk, :width]))
                      for k, v in feeds.items()]
            request = pb_utils.InferenceRequest(model_name=model, inputs=inputs,
                                                requested_output_names=[names.get(o, o) for o in outputs],
                                                preferred_memory=cpu_memory())
            jobs.append(request.async_exec())
            parts.append(chunk)
    responses = await asyncio.gather(*jobs)
    result: dict[str, np.ndarray] = {}
    for name in outputs:
        arrays = []
        for response in responses:
            check_response(model, response)
            arrays.append(output_array(pb_utils.get_output_tensor_by_name(response, names.get(name, name))))
        shape = [rows, *np.max([a.shape[1:] for a in arrays], axis=0).astype(int)]
        out = np.zeros(shape, dtype=arrays[0].dtype)
        for chunk, array in zip(parts, arrays):
            out[(chunk, *(slice(0, d) for d in array.shape[1:]))] = array
        result[name] = out
    return result


class BlsRunner:
    """A pipeline's runner in the native flavour: every row through the encoder model (BLS), in a
    few large requests, re-padded once (to length buckets where the tokenizer has them)."""

    def __init__(self, model: str, output: str, tokenizer: TextTokenizer, *, names: dict[str, str], max_rows: int):
        self.model, self.output, self.tokenizer, self.names, self.max_rows = model, output, tokenizer, names, max_rows

    async def __call__(self, flat: list[Batch]) -> np.ndarray:
        merged = self.tokenizer.pad([ids[m > 0] for b in flat for ids, m in zip(b.input_ids, b.attention_mask)],
                                    [t[m > 0] for b in flat for t, m in zip(b.token_type_ids, b.attention_mask)])
        widths = None
        if self.tokenizer.length_buckets:
            widths = [bucket_length(int(n), self.tokenizer.length_buckets) for n in merged.lengths]
        feeds = {"INPUT_IDS": merged.input_ids, "ATTENTION_MASK": merged.attention_mask,
                 "TOKEN_TYPE_IDS": merged.token_type_ids}
        return (await infer_rows(self.model, feeds, [self.output], names=self.names, max_rows=self.max_rows,
                                 widths=widths))[self.output]


def in_process_encoder(args: dict, settings, outputs: Sequence[str], max_rows: int):
    """The encoder a public model runs itself (embedded flavour): the artifact named by
    ``encoder_artifact`` (relative to the model repository), set up from the ``encoder_*``
    runtime parameters export wrote from the encoder's own, and warmed up before the model is ready.
    Runtime calls hold a lock shared by the model's instances (one computes at a time)."""
    from .encoder import encoder_from_params, token_input_specs, warm_up
    from .runtime import ExclusiveRunner

    path = Path(args["model_repository"]).parent / settings.encoder_artifact
    inputs = list(settings.encoder_inputs)
    encoder = encoder_from_params(path, input_names=inputs, output_names=outputs, runtime=settings.encoder,
                                  max_rows=max_rows, cpu_instance=args.get("model_instance_kind") == "CPU")
    # the model's instances take turns on the runtime (runtime.ExclusiveRunner: why two instances)
    encoder.runner = ExclusiveRunner(encoder.runner, args["model_repository"],
                                     overlap_below_tokens=settings.encoder_overlap_below_tokens)
    if settings.encoder.warmup:
        warm_up(encoder, token_input_specs(inputs), budget_length=settings.encoder.budget_warmup_length)
    log.info("%s runs %s in process on %s", args.get("model_name"), path.name, encoder.runner.device)
    return encoder


class PipelineModel:
    """The Python-backend adapter of a :class:`~structbert_serving.pipelines.TokenPipeline`: decode
    each request, run the pipeline over the dynamic batch, encode one response per request.

    Where the encoder runs: in the **embedded** flavour (parameter ``encoder_in_process``) this
    model runs its encoder's artifact itself, in its own stub (``pipelines.LocalRunner``: no BLS
    hop, no shared-memory copies of the token tensors; rows are padded once, per length-sorted
    chunk). In the **native** flavour it calls the encoder model through BLS (:class:`BlsRunner`)."""

    pipeline_type: type  # a pipelines.TokenPipeline subclass
    params_type: type  # the parameters export writes for this model: the pipeline's

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.params_type = cls.pipeline_type.params_type

    def initialize(self, args):
        from .pipelines import LocalRunner

        _, params, self.dtypes = setup(args)
        kind = self.pipeline_type
        settings = kind.params_type.parse(params, model=args.get("model_name", ""))
        self.pipeline = pipeline = kind(settings, version_dir(args) / "tokenizer.json")
        self.settings = settings
        self.local = None  # the in-process encoder (embedded flavour)
        if settings.encoder_in_process:
            self.local = in_process_encoder(args, settings, [kind.encoder_output], settings.encoder_max_batch_size)
            pipeline.runner = LocalRunner(self.local, kind.encoder_output)
        else:
            pipeline.runner = BlsRunner(settings.encoder_model, kind.encoder_output, pipeline.tokenizer,
                                        names=settings.encoder_tensor_names,
                                        max_rows=settings.encoder_max_batch_size)

    def _responses(self, answers: list) -> list:
        return responses([a if isinstance(a, Exception) else a.outputs for a in answers], self.dtypes)

    def execute(self, requests):
        """The responses, or (BLS) a coroutine of them: the stub runs what ``execute`` returns on its
        event loop only if it is a coroutine, so the in-process path stays on the calling thread
        (no hand-off to the loop's thread and back for every batch)."""
        inputs = [functools.partial(input_array, request) for request in requests]
        if self.local is not None:
            return self._responses(self.pipeline(inputs))
        return self._respond_remote(inputs)

    async def _respond_remote(self, inputs: list) -> list:
        return self._responses(await self.pipeline.acall(inputs))
