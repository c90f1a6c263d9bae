"""``StructBertClient``: a thin SDK over ``tritonclient`` (gRPC or HTTP). Imports no torch."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import api
from .datatypes import datatype_of
from .errors import InvalidInputError, ServerUnavailableError, translate

log = logging.getLogger(__name__)

PROTOCOLS = ("grpc", "http")


def _as_list(texts: str | Sequence[str], name: str) -> tuple[list[str], bool]:
    """(texts as a list, whether a single string came in)."""
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, (bytes, bytearray)):
        raise InvalidInputError(f"{name} must be str or a list of str, not bytes; decode it first")
    items = list(texts)
    if not items:
        raise InvalidInputError(f"{name} is an empty list; send at least one text")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInputError(f"{name}[{i}] is {type(item).__name__}; every item must be str")
    return items, False


def _pairs(texts_a, texts_b) -> tuple[list[str], list[str], bool]:
    a, single_a = _as_list(texts_a, "texts_a")
    b, single_b = _as_list(texts_b, "texts_b")
    if len(a) != len(b):
        raise InvalidInputError(f"texts_a has {len(a)} items and texts_b {len(b)}; pair them one to one")
    return a, b, single_a and single_b


def _check_schema_keys(schema, where: str = "schema") -> None:
    """JSON turns non-string keys into strings silently; refuse them instead."""
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"{where} has a {type(key).__name__} key {key!r}; types must be strings")
        _check_schema_keys(value, f"{where}[{key!r}]")


def _str(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _channel_args(triton, max_backoff_s: float) -> list[tuple[str, int]]:
    """tritonclient's own channel options (message sizes, keepalive), plus a reconnect backoff capped
    at ``max_backoff_s``: gRPC's default grows to 120 s, so a channel that failed while a server
    restarted went on failing fast long after the server was back."""
    keepalive = triton.KeepAliveOptions()
    cap_ms = max(100, int(max_backoff_s * 1000))
    return [
        ("grpc.max_send_message_length", triton.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", triton.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", min(1000, cap_ms)),
        ("grpc.max_reconnect_backoff_ms", cap_ms),
    ]


class StructBertClient:
    """Talk to a structbert-triton server.

    >>> client = StructBertClient("localhost:8001", protocol="grpc")
    >>> client.similarity("今天天气很好", "今天天气不错")
    0.93...

    A ``str`` in gives one result; a list gives a list (embeddings: a 2-D array). Lists longer than
    ``batch_size`` are sent in several requests. Failures raise the SDK's own exceptions
    (:mod:`structbert_client.errors`); only unavailable/overloaded errors are retried, with
    exponential backoff (at most ``max_backoff_s`` between tries) and jitter. ``admin_key`` sends
    the header the restricted admin APIs (statistics, config, repository) expect, on either protocol.
    """

    def __init__(self, url: str = "localhost:8001", protocol: str = "grpc", *, timeout_s: float = 60.0,
                 batch_size: int = 32, retries: int = 2, backoff_s: float = 0.2, max_backoff_s: float = 5.0,
                 headers: dict[str, str] | None = None, admin_key: str | None = None, ssl: bool = False,
                 ssl_options: dict[str, Any] | None = None, verbose: bool = False):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_backoff_s < 0 or backoff_s < 0:
            raise ValueError("backoff_s and max_backoff_s must be at least 0")
        self.url = url
        self.protocol = protocol
        self.timeout_s = float(timeout_s)
        self.batch_size = int(batch_size)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.headers = dict(headers or {})
        if admin_key:  # restricted admin APIs: Triton prefixes the header on gRPC
            self.headers["admin-key" if protocol == "http" else "triton-grpc-protocol-admin-key"] = admin_key
        ssl_options = dict(ssl_options or {})
        if protocol == "grpc":
            import tritonclient.grpc as triton

            self._client = triton.InferenceServerClient(url, verbose=verbose, ssl=ssl,
                                                        channel_args=_channel_args(triton, self.max_backoff_s),
                                                        **ssl_options)
        else:
            import tritonclient.http as triton

            self._client = triton.InferenceServerClient(
                url, verbose=verbose, ssl=ssl, connection_timeout=self.timeout_s, network_timeout=self.timeout_s,
                **ssl_options)
        self._triton = triton

    # -- plumbing ---------------------------------------------------------------------------------

    def _input(self, name: str, array: np.ndarray):
        tensor = self._triton.InferInput(name, list(array.shape), datatype_of(array))
        tensor.set_data_from_numpy(array)
        return tensor

    def _call(self, model: str, inputs: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        tensors = [self._input(k, v) for k, v in inputs.items()]
        requested = [self._triton.InferRequestedOutput(name) for name in outputs]
        kwargs: dict[str, Any] = {"headers": self.headers or None}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        attempt = 0
        while True:
            try:
                result = self._client.infer(model, tensors, outputs=requested, **kwargs)
                return {name: result.as_numpy(name) for name in outputs}
            except Exception as exc:
                error = translate(exc)
                if not isinstance(error, ServerUnavailableError) or attempt >= self.retries:
                    raise error from None
                delay = min(self.backoff_s * 2 ** min(attempt, 30), self.max_backoff_s) * (0.5 + random.random())
                log.debug("%s: %s; retry %d in %.2f s", model, error, attempt + 1, delay)
                time.sleep(delay)
                attempt += 1

    @staticmethod
    def _texts(texts: list[str]) -> np.ndarray:
        return np.array([[t.encode("utf-8")] for t in texts], dtype=object)

    def _chunks(self, n: int):
        for start in range(0, n, self.batch_size):
            yield slice(start, min(n, start + self.batch_size))

    # -- public API -------------------------------------------------------------------------------

    def embed(self, texts: str | Sequence[str]) -> np.ndarray:
        """L2-normalised mean-pooled embeddings: shape [hidden] for a str, [n, hidden] for a list."""
        items, single = _as_list(texts, "texts")
        parts = [self._call(api.TEXT_EMBEDDING.name, {api.TEXT: self._texts(items[s])}, [api.EMBEDDING])[api.EMBEDDING]
                 for s in self._chunks(len(items))]
        out = np.concatenate(parts, axis=0)
        return out[0] if single else out

    def similarity(self, texts_a: str | Sequence[str], texts_b: str | Sequence[str], *,
                   method: str = "cosine") -> float | list[float]:
        """Similarity of each (a, b) pair.

        ``method="cosine"``: cosine of the two sentence embeddings (bi-encoder, ``sentence_similarity``).
        ``method="pair"``: P(similar) from the pair classifier (cross-encoder, ``pair_classification``),
        i.e. the probability of label ``"1"``.
        """
        a, b, single = _pairs(texts_a, texts_b)
        if method == "pair":
            probs = self.pair_classify(a, b)
            scores = [p.get("1", p[list(p)[-1]]) for p in probs]
        elif method == "cosine":
            scores = []
            for s in self._chunks(len(a)):
                out = self._call(api.SENTENCE_SIMILARITY.name, {api.TEXT_A: self._texts(a[s]), api.TEXT_B: self._texts(b[s])},
                                 [api.SCORE])
                scores.extend(float(x) for x in out[api.SCORE].reshape(-1))
        else:
            raise ValueError(f"method must be 'cosine' or 'pair', not {method!r}")
        return scores[0] if single else scores

    def pair_classify(self, texts_a: str | Sequence[str], texts_b: str | Sequence[str]
                      ) -> dict[str, float] | list[dict[str, float]]:
        """Label probabilities of each (a, b) pair from the pair classifier: ``{label: prob}``."""
        a, b, single = _pairs(texts_a, texts_b)
        results: list[dict[str, float]] = []
        for s in self._chunks(len(a)):
            out = self._call(api.PAIR_CLASSIFICATION.name, {api.TEXT_A: self._texts(a[s]), api.TEXT_B: self._texts(b[s])},
                             [api.PROBS, api.LABELS])
            for probs, labels in zip(out[api.PROBS], out[api.LABELS]):
                results.append({_str(label): float(p) for label, p in zip(labels, probs)})
        return results[0] if single else results

    def text_classify(self, texts: str | Sequence[str]) -> dict[str, float] | list[dict[str, float]]:
        """Label probabilities of each text from the single-text classifier (e.g. sentiment,
        ``text_classification``): ``{label: prob}`` in the checkpoint's label order."""
        items, single = _as_list(texts, "texts")
        results: list[dict[str, float]] = []
        for s in self._chunks(len(items)):
            out = self._call(api.TEXT_CLASSIFICATION.name, {api.TEXT: self._texts(items[s])}, [api.PROBS, api.LABELS])
            for probs, labels in zip(out[api.PROBS], out[api.LABELS]):
                results.append({_str(label): float(p) for label, p in zip(labels, probs)})
        return results[0] if single else results

    def classify(self, texts: str | Sequence[str], labels: str | Sequence[str], *, multi_label: bool = False,
                 hypothesis_template: str = "{}") -> dict[str, list] | list[dict[str, list]]:
        """Zero-shot classification: ``{"labels": [...], "scores": [...]}`` per text, best label first.

        ``labels``: a list, or one string separated by ``,``/``，`` (the same candidates for every
        text). ``multi_label``: score each label independently (entailment vs contradiction)
        instead of a softmax across labels. ``hypothesis_template``: e.g. ``"这篇文章的标题是{}"``.
        """
        items, single = _as_list(texts, "texts")
        if isinstance(labels, str):
            encoded_labels = labels
        else:
            label_list = list(labels)
            if not all(isinstance(x, str) for x in label_list):
                raise InvalidInputError("labels must be strings")
            encoded_labels = json.dumps(label_list, ensure_ascii=False)
        results: list[dict[str, list]] = []
        for s in self._chunks(len(items)):
            chunk = items[s]
            n = len(chunk)
            out = self._call(api.ZERO_SHOT_CLASSIFICATION.name, {
                api.TEXT: self._texts(chunk),
                api.LABELS: self._texts([encoded_labels] * n),
                api.HYPOTHESIS_TEMPLATE: self._texts([hypothesis_template] * n),
                api.MULTI_LABEL: np.full((n, 1), bool(multi_label)),
            }, [api.RESULT])
            results.extend(json.loads(_str(row)) for row in out[api.RESULT].reshape(-1))
        return results[0] if single else results

    def extract(self, texts: str | Sequence[str], schema: dict | str, *, output_all_prefix: bool = False
                ) -> list[list[dict]] | list[list[list[dict]]]:
        """SiameseUIE extraction. For one text: a list of paths, each a list of
        ``{"type", "span", "offset": [start, end]}`` from the top schema level down; for a list of
        texts, one such list per text. ``schema``: e.g. ``{"人物": {"任职": None}, "组织机构": None}``.
        :func:`structbert_client.paths_to_records` flattens paths into ``{type: span}`` records.
        """
        items, single = _as_list(texts, "texts")
        if isinstance(schema, str):
            encoded = schema
        else:
            _check_schema_keys(schema)
            try:
                encoded = json.dumps(schema, ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"schema is not JSON-serialisable: {exc}") from None
        results: list[list[list[dict]]] = []
        for s in self._chunks(len(items)):
            n = len(items[s])
            out = self._call(api.INFORMATION_EXTRACTION.name, {
                api.TEXT: self._texts(items[s]), api.SCHEMA: self._texts([encoded] * n),
                api.OUTPUT_ALL_PREFIX: np.full((n, 1), bool(output_all_prefix)),
            }, [api.RESULT])
            results.extend(json.loads(_str(row)) for row in out[api.RESULT].reshape(-1))
        return results[0] if single else results

    def rerank(self, query: str | Sequence[str], passages: Sequence[str], *, top_n: int | None = None,
               return_passages: bool = False) -> list[dict] | list[list[dict]]:
        """Rank ``passages`` by relevance to ``query`` with the cross-encoder (``reranking``):
        ``[{"index", "score"[, "passage"]}]``, best first, ``top_n`` of them (default all); ``score``
        is the relevance in [0, 1]. A list of queries (each against the same passages) gives one
        such list per query."""
        queries, single = _as_list(query, "query")
        items, _ = _as_list(passages, "passages")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
            raise InvalidInputError(f"top_n must be a positive int (or None for all passages), not {top_n!r}")
        results = []
        for q in queries:
            inputs = {api.QUERY: self._texts([q]), api.PASSAGES: np.array([[p.encode("utf-8") for p in items]],
                                                                          dtype=object)}
            if top_n is not None:
                inputs[api.TOP_N] = np.array([[top_n]], dtype=np.int32)
            out = self._call(api.RERANKING.name, inputs, [api.SCORES, api.ORDER])
            scores, order = out[api.SCORES][0], out[api.ORDER][0]
            results.append([{"index": int(i), "score": float(scores[i]), **({"passage": items[i]} if return_passages
                                                                            else {})} for i in order])
        return results[0] if single else results

    # -- server state -----------------------------------------------------------------------------

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready(headers=self.headers or None))
        except Exception:
            return False

    def model_statistics(self, model: str) -> dict:
        """Triton's statistics for ``model`` as a dict (inference_count, execution_count, ...)."""
        try:
            if self.protocol == "grpc":
                stats = self._client.get_inference_statistics(model, headers=self.headers or None, as_json=True)
            else:
                stats = self._client.get_inference_statistics(model, headers=self.headers or None)
        except Exception as exc:
            raise translate(exc) from None
        return stats["model_stats"][0]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection is not an error
            self._client.close()

    def __enter__(self) -> StructBertClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
