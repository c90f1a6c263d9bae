"""structbert-triton's benchmark harness: our pipelines on the embedded server vs the PyTorch eager
baseline (one request at a time, no server), in one run on one machine."""

from __future__ import annotations
