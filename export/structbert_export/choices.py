"""The options export, serve and bench accept, defined once (importable without torch, so the CLI
builds its argument parser from them)."""

from __future__ import annotations

from structbert_registry.families import TASKS  # the task-family registry

__all__ = ["ATTENTIONS", "DEVICES", "FLAVOURS", "FORMATS", "OVERLENGTH", "PRECISIONS", "SYNTHETIC_SIZES", "TASKS"]

PRECISIONS = ("fp32", "fp16", "int8")
FORMATS = ("onnx", "torchscript")
FLAVOURS = ("embedded", "native")
SYNTHETIC_SIZES = ("tiny", "base", "large")
DEVICES = ("auto", "cpu", "cuda")
ATTENTIONS = ("eager", "sdpa")
OVERLENGTH = ("truncate", "reject")
