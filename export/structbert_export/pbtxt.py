"""Render Triton ``config.pbtxt`` from plain dicts through Triton's own ``ModelConfig`` protobuf.

Going through the protobuf means every rendered config parses by construction; tests parse the
written files back as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from structbert_client.datatypes import NUMPY, config_type

# numpy dtype name ("bytes" for BYTES) -> config.pbtxt data_type, from the one table (structbert_client.datatypes)
TRITON_DTYPES = {("bytes" if k == "BYTES" else np.dtype(v).name): config_type(k) for k, v in NUMPY.items()}


def tensor(name: str, dtype: str, dims: list[int], **extra) -> dict:
    """A config tensor; ``dtype`` is a numpy dtype name (``float32``, ``bytes``) or a wire datatype (``FP32``)."""
    data_type = config_type(dtype) if dtype in NUMPY else TRITON_DTYPES[dtype]
    return {"name": name, "data_type": data_type, "dims": dims, **extra}


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
