"""Export StructBERT / BERT checkpoints to ONNX and TorchScript, validate them, write Triton repositories."""

from __future__ import annotations

__all__ = ["__version__"]
from structbert_client import __version__
