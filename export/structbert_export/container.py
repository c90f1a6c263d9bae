"""The nvcr.io Triton container the native flavour targets, and what its release implies.

The facts live once, in ``container_release.json`` beside this module: export reads them here,
``deploy/Dockerfile`` reads the same file at build time (``deploy/docker/install_stub_deps.py``), and
``tests/contract`` checks every deploy file and every native artifact against them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

FACTS_FILE = "container_release.json"


@dataclass(frozen=True)
class ContainerRelease:
    release: str
    image: str
    triton_server: str
    tritonclient: str  # its model_config proto is the server's (2.72.0 is not on PyPI: see the facts' why)
    embedded_server: str  # the tritonserver of nvidia-pytriton, which the embedded flavour and the e2e tests run
    ubuntu: str
    stub_python: str
    numpy: str
    tokenizers: str
    onnxruntime: str
    onnx_max_opset: int
    onnx_max_ir_version: int
    tensorrt: str
    libtorch: str
    torchscript_native: bool


def facts() -> dict:
    """The release facts as written (with their ``why``)."""
    return json.loads((resources.files("structbert_export") / FACTS_FILE).read_text())


@lru_cache(maxsize=1)
def release() -> ContainerRelease:
    data = facts()
    return ContainerRelease(**{k: data[k] for k in ContainerRelease.__dataclass_fields__})


class IncompatibleArtifactError(ValueError):
    """An artifact the container's runtime cannot load."""


def ensure_onnx_loadable(path: Path, rel: ContainerRelease | None = None) -> dict:
    """Make ``path`` loadable by the container's ONNX Runtime, or refuse it.

    The ai.onnx opset must not exceed what that ORT implements (a newer opset cannot be clamped:
    operators changed). The IR version only records the format's revision: when the opset fits, a
    newer IR version number is lowered to the newest the container reads (IR 10 covers opset 21).
    Returns ``{"opset", "ir_version"}`` as written."""
    import onnx

    rel = rel or release()
    model = onnx.load(str(path), load_external_data=False)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset > rel.onnx_max_opset:
        raise IncompatibleArtifactError(
            f"{path} uses ONNX opset {opset}; ONNX Runtime {rel.onnxruntime} in the {rel.release} container "
            f"loads at most opset {rel.onnx_max_opset}: export with an opset <= {rel.onnx_max_opset}")
    if model.ir_version > rel.onnx_max_ir_version:
        log.info("%s: IR version %d lowered to %d (ONNX Runtime %s)", path.name, model.ir_version,
                 rel.onnx_max_ir_version, rel.onnxruntime)
        model.ir_version = rel.onnx_max_ir_version
        onnx.save(model, str(path))
    return {"opset": opset, "ir_version": int(model.ir_version)}
