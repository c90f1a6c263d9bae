"""The PyTorch references the end-to-end tests compare against. They live in
``structbert_export.reference`` (they are also the bench's eager one-request-at-a-time baseline),
written from pipelines.md independently of the export and serving code."""

from __future__ import annotations

from structbert_export.reference import *  # noqa: F403
