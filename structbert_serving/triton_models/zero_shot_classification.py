"""Triton model (BLS): zero-shot classification through an NLI classifier.

Each row (TEXT, LABELS) fans out into one (text, hypothesis) pair per label. The pairs of every
request in the dynamic batch are tokenised together and sent to the encoder model as a few large
BLS requests (``bls.TokenPipeline``), where they also merge with other instances' pairs in the
encoder's dynamic batcher. RESULT is one JSON string per row: {"labels": [...], "scores": [...]}, sorted.
"""

from __future__ import annotations

import json

import numpy as np

from structbert_client import api
from structbert_serving import triton_io
from structbert_serving.bls import Parsed, TokenPipeline
from structbert_serving.errors import InputError
from structbert_serving.params import ZeroShotParams
from structbert_serving.texts import check_texts, decode_texts
from structbert_serving.zero_shot import (
    DEFAULT_TEMPLATE,
    NliIndices,
    check_template,
    hypotheses,
    parse_labels,
    score,
)


class TritonPythonModel(TokenPipeline):
    encoder_output = "LOGITS"
    params_type = ZeroShotParams  # export writes pair_truncation only_first: never cut the hypothesis

    def initialize(self, args):
        super().initialize(args)
        self.max_labels = self.settings.max_labels
        self.indices = NliIndices(self.settings.entailment_index, self.settings.contradiction_index)

    def parse(self, request) -> Parsed:
        """One (text, hypothesis) pair per label of every row; the context keeps each row's labels
        and mode for scoring."""
        texts = decode_texts(triton_io.input_array(request, api.TEXT), api.TEXT)
        check_texts(texts, api.TEXT, max_chars=self.max_chars)
        raw_labels = decode_texts(triton_io.input_array(request, api.LABELS), api.LABELS)
        templates = triton_io.input_array(request, api.HYPOTHESIS_TEMPLATE, required=False)
        templates = decode_texts(templates, api.HYPOTHESIS_TEMPLATE) if templates is not None else [DEFAULT_TEMPLATE]
        multi = triton_io.input_array(request, api.MULTI_LABEL, required=False)
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
