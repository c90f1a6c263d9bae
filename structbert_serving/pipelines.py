"""One pipeline class per public token model: tokenise -> encode -> post-process, free of Triton.

The Python-backend adapters (``triton_models/``), the bench's in-process reference
(``structbert_bench.overhead``) and tests call the same object, so what the server does to a text and
what a reference measures cannot drift apart. A pipeline is built from the model's typed parameters
(:mod:`structbert_serving.params`), a ``tokenizer.json`` and a *runner*, the only step that touches a
runtime: :class:`LocalRunner` (the encoder artifact in this process) or the adapters' BLS runner
(``triton_io.BlsRunner``, the encoder model through Triton). Each answer says how many tokens its
request used (:class:`Answer`), so no caller tokenises a second time to count them.

Steps, as Hugging Face's pipelines split them: :meth:`TokenPipeline.parse` (one request's inputs ->
what to tokenise), :meth:`TokenPipeline.preprocess` (every request's texts in one tokeniser call),
the runner (every row of every request), :meth:`TokenPipeline.finish` (per request). A bad request
fails alone (:mod:`structbert_serving.isolation`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from structbert_client import api

from . import reranking
from .classification import softmax
from .encoder import RaggedEncoder
from .errors import InputError
from .isolation import guarded, per_request, run_valid, run_valid_async
from .params import PairClassificationParams, PipelineParams, RerankingParams, ZeroShotParams
from .similarity import cosine
from .texts import check_texts, decode_texts
from .tokenization import Batch, TextTokenizer
from .zero_shot import DEFAULT_TEMPLATE, NliIndices, check_template, hypotheses, parse_labels, score

# one request's inputs: get(name) -> array (InputError when missing), get(name, required=False) -> array | None
Inputs = Callable[..., "np.ndarray | None"]
# every row of every request -> the encoder output of each row, in order (or an awaitable of it)
Runner = Callable[[list[Batch]], "np.ndarray | Awaitable[np.ndarray]"]


def mapping_inputs(values: Mapping[str, Any]) -> Inputs:
    """:data:`Inputs` over a dict (a string becomes a [1, 1] BYTES row): the in-process callers'."""

    def get(name: str, required: bool = True) -> np.ndarray | None:
        if name not in values:
            if required:
                raise InputError(f"input {name} is missing")
            return None
        value = values[name]
        if isinstance(value, str):
            return np.array([[value.encode()]], dtype=object)
        return np.asarray(value)

    return get


@dataclass
class Parsed:
    """A decoded request: groups to tokenise, and whatever ``finish`` needs besides the encoder's
    output (zero-shot: the labels and the mode of each row)."""

    groups: list[tuple[str, list]]
    context: object = None


@dataclass
class Answer:
    """One request's outputs (public tensor name -> array) and the real tokens it used."""

    outputs: dict[str, np.ndarray]
    tokens: int


class LocalRunner:
    """The encoder artifact in this process (:class:`RaggedEncoder`: rows sorted by length, padded
    once per chunk)."""

    def __init__(self, encoder: RaggedEncoder, output: str):
        self.encoder, self.output = encoder, output

    def __call__(self, flat: list[Batch]) -> np.ndarray:
        feeds = [{"INPUT_IDS": b.input_ids, "ATTENTION_MASK": b.attention_mask, "TOKEN_TYPE_IDS": b.token_type_ids}
                 for b in flat]
        outputs = []
        for result in self.encoder.run(feeds):
            if isinstance(result, Exception):
                raise result
            outputs.append(result[self.output])
        return np.concatenate(outputs)


class TokenPipeline:
    """Base of the public models that tokenise texts, run one encoder over every row, and
    post-process per request. Subclasses set ``columns`` (the BYTES inputs), ``pair`` (tokenise the
    two columns as one sequence pair), ``encoder_output``, ``params_type`` and ``finish``; or
    override ``parse``."""

    columns: tuple[str, ...] = (api.TEXT,)
    pair: bool = False
    encoder_output = api.EMBEDDING
    params_type: type[PipelineParams] = PipelineParams  # the parameters export writes for this model

    def __init__(self, settings: PipelineParams, tokenizer: str | Path, runner: Runner | None = None):
        self.settings = settings
        self.max_chars = settings.max_chars
        self.tokenizer = TextTokenizer(tokenizer, max_length=settings.max_length, overlength=settings.overlength,
                                       length_buckets=settings.length_buckets,
                                       pair_truncation=settings.pair_truncation)
        self.runner = runner

    def parse(self, get: Inputs) -> Parsed:
        """The request's groups to tokenise: [(input name for messages, texts or (text, pair) tuples)]."""
        columns = []
        for name in self.columns:
            texts = decode_texts(get(name), name)
            check_texts(texts, name, max_chars=self.max_chars)
            columns.append(texts)
        if len(columns) > 1 and len(columns[0]) != len(columns[1]):
            raise InputError(f"{self.columns[0]} has {len(columns[0])} rows and {self.columns[1]} "
                             f"{len(columns[1])}; send them paired one to one")
        if self.pair:
            return Parsed([("/".join(self.columns), list(zip(*columns)))])
        return Parsed(list(zip(self.columns, columns)))

    def finish(self, outputs: list[np.ndarray], context) -> dict[str, np.ndarray]:
        """The request's result from the encoder output of each of its groups."""
        raise NotImplementedError

    def _tokenise(self, parsed: list[Parsed]) -> list[tuple[list[Batch], object] | Exception]:
        """All groups of all requests in one tokeniser call; a bad text fails its request only."""
        groups = [g for p in parsed for g in p.groups]
        encoded = iter(self.tokenizer.encode_many([items for _, items in groups], [name for name, _ in groups]))
        out: list[tuple[list[Batch], object] | Exception] = []
        for p in parsed:
            batches = [next(encoded) for _ in p.groups]
            out.append(next((b for b in batches if isinstance(b, Exception)), (batches, p.context)))
        return out

    def preprocess(self, requests: Sequence[Inputs]) -> list:
        """Each request parsed and tokenised, or its error."""
        return run_valid(per_request(requests, self.parse), self._tokenise)

    def postprocess(self, pending: list[tuple[list[Batch], object]], out: np.ndarray) -> list:
        """``finish`` per request, each on its slice of the encoder output of all rows."""
        results, cursor = [], 0
        for batches, context in pending:
            parts = []
            for b in batches:
                parts.append(out[cursor:cursor + len(b.input_ids)])
                cursor += len(b.input_ids)
            result = guarded(self.finish, parts, context)
            tokens = sum(int(b.attention_mask.sum()) for b in batches)
            results.append(result if isinstance(result, Exception) else Answer(result, tokens))
        return results

    @staticmethod
    def _rows(pending) -> list[Batch]:
        return [b for batches, _ in pending for b in batches]

    def __call__(self, requests: Sequence[Inputs]) -> list[Answer | Exception]:
        """One dynamic batch with a synchronous runner: an :class:`Answer` or an error per request."""
        return run_valid(self.preprocess(requests), lambda p: self.postprocess(p, self.runner(self._rows(p))))

    async def acall(self, requests: Sequence[Inputs]) -> list[Answer | Exception]:
        """:meth:`__call__` with a runner that returns an awaitable (BLS)."""
        async def forward(pending):
            out = self.runner(self._rows(pending))
            return self.postprocess(pending, await out if inspect.isawaitable(out) else out)

        return await run_valid_async(self.preprocess(requests), forward)


def _labels(settings: PairClassificationParams) -> np.ndarray:
    return np.array([str(s).encode() for s in settings.labels], dtype=object)


class TextEmbedding(TokenPipeline):
    """TEXT -> EMBEDDING (mean pooling and L2 normalisation are in the encoder's graph)."""

    def finish(self, outputs, context):
        return {api.EMBEDDING: outputs[0]}


class SentenceSimilarity(TokenPipeline):
    """TEXT_A, TEXT_B -> SCORE, the cosine of the two texts' embeddings (each text on its own)."""

    columns = (api.TEXT_A, api.TEXT_B)

    def finish(self, outputs, context):
        embeddings_a, embeddings_b = outputs
        return {api.SCORE: cosine(embeddings_a, embeddings_b)[:, None]}


class TextClassification(TokenPipeline):
    """TEXT -> PROBS (softmax of the classifier's logits), LABELS (the checkpoint's label names)."""

    encoder_output = "LOGITS"
    params_type = PairClassificationParams  # the token pipeline's parameters and the label names

    def __init__(self, settings, tokenizer, runner=None):
        super().__init__(settings, tokenizer, runner)
        self.labels = _labels(settings)

    def finish(self, outputs, context):
        logits = outputs[0]
        return {api.PROBS: softmax(logits, axis=-1), api.LABELS: np.tile(self.labels, (logits.shape[0], 1))}


class PairClassification(TextClassification):
    """TEXT_A, TEXT_B as one pair ``[CLS] a [SEP] b [SEP]`` -> PROBS, LABELS."""

    columns = (api.TEXT_A, api.TEXT_B)
    pair = True


class ZeroShotClassification(TokenPipeline):
    """TEXT, LABELS (+ HYPOTHESIS_TEMPLATE, MULTI_LABEL) -> RESULT (JSON labels and scores, sorted):
    one (text, hypothesis) pair per label through an NLI classifier."""

    encoder_output = "LOGITS"
    params_type = ZeroShotParams  # export writes pair_truncation only_first: never cut the hypothesis

    def __init__(self, settings, tokenizer, runner=None):
        super().__init__(settings, tokenizer, runner)
        self.max_labels = settings.max_labels
        self.indices = NliIndices(settings.entailment_index, settings.contradiction_index)

    def parse(self, get: Inputs) -> Parsed:
        """One (text, hypothesis) pair per label of every row; the context keeps each row's labels
        and mode for scoring."""
        texts = decode_texts(get(api.TEXT), api.TEXT)
        check_texts(texts, api.TEXT, max_chars=self.max_chars)
        raw_labels = decode_texts(get(api.LABELS), api.LABELS)
        templates = get(api.HYPOTHESIS_TEMPLATE, required=False)
        templates = decode_texts(templates, api.HYPOTHESIS_TEMPLATE) if templates is not None else [DEFAULT_TEMPLATE]
        multi = get(api.MULTI_LABEL, required=False)
        multi = [bool(x) for x in multi.reshape(-1)] if multi is not None else [False]
        n = len(texts)
        columns = {api.LABELS: raw_labels, api.HYPOTHESIS_TEMPLATE: templates, api.MULTI_LABEL: multi}
        for name, column in columns.items():
            if len(column) not in (1, n):
                raise InputError(f"{name} has {len(column)} rows but {api.TEXT} has {n}; send 1 or {n}")
        pairs, rows = [], []
        for i, text in enumerate(texts):
            labels = parse_labels(raw_labels[i % len(raw_labels)], max_labels=self.max_labels)
            template = check_template(templates[i % len(templates)])
            pairs.extend((text, hypothesis) for hypothesis in hypotheses(labels, template))
            rows.append((labels, multi[i % len(multi)]))
        return Parsed([(f"{api.TEXT}/{api.LABELS}", pairs)], rows)

    def finish(self, outputs, rows):
        logits, cursor, out = outputs[0], 0, []
        for labels, multi in rows:
            ranked = score(logits[cursor:cursor + len(labels)], labels, multi_label=multi, indices=self.indices)
            out.append(json.dumps(ranked, ensure_ascii=False).encode())
            cursor += len(labels)
        return {api.RESULT: np.array(out, dtype=object).reshape(-1, 1)}


class Reranking(TokenPipeline):
    """QUERY, PASSAGES (+ TOP_N) -> SCORES, RAW_SCORES, ORDER: each (query, passage) one pair, cut
    from the passage only (``only_second``: the query survives)."""

    params_type = RerankingParams
    encoder_output = "LOGITS"

    def parse(self, get: Inputs) -> Parsed:
        queries = decode_texts(get(api.QUERY), api.QUERY)
        check_texts(queries, api.QUERY, max_chars=self.max_chars)
        passages = get(api.PASSAGES)
        if passages.ndim != 2 or passages.shape[0] != len(queries):
            raise InputError(f"{api.PASSAGES} must have shape [{len(queries)}, passages] (one row per {api.QUERY}), "
                             f"got {list(passages.shape)}")
        top_n = get(api.TOP_N, required=False)
        wanted = sorted({int(x) for x in top_n.reshape(-1)}) if top_n is not None else [None]
        if len(wanted) > 1:
            raise InputError(f"{api.TOP_N} differs between the rows of one request ({wanted}); send one value")
        pairs, rows = [], []
        for query, row in zip(queries, passages):
            texts = decode_texts(row, api.PASSAGES)
            reranking.check_passages(texts, self.settings.max_passages, api.PASSAGES)
            check_texts(texts, api.PASSAGES, max_chars=self.max_chars)
            pairs.extend((query, text) for text in texts)
            rows.append(len(texts))
        top = reranking.check_top_n(wanted[0], rows[0], api.TOP_N)
        return Parsed([(f"{api.QUERY}/{api.PASSAGES}", pairs)], (rows, top))

    def finish(self, outputs, context):
        (logits,) = outputs
        rows, top = context
        raw = reranking.raw_scores(logits, self.settings.relevance_index).reshape(len(rows), rows[0])
        scores = reranking.sigmoid(raw)
        order = np.stack([reranking.ranking(row, top) for row in scores])
        return {api.SCORES: scores, api.RAW_SCORES: raw, api.ORDER: order}


# public model name -> its pipeline class
PIPELINES: dict[str, type[TokenPipeline]] = {
    api.TEXT_EMBEDDING.name: TextEmbedding,
    api.SENTENCE_SIMILARITY.name: SentenceSimilarity,
    api.TEXT_CLASSIFICATION.name: TextClassification,
    api.PAIR_CLASSIFICATION.name: PairClassification,
    api.ZERO_SHOT_CLASSIFICATION.name: ZeroShotClassification,
    api.RERANKING.name: Reranking,
}
