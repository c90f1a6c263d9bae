"""Outlier channels split off the INT8 product (the default INT8 recipe): the decomposition is exact
in float, picks the channels that set the range, and the quantised graph keeps them accurate."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from structbert_export.int8 import merge_constant_muls, split_outlier_channels


def _graph(w: np.ndarray, scale: np.ndarray | None = None):
    nodes, inits = [], [numpy_helper.from_array(w, "W")]
    x = "X"
    if scale is not None:  # a constant Mul before the MatMul (what smoothing adds)
        inits.append(numpy_helper.from_array(scale, "S"))
        nodes.append(helper.make_node("Mul", ["X", "S"], ["XS"], name="pre"))
        x = "XS"
    nodes.append(helper.make_node("MatMul", [x, "W"], ["Y"], name="mm"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None, w.shape[0]])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, None, w.shape[1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["Y"], {"X": x})[0]


def _rows(rng, n=8, channels=16, outliers=(3, 11)):
    rows = []
    for _ in range(n):
        x = rng.normal(size=(1, 5, channels)).astype(np.float32)
        x[..., list(outliers)] *= 40  # a few channels 40x the others, like BERT's FFN inputs
        rows.append({"X": x})
    return rows


def test_split_is_exact_in_float_and_takes_out_the_outlier_channels():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 6)).astype(np.float32)
    model = _graph(w)
    rows = _rows(rng)
    before = [_run(model, r["X"]) for r in rows]
    side, report = split_outlier_channels(model, ["mm"], rows, ["X"], limit=4, ratio=3.0)
    onnx.checker.check_model(model)
    assert report[0]["channels"] == [3, 11] and side == ["mm_outliers"]
    for r, y in zip(rows, before):
        np.testing.assert_allclose(_run(model, r["X"]), y, rtol=1e-5, atol=1e-4)
    inlier_weight = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "W"))
    assert not inlier_weight[[3, 11]].any()  # the INT8 product's weight rows for them are zero


def test_no_outliers_no_change():
    rng = np.random.default_rng(1)
    model = _graph(rng.normal(size=(16, 6)).astype(np.float32))
    rows = [{"X": rng.normal(size=(1, 5, 16)).astype(np.float32)} for _ in range(4)]
    side, report = split_outlier_channels(model, ["mm"], rows, ["X"], limit=4, ratio=8.0)
    assert side == [] and report == [] and [n.op_type for n in model.graph.node] == ["MatMul"]


def test_split_then_smoothing_merges_the_two_muls_and_computes_the_same():
    """The order quantize() uses: split, then smoothing on the inliers (Mul(Mul(X, mask), 1/s)),
    merged into one Mul over the activation."""
    from structbert_export.int8 import _topological, smooth_and_rank

    rng = np.random.default_rng(2)
    model = _graph(rng.normal(size=(16, 6)).astype(np.float32))
    rows = _rows(rng, n=3)
    before = [_run(model, r["X"]) for r in rows]
    split_outlier_channels(model, ["mm"], rows, ["X"], limit=4, ratio=3.0)
    smooth_and_rank(model, ["mm"], rows, ["X"], alpha=0.5, keep_budget=0.0)
    _topological(model)
    assert sum(n.op_type == "Mul" for n in model.graph.node) == 2
    assert merge_constant_muls(model) == 1
    _topological(model)
    assert sum(n.op_type == "Mul" for n in model.graph.node) == 1
    for r, y in zip(rows, before):
        np.testing.assert_allclose(_run(model, r["X"]), y, rtol=1e-4, atol=1e-3)


def test_quantised_graph_reads_the_activation_once_and_answers_exactly_as_masked(tmp_path):
    """After calibration the inlier mask is not needed: the INT8 product's weight rows for the outlier
    channels are zero, so whatever its QuantizeLinear makes of them (saturated, far outside the
    calibrated range) contributes nothing. The artifact drops that full-size Mul per split input
    (19 on the real MiniLM) and answers bit for bit as with it."""
    from structbert_export.int8 import Int8Recipe, quantize

    rng = np.random.default_rng(3)
    rows = _rows(rng)
    w = rng.normal(size=(16, 6)).astype(np.float32)
    onnx.save(_graph(w), str(tmp_path / "fused.onnx"))
    info = quantize(tmp_path / "fused.onnx", tmp_path / "int8.onnx", Int8Recipe(split_outliers=4, split_ratio=3.0),
                    rows, ["X"])
    assert info["outlier_channels"][0]["channels"] == [3, 11]
    quantised = onnx.load(str(tmp_path / "int8.onnx"))
    assert [n.op_type for n in quantised.graph.node if n.op_type == "Mul"] == []

    masked = onnx.load(str(tmp_path / "int8.onnx"))  # the mask put back before the QuantizeLinear
    mask = np.ones(16, np.float32)
    mask[[3, 11]] = 0
    masked.graph.initializer.append(numpy_helper.from_array(mask, "mask"))
    for node in masked.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == "X":
            node.input[0] = "X_masked"
    masked.graph.node.insert(0, helper.make_node("Mul", ["X", "mask"], ["X_masked"], name="mask"))
    x = rng.normal(size=(2, 7, 16)).astype(np.float32)
    x[..., [3, 11]] *= 1000  # far beyond the calibrated range
    np.testing.assert_array_equal(_run(quantised, x), _run(masked, x))
    np.testing.assert_allclose(_run(quantised, x), x @ w, rtol=0.05, atol=0.5)  # the outliers in float32
