"""ONNX Runtime sessions as the served encoders and the export's validation create them
(:class:`structbert_serving.runtime.OrtRunner`)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from structbert_serving.runtime import OrtRunner, cpu_disabled_optimizers


@pytest.mark.parametrize("version, slow", [("1.19.2", False), ("1.22.1", False), ("1.29.0", False),
                                           ("1.30.0", True), ("1.31.1", True), ("1.32.0.dev20261201", True)])
def test_skip_layer_norm_fusion_is_off_on_the_cpu_where_its_kernel_is_slower(version, slow):
    """Measured (loadtest/RESULTS.md): the CPU SkipLayerNormalization kernel of ONNX Runtime 1.30-1.31
    ran the INT8 MiniLM's 12 fused nodes in ~70 ms against ~11 + ~15 ms for LayerNormalization and
    Add unfused; 1.19-1.29 the other way round (17-20 ms fused)."""
    assert cpu_disabled_optimizers(version) == (["SkipLayerNormFusion"] if slow else [])


def _add_layer_norm(path):
    hidden = 16
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=hidden).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.normal(size=hidden).astype(np.float32), "beta")]
    nodes = [helper.make_node("Add", ["X", "R"], ["S"], name="residual"),
             helper.make_node("LayerNormalization", ["S", "gamma", "beta"], ["Y"], name="ln", axis=-1, epsilon=1e-12)]
    dims = ["batch", "sequence", hidden]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n in "XR"],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, dims)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_the_cpu_session_keeps_add_and_layer_norm_apart_where_the_fused_kernel_is_slower(tmp_path):
    model = tmp_path / "model.onnx"
    _add_layer_norm(model)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "plain.onnx")
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    assert "SkipLayerNormalization" in _ops(tmp_path / "plain.onnx")  # what ORT does by itself

    runner = OrtRunner(model, device="cpu", optimized_model_path=tmp_path / "served.onnx")
    fused = "SkipLayerNormalization" in _ops(tmp_path / "served.onnx")
    assert fused == (not cpu_disabled_optimizers(ort.__version__)), ort.__version__
    x, r = np.random.default_rng(1).normal(size=(2, 2, 3, 16)).astype(np.float32)
    s = (x + r).astype(np.float64)
    gamma, beta = (numpy_helper.to_array(i) for i in onnx.load(str(model)).graph.initializer)
    want = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-12) * gamma + beta
    np.testing.assert_allclose(runner.run({"X": x, "R": r})["Y"], want, rtol=1e-4, atol=1e-4)
