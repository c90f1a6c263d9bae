"""Triton model (BLS): TEXT_A, TEXT_B (BYTES [batch, 1]) -> PROBS (FP32 [batch, labels], softmax of
the classifier's logits) and LABELS (BYTES [batch, labels], the checkpoint's label names).

Each row is tokenised as one pair, ``[CLS] a [SEP] b [SEP]`` with token types 0/1, truncating the
longer text first (``longest_first``, as ModelScope's preprocessor does), and classified by
``pair_classifier``.
"""

from __future__ import annotations

import numpy as np

from structbert_client import api
from structbert_serving.bls import TokenPipeline
from structbert_serving.classification import softmax
from structbert_serving.params import PairClassificationParams


class TritonPythonModel(TokenPipeline):
    columns = (api.TEXT_A, api.TEXT_B)
    pair = True
    encoder_output = "LOGITS"
    params_type = PairClassificationParams

    def initialize(self, args):
        super().initialize(args)
        self.labels = np.array([str(s).encode() for s in self.settings.labels], dtype=object)

    def finish(self, outputs, context):
        logits = outputs[0]
        return {api.PROBS: softmax(logits, axis=-1), api.LABELS: np.tile(self.labels, (logits.shape[0], 1))}
