"""Triton model (BLS): zero-shot classification through an NLI classifier.

Each row (TEXT, LABELS) fans out into one (text, hypothesis) pair per label. The pairs of every
request in the dynamic batch are tokenised together and sent to the encoder model as a few large
BLS requests (``async_exec``), where they also merge with other instances' pairs in the encoder's
dynamic batcher. RESULT is one JSON string per row: {"labels": [...], "scores": [...]}, sorted.
"""

from __future__ import annotations

import json

import numpy as np

from structbert_serving import bls, triton_io
from structbert_serving.errors import InputError
from structbert_serving.params import get_param
from structbert_serving.texts import DEFAULT_MAX_CHARS, check_texts, decode_texts
from structbert_serving.tokenization import TextTokenizer, bucket_length
from structbert_serving.zero_shot import (
    DEFAULT_TEMPLATE,
    MAX_LABELS,
    NliIndices,
    check_template,
    hypotheses,
    parse_labels,
    score,
)


class TritonPythonModel:
    def initialize(self, args):
        _, params, self.dtypes = triton_io.setup(args)
        self.max_chars = get_param(params, "max_chars", DEFAULT_MAX_CHARS)
        self.max_labels = get_param(params, "max_labels", MAX_LABELS)
        self.encoder, self.names, self.encoder_batch = bls.encoder_settings(params, "zero_shot_classifier")
        self.indices = NliIndices(get_param(params, "entailment_index", 0), get_param(params, "contradiction_index", 2))
        self.tokenizer = TextTokenizer(
            triton_io.version_dir(args) / "tokenizer.json", max_length=get_param(params, "max_length", 512),
            overlength=get_param(params, "overlength", "truncate"), pair_truncation="only_first",
            length_buckets=get_param(params, "length_buckets", []))

    def _parse(self, request):
        """-> list of (text, labels, multi_label) per row of the request."""
        texts = decode_texts(triton_io.input_array(request, "TEXT"), "TEXT")
        check_texts(texts, "TEXT", max_chars=self.max_chars)
        raw_labels = decode_texts(triton_io.input_array(request, "LABELS"), "LABELS")
        templates = triton_io.input_array(request, "HYPOTHESIS_TEMPLATE", required=False)
        templates = decode_texts(templates, "HYPOTHESIS_TEMPLATE") if templates is not None else [DEFAULT_TEMPLATE]
        multi = triton_io.input_array(request, "MULTI_LABEL", required=False)
        multi = [bool(x) for x in multi.reshape(-1)] if multi is not None else [False]
        n = len(texts)
        columns = {"LABELS": raw_labels, "HYPOTHESIS_TEMPLATE": templates, "MULTI_LABEL": multi}
        for name, column in columns.items():
            if len(column) not in (1, n):
                raise InputError(f"{name} has {len(column)} rows but TEXT has {n}; send 1 or {n}")
        rows = []
        for i, text in enumerate(texts):
            labels = parse_labels(raw_labels[i % len(raw_labels)], max_labels=self.max_labels)
            template = check_template(templates[i % len(templates)])
            rows.append((text, labels, hypotheses(labels, template), multi[i % len(multi)]))
        return rows

    async def _logits(self, batch) -> np.ndarray:
        """Run all pairs through the encoder; with length buckets (native encoder) grouped by bucket."""
        widths = None
        if self.tokenizer.length_buckets:
            widths = [bucket_length(int(n), self.tokenizer.length_buckets) for n in batch.lengths]
        feeds = {"INPUT_IDS": batch.input_ids, "ATTENTION_MASK": batch.attention_mask,
                 "TOKEN_TYPE_IDS": batch.token_type_ids}
        out = await bls.infer_rows(self.encoder, feeds, ["LOGITS"], names=self.names, max_rows=self.encoder_batch,
                                   widths=widths)
        return out["LOGITS"]

    async def execute(self, requests):
        parsed = triton_io.per_request(requests, self._parse)
        groups = [[(text, hyp) for text, _, hyps, _ in rows for hyp in hyps]
                  for rows in parsed if not isinstance(rows, Exception)]
        encoded = iter(self.tokenizer.encode_many(groups, "TEXT/LABELS"))
        results: list = []
        pending = []  # (request index, rows, token batch)
        for r, rows in enumerate(parsed):
            if isinstance(rows, Exception):
                results.append(rows)
                continue
            batch = next(encoded)
            results.append(batch if isinstance(batch, Exception) else None)
            if not isinstance(batch, Exception):
                pending.append((r, rows, batch))
        if pending:
            merged = self.tokenizer.pad(
                [ids[m > 0] for _, _, b in pending for ids, m in zip(b.input_ids, b.attention_mask)],
                [t[m > 0] for _, _, b in pending for t, m in zip(b.token_type_ids, b.attention_mask)])
            try:
                logits = await self._logits(merged)
            except Exception as exc:  # the encoder failed: every pending request gets the error
                for r, _, _ in pending:
                    results[r] = exc
                return triton_io.responses(results, self.dtypes)
            cursor = 0
            for r, rows, _ in pending:
                out = []
                for _, labels, _, multi in rows:
                    out.append(json.dumps(score(logits[cursor:cursor + len(labels)], labels, multi_label=multi,
                                                indices=self.indices), ensure_ascii=False).encode())
                    cursor += len(labels)
                results[r] = {"RESULT": np.array(out, dtype=object).reshape(-1, 1)}
        return triton_io.responses(results, self.dtypes)
