"""Generic export: one function per format, everything else read from the family's spec."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from structbert_serving.runtime import weights_file

from . import int8
from .calibration import real_rows
from .checkpoint import Checkpoint
from .choices import FORMATS, PRECISIONS
from .int8 import DEFAULT_RECIPE, Int8Recipe
from .modules import FP32_SCOPES
from .progress import step
from .specs import EncoderSpec

log = logging.getLogger(__name__)



def example_inputs(spec: EncoderSpec, batch: int, seq: int, *, vocab_size: int, seed: int = 0,
                   hidden: int = 0):
    """Token ids with [CLS]/[SEP], right padding of varying length, token types for pair families;
    for SiameseUIE's cross part, random hidden states with padded text and hint masks."""
    gen = torch.Generator().manual_seed(seed)
    if spec.example_kind == "uie-cross":
        return _uie_cross_inputs(batch, seq, hidden, gen)
    ids = torch.randint(1000, vocab_size, (batch, seq), generator=gen)
    lengths = torch.randint(2, seq + 1, (batch,), generator=gen)
    lengths[0] = seq  # one row always fills the sequence
    positions = torch.arange(seq).unsqueeze(0)
    mask = (positions < lengths.unsqueeze(1)).long()
    ids[:, 0] = 101
    ids[torch.arange(batch), lengths - 1] = 102
    ids = ids * mask
    types = torch.zeros_like(ids)
    if spec.pair_input:
        split = (lengths // 2).unsqueeze(1)
        types = ((positions >= split) & (mask == 1)).long()
    # hints: positions continue after a text window of some length W
    offset = torch.randint(0, 512 - seq + 1, (batch, 1), generator=gen) if seq < 512 else torch.zeros(batch, 1)
    feeds = {"INPUT_IDS": ids, "ATTENTION_MASK": mask, "TOKEN_TYPE_IDS": types,
             "POSITION_IDS": (positions + offset).long()}
    return tuple(feeds[name] for name in spec.input_names)


def _uie_cross_inputs(batch: int, seq: int, hidden: int, gen: torch.Generator):
    hint = max(3, seq // 3)

    def masked(length: int):
        lengths = torch.randint(1, length + 1, (batch,), generator=gen)
        lengths[0] = length
        return (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).long()

    return (torch.randn(batch, seq, hidden, generator=gen), masked(seq),
            torch.randn(batch, hint, hidden, generator=gen), masked(hint))


def export_onnx(module: nn.Module, spec: EncoderSpec, checkpoint: Checkpoint, out: Path, precision: str,
                recipe: Int8Recipe | None = None) -> Path:
    """FP32 export (legacy exporter, eager attention); FP16 = ORT BERT fusions + float16 with FP32 IO;
    INT8 = ORT BERT fusions + static QDQ quantisation calibrated on real text (for CPU serving; what
    was quantised and on which rows lands in ``int8.json`` beside the artifact)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    example = example_inputs(spec, *spec.trace_shape, vocab_size=checkpoint.config.vocab_size,
                             hidden=checkpoint.config.hidden_size)
    raw = out.with_name(out.stem + ".fp32-raw.onnx") if precision != "fp32" else out
    with step(f"exporting {spec.family} to ONNX (opset {spec.opset})"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, example, str(raw), input_names=spec.input_names, output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(), opset_version=spec.opset, do_constant_folding=True, dynamo=False,
        )
    if precision == "fp32":
        return externalize_weights(out)
    try:
        if precision == "fp16":
            _to_fp16(_optimize_bert(raw, checkpoint), out, FP32_SCOPES.get(spec.family, ()))
        else:
            recipe = recipe or DEFAULT_RECIPE
            _quantize_int8(_optimize_bert(raw, checkpoint, fuse_attention=recipe.fuse_attention,
                                          fuse_skip_layer_norm=False), out, spec,
                           checkpoint, recipe)
    finally:
        raw.unlink(missing_ok=True)
    return externalize_weights(out)


def externalize_weights(artifact: Path) -> Path:
    """Rewrite ``artifact`` as a graph plus one external weights file (:func:`weights_file`).

    ONNX Runtime memory-maps external initializers on the CPU, so every process that loads the
    artifact (a model's instances, the pipelines that share an encoder) reads the same page-cache
    pages: the weights are held once per host, not once per session (with prepacking off:
    ``runtime.OrtRunner``). Triton's onnxruntime backend loads it from the version directory too."""
    import onnx

    model = onnx.load(str(artifact))  # with any external data it already had
    data = weights_file(artifact)
    data.unlink(missing_ok=True)  # onnx appends to an existing weights file
    onnx.save_model(model, str(artifact), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    data.chmod(artifact.stat().st_mode & 0o777)  # onnx writes it owner-only; whoever reads the graph reads it
    return artifact


def _optimize_bert(raw: Path, checkpoint: Checkpoint, *, fuse_attention: bool = True,
                   fuse_skip_layer_norm: bool = True):
    """ORT's BERT fusions (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu).
    ``fuse_attention=False`` keeps the Q/K/V projections plain MatMuls (static INT8 quantises them;
    the fused Attention op has no static INT8 kernel). ``fuse_skip_layer_norm=False`` leaves Add +
    LayerNormalization for the runtime that serves the CPU artifact to fuse or not: which of the two
    CPU kernels is faster changed between ONNX Runtime releases (``runtime.cpu_disabled_optimizers``)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    config = checkpoint.config
    options = FusionOptions("bert")
    options.enable_attention = fuse_attention
    options.enable_skip_layer_norm = fuse_skip_layer_norm
    with step("fusing BERT subgraphs (ONNX Runtime transformer optimizer)"):
        optimized = optimize_model(
            str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
            opt_level=0, optimization_options=options,
        )
    fused = optimized.get_fused_operator_statistics()
    log.info("fused operators: %s", {k: v for k, v in fused.items() if v})
    return optimized


def _to_fp16(optimized, out: Path, fp32_scopes: tuple[str, ...]) -> None:
    nodes = optimized.model.graph.node
    keep = [n.name for n in nodes if n.name.startswith(fp32_scopes)] if fp32_scopes else []
    with step(f"converting to float16 (inputs/outputs stay float32, {len(keep)} pooling nodes stay float32)"):
        optimized.convert_float_to_float16(keep_io_types=True, node_block_list=keep)
        _drop_duplicate_casts(optimized.model.graph)
        optimized.save_model_to_file(str(out))


def _drop_duplicate_casts(graph) -> None:
    """The float16 converter inserts one Cast per blocked consumer, named after the tensor it reads,
    so a float32 tensor read by two blocked (float32) nodes gets two identical Casts with one output
    name, which ONNX rejects. Identical nodes compute the same value: keep the first."""
    seen: set[bytes] = set()
    duplicates = []
    for node in graph.node:
        key = node.SerializeToString(deterministic=True)
        if key in seen:
            duplicates.append(node)
        seen.add(key)
    for node in duplicates:
        graph.node.remove(node)


def _quantize_int8(optimized, out: Path, spec: EncoderSpec, checkpoint: Checkpoint, recipe: Int8Recipe) -> None:
    tmp = out.with_name(out.stem + ".fused.onnx")
    optimized.save_model_to_file(str(tmp))
    try:
        rows = None
        info: dict = {}
        if recipe.method == "static":
            with step(f"reading real-text calibration rows for {spec.family}"):
                calibration = real_rows(spec.family, checkpoint, "calibration", limit=recipe.calibration_rows)
            rows = calibration.rows
            info["calibration"] = calibration.describe()
        info.update(int8.quantize(tmp, out, recipe, rows, spec.input_names))
        write_int8_info(out, info)
    finally:
        tmp.unlink(missing_ok=True)


def int8_info_path(artifact: Path) -> Path:
    return artifact.with_name("int8.json")


def write_int8_info(artifact: Path, info: dict) -> None:
    int8_info_path(artifact).write_text(json.dumps(info, indent=2, ensure_ascii=False))


class HalfIO(nn.Module):
    """Run a float16 module behind float32 inputs and outputs (like ONNX's keep_io_types)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.half()

    def forward(self, *inputs):
        out = self.module(*[x.half() if x.is_floating_point() else x for x in inputs])
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()


def export_torchscript(module: nn.Module, spec: EncoderSpec, checkpoint: Checkpoint, out: Path,
                       precision: str) -> Path:
    if precision == "int8":
        raise ValueError("INT8 is an ONNX Runtime CPU artifact; use --format onnx for --precision int8")
    out.parent.mkdir(parents=True, exist_ok=True)
    example = example_inputs(spec, *spec.trace_shape, vocab_size=checkpoint.config.vocab_size,
                             hidden=checkpoint.config.hidden_size)
    device = next(module.parameters()).device
    example = tuple(t.to(device) for t in example)
    if precision == "fp16":
        module = HalfIO(module)
    with step(f"tracing {spec.family} to TorchScript"), warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False, strict=False)
        traced = torch.jit.freeze(traced.eval())
        torch.jit.save(traced, str(out))
    return out


def export_artifact(module: nn.Module, spec: EncoderSpec, checkpoint: Checkpoint, out_dir: Path,
                    precision: str, fmt: str, recipe: Int8Recipe | None = None) -> Path:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if fmt == "onnx":
        return export_onnx(module, spec, checkpoint, out_dir / "model.onnx", precision, recipe)
    if fmt == "torchscript":
        return export_torchscript(module, spec, checkpoint, out_dir / "model.pt", precision)
    raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
