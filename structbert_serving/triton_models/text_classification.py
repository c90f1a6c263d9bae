"""Triton model (BLS): TEXT (BYTES [batch, 1]) -> PROBS (FP32 [batch, labels], softmax of the
classifier's logits) and LABELS (BYTES [batch, labels], the checkpoint's label names; ModelScope's
StructBERT sentiment classifiers: ``负面``, ``正面``).

Each row is tokenised as ``[CLS] text [SEP]`` (token types 0) and classified by ``text_classifier``.

The adapter only: the pipeline is ``structbert_serving.pipelines.TextClassification``.
"""

from __future__ import annotations

from structbert_serving import pipelines, triton_io


class TritonPythonModel(triton_io.PipelineModel):
    pipeline_type = pipelines.TextClassification
