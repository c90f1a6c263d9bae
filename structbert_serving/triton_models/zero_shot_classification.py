"""Triton model (BLS): zero-shot classification through an NLI classifier.

Each row (TEXT, LABELS) fans out into one (text, hypothesis) pair per label. The pairs of every
request in the dynamic batch are tokenised together and sent to the encoder model as a few large
BLS requests (``pipelines.TokenPipeline``), where they also merge with other instances' pairs in the
encoder's dynamic batcher. RESULT is one JSON string per row: {"labels": [...], "scores": [...]}, sorted.

The adapter only: the pipeline is ``structbert_serving.pipelines.ZeroShotClassification``.
"""

from __future__ import annotations

from structbert_serving import pipelines, triton_io


class TritonPythonModel(triton_io.PipelineModel):
    pipeline_type = pipelines.ZeroShotClassification
