"""Triton model (BLS): TEXT_A, TEXT_B (BYTES [batch, 1]) -> SCORE (FP32 [batch, 1]), the cosine of
the two texts' embeddings.

Both columns of every request in the dynamic batch are tokenised together (each text on its own,
``[CLS] text [SEP]``) and embedded in one pass through ``embedding_encoder``.
"""

from __future__ import annotations

from structbert_client import api
from structbert_serving.bls import TokenPipeline
from structbert_serving.similarity import cosine


class TritonPythonModel(TokenPipeline):
    columns = (api.TEXT_A, api.TEXT_B)

    def finish(self, outputs, context):
        embeddings_a, embeddings_b = outputs
        return {api.SCORE: cosine(embeddings_a, embeddings_b)[:, None]}
