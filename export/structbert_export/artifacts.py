"""Generic export: one function per format, everything else read from the family's spec."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from .checkpoint import Checkpoint
from .choices import FORMATS, PRECISIONS
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


def export_onnx(module: nn.Module, spec: EncoderSpec, checkpoint: Checkpoint, out: Path, precision: str) -> Path:
    """FP32 export (legacy exporter, eager attention); FP16 = ORT BERT fusions + float16 with FP32 IO;
    INT8 = ORT BERT fusions + dynamic quantisation of the weights (for CPU serving)."""
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
        return out
    try:
        fused = _optimize_bert(raw, checkpoint)
        if precision == "fp16":
            _to_fp16(fused, out, FP32_SCOPES.get(spec.family, ()))
        else:
            _quantize_int8(fused, out)
    finally:
        raw.unlink(missing_ok=True)
    return out


def _optimize_bert(raw: Path, checkpoint: Checkpoint):
    """ORT's BERT fusions (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu)."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = checkpoint.config
    with step("fusing BERT subgraphs (ONNX Runtime transformer optimizer)"):
        optimized = optimize_model(
            str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
            opt_level=0,
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


def _quantize_int8(optimized, out: Path) -> None:
    from onnx import TensorProto  # ONNX only where it is used: a TorchScript export needs none
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = out.with_name(out.stem + ".fused.onnx")
    optimized.save_model_to_file(str(tmp))
    try:
        with step("dynamic INT8 quantisation of MatMul/Attention weights"):
            # MatMul/Attention carry the compute; the quantised EmbedLayerNormalization ignores
            # explicit position ids (SiameseUIE hints need them), so embeddings stay float
            quantize_dynamic(str(tmp), str(out), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Attention"],
                             extra_options={"DefaultTensorType": TensorProto.FLOAT})
    finally:
        tmp.unlink(missing_ok=True)


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
                    precision: str, fmt: str) -> Path:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if fmt == "onnx":
        return export_onnx(module, spec, checkpoint, out_dir / "model.onnx", precision)
    if fmt == "torchscript":
        return export_torchscript(module, spec, checkpoint, out_dir / "model.pt", precision)
    raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
