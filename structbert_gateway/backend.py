"""Triton behind the gateway: asyncio gRPC over a small pool of channels.

Inference goes through the KServe v2 gRPC stub that ``tritonclient`` ships (its ``service_pb2``
messages, tensors as raw little-endian contents), on ``grpc.aio`` channels: the request is built
directly rather than through ``tritonclient.grpc.aio``'s ``InferInput`` wrappers, which cost about
0.4 ms of CPU per call here (measured; the gateway's budget is 2 ms). Health and metadata calls use
``tritonclient.grpc.aio``.

Model and tensor names come from the wire API (:mod:`structbert_client.api`). Lists are sent in
chunks of at most ``batch_size`` rows, concurrently, so one large request still batches with
others on the server; a failure becomes an :class:`~structbert_gateway.errors.ApiError` whose
message names the request's own fields and indices.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Sequence

import numpy as np

from structbert_client import api

from .errors import ApiError, from_triton
from .wire import from_raw, raw_contents

log = logging.getLogger(__name__)

_MAX_MESSAGE = 256 * 1024 * 1024
# one TCP connection per channel (gRPC would otherwise share one subchannel between identical channels);
# reconnect to a restarted tritonserver within a second (gRPC's default backoff grows to 120 s)
_CHANNEL_ARGS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", _MAX_MESSAGE),
                 ("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.initial_reconnect_backoff_ms", 250),
                 ("grpc.max_reconnect_backoff_ms", 1000)]


def texts_array(texts: Sequence[str], field: str, offset: int = 0) -> np.ndarray:
    """BYTES [n, 1]; a text that is not valid Unicode (a lone surrogate from JSON) is the caller's error."""
    rows = []
    for i, text in enumerate(texts):
        try:
            rows.append([text.encode("utf-8")])
        except UnicodeEncodeError as exc:
            raise ApiError("invalid", f"{field}[{i + offset}] is not valid Unicode ({exc.reason} at offset "
                                      f"{exc.start}); send UTF-8 text", param=field) from None
    return np.array(rows, dtype=object).reshape(len(rows), 1)


def _str(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _label_probs(model: api.PublicModel, parts: list[dict[str, np.ndarray]]) -> list[dict[str, float]]:
    probs_name, labels_name = model.outputs
    return [{_str(label): float(p) for label, p in zip(labels, probs)}
            for part in parts for probs, labels in zip(part[probs_name], part[labels_name])]


class TritonBackend:
    """The public pipelines, called over gRPC."""

    def __init__(self, url: str, *, pool_size: int = 4, timeout_s: float = 60.0, batch_size: int = 32,
                 headers: dict[str, str] | None = None, http_url: str | None = None):
        """``url``: Triton's gRPC endpoint; ``http_url``: when given, inference goes over Triton's HTTP
        endpoint instead (:mod:`structbert_gateway.http_transport`); health and metadata stay on gRPC."""
        import grpc
        from tritonclient.grpc import aio as grpc_aio
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self.url = url
        self.timeout_s = float(timeout_s)
        self.batch_size = int(batch_size)
        self.headers = dict(headers or {}) or None
        self._metadata = tuple((k.lower(), v) for k, v in (headers or {}).items()) or None
        self._pb = service_pb2
        self._channels = [grpc.aio.insecure_channel(url, options=_CHANNEL_ARGS) for _ in range(max(1, pool_size))]
        self._stubs = itertools.cycle([service_pb2_grpc.GRPCInferenceServiceStub(c) for c in self._channels])
        self._clients = [grpc_aio.InferenceServerClient(url, channel_args=_CHANNEL_ARGS)]  # health, metadata
        self._next = itertools.cycle(self._clients)
        self._ready_cache: dict[tuple[str, ...], tuple[float, bool]] = {}  # models -> (when, ready)
        self._http = None
        if http_url:
            from .http_transport import HttpTransport

            self._http = HttpTransport(http_url, pool_size=pool_size, timeout_s=self.timeout_s, headers=headers)

    # -- plumbing ----------------------------------------------------------------------------------

    def _client(self):
        return next(self._next)

    def _request(self, model: str, inputs: dict[str, np.ndarray], outputs: Sequence[str]):
        request = self._pb.ModelInferRequest(model_name=model)
        for name, array in inputs.items():
            datatype, raw = raw_contents(array)
            tensor = request.inputs.add()
            tensor.name, tensor.datatype = name, datatype
            tensor.shape.extend(array.shape)
            request.raw_input_contents.append(raw)
        for name in outputs:
            request.outputs.add().name = name
        return request

    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: Sequence[str], *,
                    fields: dict[str, str], offset: int = 0) -> dict[str, np.ndarray]:
        import grpc
        from tritonclient.utils import InferenceServerException

        if self._http is not None:
            try:
                return await self._http.infer(model, inputs, outputs)
            except Exception as exc:
                raise from_triton(exc, fields, offset) from None
        request = self._request(model, inputs, outputs)
        try:
            response = await next(self._stubs).ModelInfer(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            error = InferenceServerException(exc.details() or "", status=str(exc.code()))
            raise from_triton(error, fields, offset) from None
        except Exception as exc:
            raise from_triton(exc, fields, offset) from None
        got = {out.name: from_raw(out.datatype, out.shape, raw)
               for out, raw in zip(response.outputs, response.raw_output_contents)}
        return {name: got[name] for name in outputs}

    async def _chunked(self, model: str, n: int, make_inputs, outputs: Sequence[str], fields: dict[str, str]
                       ) -> list[dict[str, np.ndarray]]:
        """``make_inputs(slice)`` -> inputs of one chunk; every chunk in flight at once, in order."""
        slices = [slice(s, min(n, s + self.batch_size)) for s in range(0, n, self.batch_size)]
        calls = [self.infer(model, make_inputs(s), outputs, fields=fields, offset=s.start) for s in slices]
        if len(calls) == 1:
            return [await calls[0]]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results  # type: ignore[return-value]

    # -- pipelines ---------------------------------------------------------------------------------

    async def embed(self, texts: Sequence[str], field: str = "input") -> np.ndarray:
        """L2-normalised embeddings, FP32 [n, hidden]."""
        model = api.TEXT_EMBEDDING
        (tensor,) = model.inputs
        parts = await self._chunked(model.name, len(texts),
                                    lambda s: {tensor: texts_array(texts[s], field, s.start)},
                                    model.outputs, {tensor: field})
        return np.concatenate([p[model.outputs[0]] for p in parts], axis=0)

    async def similarity(self, texts_a: Sequence[str], texts_b: Sequence[str], fields: tuple[str, str]
                         ) -> list[float]:
        """Cosine of the two embeddings of each pair (``sentence_similarity``)."""
        model = api.SENTENCE_SIMILARITY
        parts = await self._pairs(model, texts_a, texts_b, fields)
        return [float(x) for p in parts for x in p[model.outputs[0]].reshape(-1)]

    async def _pairs(self, model: api.PublicModel, texts_a: Sequence[str], texts_b: Sequence[str],
                     fields: tuple[str, str]) -> list[dict[str, np.ndarray]]:
        """A two-column model over its (a, b) rows, in chunks."""
        a, b = model.inputs
        return await self._chunked(
            model.name, len(texts_a),
            lambda s: {a: texts_array(texts_a[s], fields[0], s.start), b: texts_array(texts_b[s], fields[1], s.start)},
            model.outputs, {a: fields[0], b: fields[1]})

    async def pair_classify(self, texts_a: Sequence[str], texts_b: Sequence[str], fields: tuple[str, str]
                            ) -> list[dict[str, float]]:
        """``{label: probability}`` per pair, in the checkpoint's label order (``pair_classification``)."""
        model = api.PAIR_CLASSIFICATION
        return _label_probs(model, await self._pairs(model, texts_a, texts_b, fields))

    async def text_classify(self, texts: Sequence[str], field: str) -> list[dict[str, float]]:
        """``{label: probability}`` per text, in the checkpoint's label order (``text_classification``)."""
        model = api.TEXT_CLASSIFICATION
        (tensor,) = model.inputs
        parts = await self._chunked(model.name, len(texts), lambda s: {tensor: texts_array(texts[s], field, s.start)},
                                    model.outputs, {tensor: field})
        return _label_probs(model, parts)

    async def rerank(self, query: str, passages: Sequence[str], fields: tuple[str, str]
                     ) -> tuple[list[float], list[float]]:
        """(relevance, raw score) of each passage, in passage order (``reranking``: one request, all
        passages in one row; the server checks their number against its own limit)."""
        model = api.RERANKING
        query_name, passages_name = model.inputs
        inputs = {query_name: texts_array([query], fields[0]),
                  passages_name: texts_array(passages, fields[1]).reshape(1, len(passages))}
        out = await self.infer(model.name, inputs, (api.SCORES, api.RAW_SCORES),
                               fields={query_name: fields[0], passages_name: fields[1]})
        return [float(x) for x in out[api.SCORES][0]], [float(x) for x in out[api.RAW_SCORES][0]]

    async def classify(self, texts: Sequence[str], labels: str | Sequence[str], *, multi_label: bool,
                       hypothesis_template: str, fields: dict[str, str]) -> list[dict]:
        """Zero-shot results, ``{"labels": [...], "scores": [...]}`` per text, best first."""
        model = api.ZERO_SHOT_CLASSIFICATION
        text_name, labels_name = model.inputs
        (template_name, _), (multi_name, _) = model.optional_inputs
        # a list goes as JSON; one string ("a,b，c") as it is: the server parses both
        encoded_labels = labels if isinstance(labels, str) else json.dumps(list(labels), ensure_ascii=False)
        texts_array([encoded_labels], fields[labels_name])  # Unicode checks, once
        texts_array([hypothesis_template], fields[template_name])

        def make(s: slice) -> dict[str, np.ndarray]:
            n = s.stop - s.start
            return {text_name: texts_array(texts[s], fields[text_name], s.start),
                    labels_name: texts_array([encoded_labels] * n, fields[labels_name]),
                    template_name: texts_array([hypothesis_template] * n, fields[template_name]),
                    multi_name: np.full((n, 1), bool(multi_label))}

        parts = await self._chunked(model.name, len(texts), make, model.outputs, fields)
        return [json.loads(_str(row)) for p in parts for row in p[model.outputs[0]].reshape(-1)]

    async def extract(self, texts: Sequence[str], schema: dict, *, output_all_prefix: bool,
                      fields: dict[str, str]) -> list[list[list[dict]]]:
        """SiameseUIE paths per text."""
        model = api.INFORMATION_EXTRACTION
        text_name, schema_name = model.inputs
        ((prefix_name, _),) = model.optional_inputs
        encoded = json.dumps(schema, ensure_ascii=False)
        texts_array([encoded], fields[schema_name])

        def make(s: slice) -> dict[str, np.ndarray]:
            n = s.stop - s.start
            return {text_name: texts_array(texts[s], fields[text_name], s.start),
                    schema_name: texts_array([encoded] * n, fields[schema_name]),
                    prefix_name: np.full((n, 1), bool(output_all_prefix))}

        parts = await self._chunked(model.name, len(texts), make, model.outputs, fields)
        return [json.loads(_str(row)) for p in parts for row in p[model.outputs[0]].reshape(-1)]

    # -- server state ------------------------------------------------------------------------------

    async def ready_models(self, names: Sequence[str] = tuple(api.PUBLIC_MODELS)) -> set[str]:
        """The public models Triton reports ready (the metadata/health API: open without an admin key)."""
        client = self._client()

        async def one(name: str) -> bool:
            try:
                return bool(await client.is_model_ready(name, headers=self.headers))
            except Exception:
                return False
        flags = await asyncio.gather(*(one(n) for n in names))
        return {n for n, ok in zip(names, flags) if ok}

    async def is_ready(self, models: Sequence[str], cache_s: float = 0.5) -> bool:
        """Server ready and every one of ``models`` ready (cached briefly: probes may come often)."""
        key = tuple(models)
        at, value = self._ready_cache.get(key, (0.0, False))
        if time.monotonic() - at < cache_s:
            return value
        try:
            ok = bool(await asyncio.wait_for(self._client().is_server_ready(headers=self.headers), 5))
            if ok and models:
                ok = set(models) <= await asyncio.wait_for(self.ready_models(models), 5)
        except Exception:
            ok = False
        self._ready_cache[key] = (time.monotonic(), ok)
        return ok

    def forget_readiness(self) -> None:
        self._ready_cache.clear()

    async def output_dims(self, model: str, output: str) -> list[int]:
        try:
            meta = await self._client().get_model_metadata(model, headers=self.headers, as_json=True)
        except Exception as exc:
            raise from_triton(exc) from None
        for out in meta.get("outputs", []):
            if out["name"] == output:
                return [int(d) for d in out["shape"]]
        return []

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        for channel in self._channels:
            await channel.close()
        for client in self._clients:
            try:
                await client.close()
            except Exception:  # closing a dead channel is not an error
                log.debug("closing a gRPC channel failed", exc_info=True)
