"""INT8 for the CPU: static QDQ quantisation with activation scales calibrated on real Chinese text.

Fixed scales make an answer independent of what shares the batch: a row's quantised activations
depend on that row alone (dynamic quantisation computes the scales over the whole tensor the
runtime sees, padding and neighbouring rows included). The calibration rows come from
:mod:`.calibration`; the recipe (which layers stay float) from :class:`Int8Recipe`. The choice was
measured side by side (speed and drift) in ``loadtest/RESULTS.md``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .progress import step

log = logging.getLogger(__name__)

# Node-name patterns of the layers a recipe may keep in float32 (names from the PyTorch export)
LAYER_PATTERNS = {
    "ffn_out": r"(?<!/attention)/output/dense/MatMul$",  # FFN down-projection, reads GELU outputs (long-tailed)
    "ffn_in": r"/intermediate/dense/MatMul$",
    "attention_out": r"/attention/output/dense/MatMul$",
    "attention": r"/attention/self/",  # Q/K/V projections and the score/context products
}


@dataclass(frozen=True)
class Int8Recipe:
    """How an INT8 artifact is made. ``static``: QDQ with calibrated, fixed activation scales;
    ``dynamic``: ORT's quantize_dynamic (scales per call: batch-dependent, kept for comparison)."""

    method: str = "static"
    calibration: str = "minmax"  # minmax | percentile | entropy
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights (AVX2/AVX512 without VNNI saturate u8*s8 pairs)
    keep_fp32: tuple[str, ...] = ()  # keys of LAYER_PATTERNS kept float
    fuse_attention: bool = False  # ORT's fused Attention op has no static INT8 kernel: it stays float
    calibration_rows: int = 128
    activation_symmetric: bool = False
    # SmoothQuant: divide each quantised MatMul input channel by s_j and multiply the weight's row j by
    # s_j, s_j = max|X_j|^alpha / max|W_j|^(1-alpha) (an explicit Mul before the MatMuls sharing X):
    # outlier channels move into the per-channel weights. None: off.
    smooth_alpha: float | None = None
    # keep in float32 the MatMuls whose input has an estimated quantisation noise/signal (after
    # smoothing, on the calibration rows) above ``keep_noise_above``, worst first, up to
    # ``keep_budget`` of the quantised weights: chosen per checkpoint, so a model without outliers
    # keeps everything INT8
    keep_noise_above: float = 0.0
    keep_budget: float = 0.0
    # outlier channels (LLM.int8-style decomposition): for each quantised MatMul input, up to
    # ``split_outliers`` channels whose calibrated peak exceeds ``split_ratio`` x the median channel's
    # are taken out of the INT8 product (zeroed there) and multiplied in float32 on the side
    # (Gather -> MatMul with those weight rows -> Add). 0: off.
    split_outliers: int = 0
    split_ratio: float = 4.0
    extra: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return asdict(self)


# measured on the real all-MiniLM-L6-v2 (loadtest/RESULTS.md): a handful of channels set the range
# of the FFN inputs (one LayerNorm channel at 17-20x the median channel's peak; GELU outputs up to
# 43x); taking up to 8 channels per input above 3x the median out to float32 quantises every
# weight MatMul and still meets the targets (mean cosine 0.9983, min 0.9966), where smoothing +
# output projections in float32 (the previous default, 7/12 of the weights INT8) gave 0.9967 /
# 0.9920 and ran 10-20 % slower
DEFAULT_RECIPE = Int8Recipe(split_outliers=8, split_ratio=3.0)


class RowsReader:
    """ORT's CalibrationDataReader over unpadded rows (padding never enters a calibrated range)."""

    def __init__(self, rows: Iterable[dict[str, np.ndarray]], input_names: list[str]):
        self._rows = iter([{n: r[n] for n in input_names} for r in rows])

    def get_next(self):
        return next(self._rows, None)

    def rewind(self):  # pragma: no cover - ORT calls it only for some calibrators
        raise NotImplementedError


def matmul_nodes(model, patterns: Iterable[str]) -> list[str]:
    regex = [re.compile(LAYER_PATTERNS[p]) for p in patterns]
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and any(r.search(n.name) for r in regex)]


def _channel_stats(model, tensors: list[str], rows, input_names: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per last-dim channel of each tensor over the (unpadded) calibration rows: max, min, mean square."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in known:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    stats: dict[str, dict[str, np.ndarray]] = {}
    for row in rows:
        values = session.run(tensors, {n: row[n] for n in input_names})
        for name, value in zip(tensors, values):
            flat = value.reshape(-1, value.shape[-1]).astype(np.float64)
            new = {"max": flat.max(axis=0), "min": flat.min(axis=0), "sq": (flat ** 2).sum(axis=0),
                   "n": np.full(flat.shape[1], flat.shape[0], np.float64)}
            if name in stats:
                old = stats[name]
                new = {"max": np.maximum(old["max"], new["max"]), "min": np.minimum(old["min"], new["min"]),
                       "sq": old["sq"] + new["sq"], "n": old["n"] + new["n"]}
            stats[name] = new
    return stats


def _matmuls_by_input(model, matmuls: list[str], rows, input_names: list[str]
                      ) -> tuple[dict[str, list], dict[str, dict[str, np.ndarray]]]:
    """The given MatMul nodes grouped by their activation input (Q/K/V share one), and each input's
    per-channel statistics on the calibration rows."""
    by_input: dict[str, list] = {}
    for node in model.graph.node:
        if node.name in matmuls:
            by_input.setdefault(node.input[0], []).append(node)
    return by_input, _channel_stats(model, sorted(by_input), rows, input_names)


def noise_to_signal(stat: dict[str, np.ndarray], scale: np.ndarray | None = None) -> float:
    """Estimated uint8 quantisation noise / signal power of a tensor with one (per-tensor) scale:
    step^2/12 over the mean square, after dividing channel j by ``scale[j]``."""
    scale = np.ones_like(stat["max"]) if scale is None else scale
    hi, lo = max(float((stat["max"] / scale).max()), 0.0), min(float((stat["min"] / scale).min()), 0.0)
    power = float((stat["sq"] / stat["n"] / scale ** 2).mean())
    return ((hi - lo) / 255.0) ** 2 / 12.0 / max(power, 1e-30)


def smooth_and_rank(model, matmuls: list[str], rows, input_names: list[str], alpha: float | None,
                    keep_budget: float, keep_noise_above: float = 0.0) -> tuple[list[str], list[dict]]:
    """SmoothQuant (Xiao et al., 2023) on the float graph, in place: for each activation feeding
    quantised MatMuls, ``X @ W == (X / s) @ (s[:, None] * W)`` with s_j = max|X_j|^a / max|W_j|^(1-a).
    Then the inputs whose estimated quantisation noise (after smoothing) is worst keep their MatMuls
    in float32, up to ``keep_budget`` of the quantised weights. Returns (MatMuls kept, per-input
    noise-to-signal estimates, worst first)."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    by_input, stats = _matmuls_by_input(model, matmuls, rows, input_names)
    new_nodes = []
    ranking = []
    for x, nodes in by_input.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        params = sum(w.size for w in weights)
        if alpha is None:
            ranking.append({"input": x, "matmuls": [n.name for n in nodes], "weights": params,
                            "noise_to_signal": noise_to_signal(stats[x])})
            continue
        peak = np.maximum(np.abs(stats[x]["max"]), np.abs(stats[x]["min"]))
        w_peak = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        scale = (np.maximum(peak, 1e-5) ** alpha / np.maximum(w_peak, 1e-5) ** (1 - alpha)).astype(np.float32)
        scale = np.clip(scale, 1e-2, 1e2)
        ranking.append({"input": x, "matmuls": [n.name for n in nodes], "weights": params,
                        "noise_to_signal": noise_to_signal(stats[x], scale.astype(np.float64))})
        inv_name, out_name = f"{x}_smooth_inv", f"{x}_smoothed"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inv_name))
        new_nodes.append(helper.make_node("Mul", [x, inv_name], [out_name], name=f"{x}_smooth"))
        for node, w in zip(nodes, weights):
            node.input[0] = out_name
            inits[node.input[1]].CopyFrom(numpy_helper.from_array((w * scale[:, None]).astype(w.dtype),
                                                                    node.input[1]))
    model.graph.node.extend(new_nodes)
    ranking.sort(key=lambda r: -r["noise_to_signal"])
    total, kept, keep = sum(r["weights"] for r in ranking), 0, []
    for entry in ranking:
        if kept + entry["weights"] > keep_budget * total or entry["noise_to_signal"] <= keep_noise_above:
            break
        kept += entry["weights"]
        keep += entry["matmuls"]
    return keep, ranking


def split_outlier_channels(model, matmuls: list[str], rows, input_names: list[str], limit: int,
                           ratio: float) -> tuple[list[str], list[dict]]:
    """Decompose ``X @ W`` for each input X of the quantised ``matmuls``, in place:
    ``(X * m) @ W' + X[..., O] @ W[O, :]``, O = the (at most ``limit``) channels whose peak |X| on the
    calibration rows exceeds ``ratio`` x the median channel's, m zero on O and one elsewhere, W' = W
    with rows O zeroed. The first product is quantised with a range the outliers no longer set; the
    second (a few channels) stays float32. Returns (the new float32 MatMuls, what was split)."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    by_input, stats = _matmuls_by_input(model, matmuls, rows, input_names)
    new_nodes, side, report = [], [], []
    for x, nodes in by_input.items():
        peak = np.maximum(np.abs(stats[x]["max"]), np.abs(stats[x]["min"]))
        median = float(np.median(peak))
        order = np.argsort(-peak)[:limit]
        outliers = np.sort(order[peak[order] > ratio * max(median, 1e-12)]).astype(np.int64)
        if not len(outliers):
            continue
        mask = np.ones_like(peak, dtype=np.float32)
        mask[outliers] = 0.0
        report.append({"input": x, "channels": outliers.tolist(), "peak_over_median":
                       [round(float(peak[c] / max(median, 1e-12)), 1) for c in outliers]})
        mask_name, idx_name = f"{x}_inlier_mask", f"{x}_outlier_idx"
        masked, picked = f"{x}_inliers", f"{x}_outliers"
        model.graph.initializer.extend([numpy_helper.from_array(mask, mask_name),
                                        numpy_helper.from_array(outliers, idx_name)])
        new_nodes += [helper.make_node("Mul", [x, mask_name], [masked], name=f"{x}_inlier_mul"),
                      helper.make_node("Gather", [x, idx_name], [picked], name=f"{x}_outlier_gather", axis=-1)]
        for node in nodes:
            w = numpy_helper.to_array(inits[node.input[1]])
            rows_o, w_in = w[outliers], w.copy()
            w_in[outliers] = 0
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(w_in, node.input[1]))
            w_o_name, y = f"{node.name}_outlier_weight", node.output[0]
            model.graph.initializer.append(numpy_helper.from_array(rows_o, w_o_name))
            node.input[0] = masked
            node.output[0] = f"{y}_inliers"
            side_name = f"{node.name}_outliers"
            new_nodes += [helper.make_node("MatMul", [picked, w_o_name], [f"{y}_outliers"], name=side_name),
                          helper.make_node("Add", [f"{y}_inliers", f"{y}_outliers"], [y], name=f"{node.name}_merge")]
            side.append(side_name)
    model.graph.node.extend(new_nodes)
    _topological(model)
    return side, report


def drop_inlier_masks(model) -> int:
    """After calibration, feed each split input straight to its QuantizeLinear instead of through the
    inlier mask (one full-size Mul per split input, 19 on the real MiniLM): the INT8 product's weight
    rows for the outlier channels are zero, so whatever the fixed-scale QuantizeLinear makes of those
    channels (saturated) contributes nothing, and the answer is the same to the bit. A mask merged
    with a smoothing scale stays (its Mul does more than mask). Returns how many Muls were dropped."""
    masks = {i.name for i in model.graph.initializer if i.name.endswith("_inlier_mask")}
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in model.graph.output}
    dropped = []
    for node in model.graph.node:
        if node.op_type != "Mul" or node.input[1] not in masks or node.output[0] in graph_outputs:
            continue
        consumers = readers.get(node.output[0], [])
        if consumers and all(c.op_type == "QuantizeLinear" for c in consumers):
            for consumer in consumers:
                consumer.input[0] = node.input[0]
            dropped.append(node)
    for node in dropped:
        model.graph.node.remove(node)
    used = {name for node in model.graph.node for name in node.input}
    for init in [i for i in model.graph.initializer if i.name in masks and i.name not in used]:
        model.graph.initializer.remove(init)
    return len(dropped)


def merge_constant_muls(model) -> int:
    """``Mul(Mul(X, a), b)`` with constant a, b and the inner product read only by the outer Mul
    becomes ``Mul(X, a * b)`` (the outlier mask and the smoothing scale of one input: one pass over
    the activation instead of two). Returns how many Muls were merged away."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    producer = {o: n for n in model.graph.node for o in n.output}
    graph_outputs = {o.name for o in model.graph.output}
    merged = []
    for outer in model.graph.node:
        if outer.op_type != "Mul" or outer.input[1] not in inits:
            continue
        inner = producer.get(outer.input[0])
        if (inner is None or inner.op_type != "Mul" or inner.input[1] not in inits or inner in merged
                or len(readers.get(inner.output[0], [])) != 1 or inner.output[0] in graph_outputs):
            continue
        a, b = numpy_helper.to_array(inits[inner.input[1]]), numpy_helper.to_array(inits[outer.input[1]])
        name = f"{outer.input[1]}_merged"
        model.graph.initializer.append(numpy_helper.from_array((a * b).astype(b.dtype), name))
        outer.input[0], outer.input[1] = inner.input[0], name
        merged.append(inner)
    for node in merged:
        model.graph.node.remove(node)
    return len(merged)


def _topological(model) -> None:
    """Re-sort nodes after appending the smoothing Muls (ONNX wants producers before consumers)."""
    produced = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
    pending, ordered = list(model.graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(not i or i in produced for i in node.input):
                ordered.append(node)
                produced.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise RuntimeError("graph has a cycle or a missing input after smoothing")
        pending = rest
    del model.graph.node[:]
    model.graph.node.extend(ordered)


def quantize(fused_path: Path, out: Path, recipe: Int8Recipe, rows: list[dict[str, np.ndarray]] | None,
             input_names: list[str]) -> dict:
    """Quantise an (ORT-optimised) float graph into ``out``; returns what was done, for the reports:
    the recipe, how many MatMuls were quantised and which stayed float32."""
    import onnx
    from onnx import TensorProto
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    model = onnx.load(str(fused_path))
    if recipe.method == "static":
        # the quantiser skips every MatMul whose activation has no inferred type (outputs of ORT's
        # contrib ops: SkipLayerNormalization, BiasGelu...); ORT then runs those as weight-only
        # MatMulNBits, slower than float. Symbolic shape inference knows the contrib ops.
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        onnx.save(model, str(fused_path))
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    # activation x activation products (attention scores/context) have no constant weight
    weights = {i.name for i in model.graph.initializer}
    weighted = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    keep = set(matmul_nodes(model, recipe.keep_fp32))
    keep |= set(matmuls) - set(weighted)  # never quantise activation x activation products
    quantised = [n for n in weighted if n not in keep]
    fused_attention = [n.name for n in model.graph.node if n.op_type == "Attention"]
    ranking: list[dict] = []
    split: list[dict] = []
    if recipe.method == "static" and recipe.split_outliers > 0:
        side, split = split_outlier_channels(model, quantised, rows, input_names, recipe.split_outliers,
                                             recipe.split_ratio)
        keep |= set(side)
        onnx.save(model, str(fused_path))
    if recipe.method == "static" and (recipe.smooth_alpha is not None or recipe.keep_budget > 0):
        sensitive, ranking = smooth_and_rank(model, quantised, rows, input_names, recipe.smooth_alpha,
                                             recipe.keep_budget, recipe.keep_noise_above)
        keep |= set(sensitive)
        quantised = [n for n in quantised if n not in keep]
        merge_constant_muls(model)
        _topological(model)
        onnx.save(model, str(fused_path))
    if recipe.method == "dynamic":
        with step("dynamic INT8 quantisation of MatMul/Attention weights"):
            quantize_dynamic(str(fused_path), str(out), weight_type=QuantType.QInt8, per_channel=recipe.per_channel,
                             reduce_range=recipe.reduce_range, op_types_to_quantize=["MatMul", "Attention"],
                             nodes_to_exclude=sorted(keep),
                             extra_options={"DefaultTensorType": TensorProto.FLOAT})
    elif recipe.method == "static":
        if not rows:
            raise ValueError("static INT8 quantisation needs calibration rows")
        methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                   "entropy": CalibrationMethod.Entropy}
        extra = {"ActivationSymmetric": recipe.activation_symmetric, "WeightSymmetric": True,
                 # the MatMul output stays float: ORT runs DQ->MatMul as MatMulIntegerToFloat
                 "OpTypesToExcludeOutputQuantization": ["MatMul"], "MatMulConstBOnly": True,
                 "DefaultTensorType": TensorProto.FLOAT,
                 **recipe.extra}
        with step(f"static INT8 quantisation ({recipe.calibration} calibration on {len(rows)} real-text rows; "
                  f"{len(quantised)} MatMuls INT8, {len(keep)} float32)"):
            quantize_static(str(fused_path), str(out), RowsReader(rows, input_names), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["MatMul"], per_channel=recipe.per_channel,
                            reduce_range=recipe.reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_quantize=quantised,
                            calibrate_method=methods[recipe.calibration], extra_options=extra)
        if split:
            quantised_model = onnx.load(str(out))
            if drop_inlier_masks(quantised_model):
                onnx.save(quantised_model, str(out))
    else:
        raise ValueError(f"INT8 method must be 'static' or 'dynamic', not {recipe.method!r}")
    return {"recipe": recipe.describe(), "quantised_matmuls": len(quantised),
            "float32_matmuls": sorted(keep), "float32_fused_attention": fused_attention,
            # estimated quantisation noise/signal of each quantised activation (after smoothing), worst first
            "sensitivity": [{"input": r["input"], "noise_to_signal": float(f"{r['noise_to_signal']:.3g}"),
                             "kept_float32": r["matmuls"][0] in keep} for r in ranking],
            # outlier channels multiplied in float32 beside the INT8 product (split_outliers)
            "outlier_channels": split}
