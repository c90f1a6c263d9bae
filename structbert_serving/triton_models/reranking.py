"""Triton model (BLS): cross-encoder reranking.

QUERY (BYTES [batch, 1]) and PASSAGES (BYTES [batch, N]; requests with different N batch together),
optional TOP_N (INT32 [batch, 1]) -> SCORES (FP32 [batch, N], relevance in passage order),
RAW_SCORES (FP32 [batch, N], logit or log-odds) and ORDER (INT32 [batch, top_n], passage indices best
first). Each (query, passage) is one pair ``[CLS] query [SEP] passage [SEP]``, cut from the passage
only (``only_second``: the query survives); the pairs of every request in the dynamic batch go
through the encoder together (``pipelines.TokenPipeline``), scored with ``structbert_serving.reranking``.

The adapter only: the pipeline is ``structbert_serving.pipelines.Reranking``.
"""

from __future__ import annotations

from structbert_serving import pipelines, triton_io


class TritonPythonModel(triton_io.PipelineModel):
    pipeline_type = pipelines.Reranking
