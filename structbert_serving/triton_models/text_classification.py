"""Triton model (BLS): TEXT (BYTES [batch, 1]) -> PROBS (FP32 [batch, labels], softmax of the
classifier's logits) and LABELS (BYTES [batch, labels], the checkpoint's label names; ModelScope's
StructBERT sentiment classifiers: ``负面``, ``正面``).

Each row is tokenised as ``[CLS] text [SEP]`` (token types 0) and classified by ``text_classifier``.
"""

from __future__ import annotations

import numpy as np

from structbert_client import api
from structbert_serving.bls import TokenPipeline
from structbert_serving.classification import softmax
from structbert_serving.params import PairClassificationParams


class TritonPythonModel(TokenPipeline):
    columns = (api.TEXT,)
    encoder_output = "LOGITS"
    params_type = PairClassificationParams  # the token pipeline's parameters and the label names

    def initialize(self, args):
        super().initialize(args)
        self.labels = np.array([str(s).encode() for s in self.settings.labels], dtype=object)

    def finish(self, outputs, context):
        logits = outputs[0]
        return {api.PROBS: softmax(logits, axis=-1), api.LABELS: np.tile(self.labels, (logits.shape[0], 1))}
