"""Triton model (BLS): TEXT_A, TEXT_B (BYTES [batch, 1]) -> PROBS (FP32 [batch, labels], softmax of
the classifier's logits) and LABELS (BYTES [batch, labels], the checkpoint's label names).

Each row is tokenised as one pair, ``[CLS] a [SEP] b [SEP]`` with token types 0/1, truncating the
longer text first (``longest_first``, as ModelScope's preprocessor does), and classified by
``pair_classifier``.

The adapter only: the pipeline is ``structbert_serving.pipelines.PairClassification``.
"""

from __future__ import annotations

from structbert_serving import pipelines, triton_io


class TritonPythonModel(triton_io.PipelineModel):
    pipeline_type = pipelines.PairClassification
