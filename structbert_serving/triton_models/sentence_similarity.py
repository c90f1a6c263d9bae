"""Triton model (BLS): TEXT_A, TEXT_B (BYTES [batch, 1]) -> SCORE (FP32 [batch, 1]), the cosine of
the two texts' embeddings.

Both columns of every request in the dynamic batch are tokenised together (each text on its own,
``[CLS] text [SEP]``) and embedded in one pass through ``embedding_encoder``.

The adapter only: the pipeline is ``structbert_serving.pipelines.SentenceSimilarity``.
"""

from __future__ import annotations

from structbert_serving import pipelines, triton_io


class TritonPythonModel(triton_io.PipelineModel):
    pipeline_type = pipelines.SentenceSimilarity
