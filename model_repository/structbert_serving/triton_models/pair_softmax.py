"""Triton model: LOGITS (FP32 [labels]) -> PROBS (FP32 softmax) and LABELS (BYTES label names)."""

from __future__ import annotations

import json

import numpy as np

from structbert_serving import triton_io
from structbert_serving.classification import softmax


class TritonPythonModel:
    def initialize(self, args):
        _, params, self.dtypes = triton_io.setup(args)
        self.labels = np.array([s.encode() for s in json.loads(params["labels"])], dtype=object)

    def _probs(self, request):
        logits = triton_io.input_array(request, "LOGITS")
        return {"PROBS": softmax(logits, axis=-1), "LABELS": np.tile(self.labels, (logits.shape[0], 1))}

    def execute(self, requests):
        return triton_io.responses(triton_io.per_request(requests, self._probs), self.dtypes)
