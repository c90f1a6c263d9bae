"""Business-logic scripting (BLS) helpers shared by the public Python models. Importable only inside
Triton's Python stub.

Every public pipeline is a Python model that calls its encoder through BLS, never an ensemble:
Triton 2.51 (and the 24.10 image) never answers an ensemble request whose composing step refuses it
because that step's queue is full (triton-inference-server/server#8631, fixed in 2026), and under
such a load the server crashed (signal 11). A BLS model's own bounded queue refuses at the entry
(UNAVAILABLE, fast), and a refusal from the encoder comes back to the BLS model as an ordinary
error response that it passes on (``triton_io.check_response`` keeps the code).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from structbert_client import api

from . import triton_io
from .encoder import RaggedEncoder, encoder_from_params, token_input_specs, warm_up
from .errors import InputError
from .params import PipelineParams
from .runtime import ExclusiveRunner
from .texts import check_texts, decode_texts
from .tokenization import Batch, TextTokenizer, bucket_length


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
            triton_io.check_response(model, response)
            arrays.append(output_array(pb_utils.get_output_tensor_by_name(response, names.get(name, name))))
        shape = [rows, *np.max([a.shape[1:] for a in arrays], axis=0).astype(int)]
        out = np.zeros(shape, dtype=arrays[0].dtype)
        for chunk, array in zip(parts, arrays):
            out[(chunk, *(slice(0, d) for d in array.shape[1:]))] = array
        result[name] = out
    return result


def in_process_encoder(args: dict, settings: PipelineParams, outputs: Sequence[str], max_rows: int) -> RaggedEncoder:
    """The encoder a public model runs itself (embedded flavour): the artifact named by
    ``encoder_artifact`` (relative to the model repository), set up from the ``encoder_*``
    runtime parameters export wrote from the encoder's own, and warmed up before the model is ready.
    Runtime calls hold a lock shared by the model's instances (one computes at a time)."""
    path = Path(args["model_repository"]).parent / settings.encoder_artifact
    inputs = list(settings.encoder_inputs)
    encoder = encoder_from_params(path, input_names=inputs, output_names=outputs, runtime=settings.encoder,
                                  max_rows=max_rows, cpu_instance=args.get("model_instance_kind") == "CPU")
    # the model's instances take turns on the runtime (runtime.ExclusiveRunner: why two instances)
    encoder.runner = ExclusiveRunner(encoder.runner, args["model_repository"],
                                     overlap_below_tokens=settings.encoder_overlap_below_tokens)
    if settings.encoder.warmup:
        warm_up(encoder, token_input_specs(inputs), budget_length=settings.encoder.budget_warmup_length)
    triton_io.log.info("%s runs %s in process on %s", args.get("model_name"), path.name, encoder.runner.device)
    return encoder


@dataclass
class Parsed:
    """A decoded request: groups to tokenise, and whatever ``finish`` needs besides the encoder's
    output (zero-shot: the labels and the mode of each row)."""

    groups: list[tuple[str, list]]
    context: object = None


class TokenPipeline:
    """Base of the public models that tokenise texts, run one encoder over every row of the dynamic
    batch, and post-process per request (``text_embedding``, ``sentence_similarity``,
    ``pair_classification``, ``zero_shot_classification``). Each stage isolates bad requests
    (``triton_io.run_valid``).

    Where the encoder runs: in the **embedded** flavour (parameter ``encoder_in_process``) this
    model runs its encoder's artifact itself, in its own stub (no BLS hop, no second stub round trip,
    no shared-memory copies of the token tensors; rows are padded once, per length-sorted chunk).
    In the **native** flavour it calls the encoder model (Triton's onnxruntime/libtorch backend)
    through BLS (:func:`infer_rows`).

    Subclasses set ``columns`` (the BYTES inputs), ``pair`` (tokenise the two columns as one sequence
    pair instead of each on its own), ``encoder_output`` and ``finish``; or override ``parse``, which
    returns a :class:`Parsed` request (what to tokenise, and what ``finish`` needs besides).
    """

    columns: tuple[str, ...] = (api.TEXT,)
    pair: bool = False
    encoder_output = api.EMBEDDING
    params_type: type[PipelineParams] = PipelineParams  # the parameters export writes for this model

    def initialize(self, args):
        _, params, self.dtypes = triton_io.setup(args)
        self.settings = settings = self.params_type.parse(params, model=args.get("model_name", ""))
        self.max_chars = settings.max_chars
        self.encoder, self.names, self.max_rows = (settings.encoder_model, settings.encoder_tensor_names,
                                                   settings.encoder_max_batch_size)
        self.tokenizer = TextTokenizer(
            triton_io.version_dir(args) / "tokenizer.json", max_length=settings.max_length,
            overlength=settings.overlength, length_buckets=settings.length_buckets,
            pair_truncation=settings.pair_truncation)
        self.local: RaggedEncoder | None = None
        if settings.encoder_in_process:
            self.local = in_process_encoder(args, settings, [self.encoder_output], self.max_rows)

    def parse(self, request) -> Parsed:
        """The request's groups to tokenise: [(input name for messages, texts or (text, pair) tuples)]."""
        columns = []
        for name in self.columns:
            texts = decode_texts(triton_io.input_array(request, name), name)
            check_texts(texts, name, max_chars=self.max_chars)
            columns.append(texts)
        if len(columns) > 1 and len(columns[0]) != len(columns[1]):
            raise InputError(f"{self.columns[0]} has {len(columns[0])} rows and {self.columns[1]} "
                             f"{len(columns[1])}; send them paired one to one")
        if self.pair:
            return Parsed([("/".join(self.columns), list(zip(*columns)))])
        return Parsed(list(zip(self.columns, columns)))

    def finish(self, outputs: list[np.ndarray], context) -> dict[str, np.ndarray]:
        """The request's result from the encoder output of each of its groups (``context``: what
        ``parse`` kept for it)."""
        raise NotImplementedError

    def tokenise(self, parsed: list[Parsed]) -> list[tuple[list[Batch], object] | Exception]:
        """All groups of all requests in one tokeniser call; a bad text fails its request only."""
        groups = [g for p in parsed for g in p.groups]
        encoded = iter(self.tokenizer.encode_many([items for _, items in groups], [name for name, _ in groups]))
        out: list[tuple[list[Batch], object] | Exception] = []
        for p in parsed:
            batches = [next(encoded) for _ in p.groups]
            out.append(next((b for b in batches if isinstance(b, Exception)), (batches, p.context)))
        return out

    def _finish(self, pending: list[tuple[list[Batch], object]], out: np.ndarray) -> list:
        """``finish`` per request, each on its slice of the encoder output of all rows."""
        results, cursor = [], 0
        for batches, context in pending:
            parts = []
            for b in batches:
                parts.append(out[cursor:cursor + len(b.input_ids)])
                cursor += len(b.input_ids)
            results.append(triton_io.guarded(self.finish, parts, context))
        return results

    def encode_here(self, pending: list[tuple[list[Batch], object]]) -> list:
        """Every row of every request through the in-process encoder, then ``finish`` per request."""
        return self._finish(pending, self._encode_here([b for batches, _ in pending for b in batches]))

    async def encode_remote(self, pending: list[tuple[list[Batch], object]]) -> list:
        """Every row of every request through the encoder model (BLS), then ``finish`` per request."""
        return self._finish(pending, await self._encode_remote([b for batches, _ in pending for b in batches]))

    def _encode_here(self, flat: list[Batch]) -> np.ndarray:
        """Every row through the in-process encoder (sorted by length, padded once per chunk)."""
        feeds = [{"INPUT_IDS": b.input_ids, "ATTENTION_MASK": b.attention_mask, "TOKEN_TYPE_IDS": b.token_type_ids}
                 for b in flat]
        outputs = []
        for result in self.local.run(feeds):
            if isinstance(result, Exception):
                raise result
            outputs.append(result[self.encoder_output])
        return np.concatenate(outputs)

    async def _encode_remote(self, flat: list[Batch]) -> np.ndarray:
        """Every row through the encoder model (BLS), in a few large requests."""
        merged = self.tokenizer.pad([ids[m > 0] for b in flat for ids, m in zip(b.input_ids, b.attention_mask)],
                                    [t[m > 0] for b in flat for t, m in zip(b.token_type_ids, b.attention_mask)])
        widths = None
        if self.tokenizer.length_buckets:
            widths = [bucket_length(int(n), self.tokenizer.length_buckets) for n in merged.lengths]
        feeds = {"INPUT_IDS": merged.input_ids, "ATTENTION_MASK": merged.attention_mask,
                 "TOKEN_TYPE_IDS": merged.token_type_ids}
        return (await infer_rows(self.encoder, feeds, [self.encoder_output], names=self.names,
                                 max_rows=self.max_rows, widths=widths))[self.encoder_output]

    def execute(self, requests):
        """The responses, or (BLS) a coroutine of them: the stub runs what ``execute`` returns on its
        event loop only if it is a coroutine, so the in-process path stays on the calling thread
        (no hand-off to the loop's thread and back for every batch)."""
        parsed = triton_io.per_request(requests, self.parse)
        tokenised = triton_io.run_valid(parsed, self.tokenise)
        if self.local is not None:
            return triton_io.responses(triton_io.run_valid(tokenised, self.encode_here), self.dtypes)
        return self._respond_remote(tokenised)

    async def _respond_remote(self, tokenised: list) -> list:
        return triton_io.responses(await triton_io.run_valid_async(tokenised, self.encode_remote), self.dtypes)
