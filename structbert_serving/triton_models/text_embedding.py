"""Triton model (BLS): TEXT (BYTES [batch, 1]) -> EMBEDDING (FP32 [batch, hidden]).

Tokenises every text of the dynamic batch in one call and sends the rows to ``embedding_encoder``
(mean pooling and L2 normalisation are in its graph); a bounded queue refuses overload here.

The adapter only: the pipeline is ``structbert_serving.pipelines.TextEmbedding``.
"""

from __future__ import annotations

from structbert_serving import pipelines, triton_io


class TritonPythonModel(triton_io.PipelineModel):
    pipeline_type = pipelines.TextEmbedding
