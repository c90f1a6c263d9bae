"""The container-contract tier: what the nvcr.io container (its release pinned in
``structbert_export/container_release.json``) will be handed, checked without Docker or a GPU.

Side environments (made by ``scripts/bootstrap.sh``): ``.venv-contract`` holds the container's ONNX
Runtime and the ``tritonclient`` of its release (its model_config proto); ``.venv-stub`` the
Python-backend stub's Python with the stub's numpy and tokenizers.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from structbert_export.container import release

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_PYTHON = ROOT / ".venv-contract" / "bin" / "python"
STUB_PYTHON = ROOT / ".venv-stub" / "bin" / "python"
SIDE_CHECK = Path(__file__).with_name("side_check.py")


def side_run(python: Path, job: dict, timeout_s: float = 300) -> dict:
    run = subprocess.run([str(python), str(SIDE_CHECK)], input=json.dumps(job), capture_output=True, text=True,
                         timeout=timeout_s)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.fixture(scope="session")
def contract_python() -> Path:
    """The side environment with the container's ONNX Runtime and model_config proto. CI makes it
    (scripts/test.sh runs scripts/bootstrap.sh), so its absence is a failure, not a skip."""
    if not CONTRACT_PYTHON.is_file():
        pytest.fail(f"{CONTRACT_PYTHON} is missing: run scripts/bootstrap.sh (it makes the contract tier's "
                    "side environment)")
    versions = side_run(CONTRACT_PYTHON, {})["versions"]
    rel = release()
    assert versions.get("onnxruntime") == rel.onnxruntime, (versions, "rerun scripts/bootstrap.sh")
    assert versions.get("tritonclient") == rel.tritonclient, (versions, "rerun scripts/bootstrap.sh")
    return CONTRACT_PYTHON


@pytest.fixture(scope="session")
def stub_python() -> Path:
    if not STUB_PYTHON.is_file():
        pytest.skip(f"no Python {release().stub_python} on this machine (scripts/bootstrap.sh makes .venv-stub "
                    f"from python{release().stub_python} where there is one): the Python models were not "
                    "imported by the stub's Python")
    return STUB_PYTHON
