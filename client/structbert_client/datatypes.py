"""The one Triton datatype table: the wire name (``FP32``, ``BYTES``), its numpy dtype, and its
``config.pbtxt`` spelling (``TYPE_FP32``, ``TYPE_STRING``). The SDK, the gateway, the serving
library and the load tools read it from here."""

from __future__ import annotations

import numpy as np

NUMPY: dict[str, type] = {
    "BYTES": np.object_, "BOOL": np.bool_, "INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
_WIRE = {np.dtype(v).name: k for k, v in NUMPY.items()}


def datatype_of(array: np.ndarray) -> str:
    """The wire datatype of a numpy array (object arrays hold BYTES)."""
    try:
        return _WIRE[array.dtype.name]
    except KeyError:
        raise TypeError(f"no Triton datatype for numpy {array.dtype}") from None


def config_type(datatype: str) -> str:
    """``FP32`` -> ``TYPE_FP32``; ``BYTES`` -> ``TYPE_STRING`` (config.pbtxt's spelling)."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def numpy_of_config(data_type: str) -> type:
    """``TYPE_FP32`` -> ``np.float32`` (a model config's ``data_type``)."""
    name = data_type.removeprefix("TYPE_")
    return NUMPY["BYTES" if name == "STRING" else name]
