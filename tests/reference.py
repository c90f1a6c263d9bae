"""The PyTorch references the end-to-end tests compare against. They live in the benchmark
package (they are also the eager one-request-at-a-time baseline users run today), written from
pipelines.md independently of the export and serving code."""

from __future__ import annotations

from structbert_bench.baseline import (  # noqa: F401
    SiameseUieReference,
    load_classifier,
    load_reference,
    mean_pooled,
    np_softmax,
    pair_logits,
    rerank_reference,
    zero_shot_reference,
)
