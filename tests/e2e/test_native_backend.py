"""A native ``--device cpu`` repository served by Triton's real onnxruntime backend of the container's
release, with the production flags, answers like the embedded flavour.

The backend is not part of this project: point ``STRUCTBERT_ORT_BACKEND_DIR`` at a directory holding
a ``libtriton_onnxruntime.so`` built for the embedded server's release (and its ONNX Runtime), e.g.
one built from triton-inference-server/onnxruntime_backend's r24.10 sources. Skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from structbert_export.specs import SPECS
from structbert_serving import embedded_server
from tests.conftest import export_repo, make_client, sample_texts, task_checkpoints

BACKEND_DIR = os.environ.get("STRUCTBERT_ORT_BACKEND_DIR", "")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(BACKEND_DIR, "libtriton_onnxruntime.so").is_file(),
                       reason="STRUCTBERT_ORT_BACKEND_DIR does not name a directory with Triton's onnxruntime "
                              "backend (libtriton_onnxruntime.so) for the embedded server's release"),
]
# Both precisions must match the embedded flavour to float rounding. INT8 is static (fixed activation
# scales), so the native entries' length-bucket padding cannot move it: measured 8.6e-7 through the
# r24.10 backend, where the old dynamic quantisation differed by 2.1e-3.
TOLERANCE = {"fp32": 1e-5, "int8": 1e-5}
UIE_SCHEMA = {"人物": {"任职": None}, "地理位置": None, "组织机构": None}


@pytest.fixture
def with_ort_backend(monkeypatch):
    original = embedded_server.prepare_backends

    def prepare(target: Path) -> Path:
        original(target)
        shutil.copytree(BACKEND_DIR, target / "onnxruntime", dirs_exist_ok=True)
        return target

    monkeypatch.setattr(embedded_server, "prepare_backends", prepare)


def export_all(out: Path, checkpoints: dict[str, Path], precision: str, flavour: str) -> Path:
    opts = {"flavour": flavour, "intra_op_threads": 1, **({"device": "cpu"} if flavour == "native" else {})}
    for task, checkpoint in checkpoints.items():
        export_repo(out, task=task, model_dir=checkpoint, precision=precision, opts=opts)
    return out


def answers(server) -> dict:
    texts = sample_texts(6, max_chars=120)
    client = make_client(server, "grpc")
    try:
        return {
            "embed": np.asarray(client.embed(texts)),
            "embed_alone": np.asarray(client.embed(texts[:1])),
            "similarity": np.asarray(client.similarity(texts[:3], texts[3:6])),
            "pair": np.asarray([list(p.values()) for p in (client.pair_classify(a, b) for a, b in
                                                           zip(texts[:3], texts[3:6]))]),
            "text": np.asarray([list(p.values()) for p in client.text_classify(texts)]),
            "zero_shot": [client.classify(t, ["手机", "水果", "书籍", "酒店"]) for t in texts[:3]],
            "uie": [client.extract(t, UIE_SCHEMA) for t in texts[:3]],
            "rerank": np.asarray([r["score"] for r in sorted(client.rerank(texts[0], texts[1:]),
                                                              key=lambda r: r["index"])]),
        }
    finally:
        client.close()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_native_cpu_repository_answers_like_the_embedded_flavour(tmp_path, cache_root, tiny_checkpoint,
                                                                 nli_checkpoint, pair_checkpoint, uie_checkpoint,
                                                                 rerank_checkpoint, text_classification_checkpoint,
                                                                 with_ort_backend, precision):
    checkpoints = task_checkpoints(tiny_checkpoint, nli_checkpoint, pair_checkpoint, uie_checkpoint, rerank_checkpoint,
                                   text_classification_checkpoint)
    native = export_all(tmp_path / "native", checkpoints, precision, "native")
    embedded = export_all(tmp_path / "embedded", checkpoints, precision, "embedded")
    encoders = [p.parent.name for p in native.glob("*/config.pbtxt") if "onnxruntime_onnx" in p.read_text()]
    assert len(encoders) == len(SPECS)
    with embedded_server.EmbeddedServer(native) as server:  # the production flags: every model loads
        log = server.log_text()
        got = answers(server)
    assert "TRITONBACKEND_Initialize: onnxruntime" in log and "1.19" in log
    with embedded_server.EmbeddedServer(embedded) as server:
        want = answers(server)
    tol = TOLERANCE[precision]
    diffs = {k: float(np.abs(got[k] - want[k]).max()) for k in ("embed", "embed_alone", "similarity", "pair", "text", "rerank")}
    for (g, w) in zip(got["zero_shot"], want["zero_shot"]):
        assert sorted(g["labels"]) == sorted(w["labels"])
        scores = dict(zip(g["labels"], g["scores"]))
        diffs["zero_shot"] = max(diffs.get("zero_shot", 0.0),
                                 max(abs(scores[label] - s) for label, s in zip(w["labels"], w["scores"])))
    print(f"native {precision} vs embedded, max abs diff: {json.dumps(diffs)}")
    assert all(d <= tol for d in diffs.values()), diffs
    if precision == "fp32":
        assert got["uie"] == want["uie"]
