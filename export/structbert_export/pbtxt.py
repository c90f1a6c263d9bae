"""Render Triton ``config.pbtxt`` from plain dicts through Triton's own ``ModelConfig`` protobuf.

Going through the protobuf means every rendered config parses by construction; tests parse the
written files back as well.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

TRITON_DTYPES = {"int64": "TYPE_INT64", "float32": "TYPE_FP32", "bytes": "TYPE_STRING", "bool": "TYPE_BOOL",
                 "int32": "TYPE_INT32", "float16": "TYPE_FP16"}


def tensor(name: str, dtype: str, dims: list[int], **extra) -> dict:
    return {"name": name, "data_type": TRITON_DTYPES[dtype], "dims": dims, **extra}


def parameters(values: dict[str, object]) -> dict:
    return {k: {"string_value": str(v)} for k, v in values.items()}


def render(config: dict) -> str:
    message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    return text_format.MessageToString(message, as_utf8=True)


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def write(model_dir: Path, config: dict) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "config.pbtxt"
    path.write_text(render(config))
    return path
