"""GPU tier (``pytest -m gpu``): what the native flavour serves on a GPU — the FP32 graph through
TensorRT FP16, with the very provider options its config.pbtxt hands Triton's onnxruntime backend
(profile shapes of every input's rank, per-model engine cache) — validated against the FP32 PyTorch
model with the FP16 tolerance. Skipped, with the reason, without a GPU or without an ONNX Runtime
that has the TensorRT provider (the CPU tier validates the FP32 graph TensorRT consumes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from structbert_export import pbtxt
from structbert_export.artifacts import example_inputs
from structbert_export.checkpoint import load_checkpoint
from structbert_export.modules import build_module
from structbert_export.specs import CLASSIFY_OUTPUTS, spec_for
from structbert_export.validation import compare
from tests.conftest import export_repo

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")]
# Triton's key -> ONNX Runtime's TensorRT provider option (onnxruntime_backend r24.10 does this mapping)
RENAMED = {"precision_mode": None, "max_workspace_size_bytes": "trt_max_workspace_size"}


def tensorrt_options(config, cache_dir) -> dict:
    (accel,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    options = {"trt_fp16_enable": "True"}
    for key, value in accel.parameters.items():
        if RENAMED.get(key, key):
            options[RENAMED.get(key, key)] = value
    options["trt_engine_cache_path"] = str(cache_dir / options["trt_engine_cache_path"].rsplit("/", 1)[1])
    return options


@pytest.mark.parametrize("task,families", [("embedding", ["embedding"]), ("uie", ["uie-encoder", "uie-cross"])])
def test_fp32_graph_through_tensorrt_fp16_matches_pytorch(request, tmp_path, task, families):
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"ONNX Runtime {ort.__version__} here has no TensorRT provider: TensorRT FP16 unproven")
    checkpoint_dir = request.getfixturevalue("uie_checkpoint" if task == "uie" else "tiny_checkpoint")
    repo = export_repo(tmp_path / "repo", task=task, model_dir=checkpoint_dir,
                       opts={"flavour": "native", "device": "cuda"})
    checkpoint = load_checkpoint(checkpoint_dir)
    for family in families:
        spec = spec_for(family)
        config = pbtxt.parse((repo / spec.triton_name / "config.pbtxt").read_text())
        session = ort.InferenceSession(str(repo / spec.triton_name / "1" / "model.onnx"), providers=[
            ("TensorrtExecutionProvider", tensorrt_options(config, tmp_path)), "CUDAExecutionProvider"])
        assert session.get_providers()[0] == "TensorrtExecutionProvider"
        module = build_module(family, checkpoint).float().eval().cuda()
        tol = spec.tolerances["fp16"]
        for i, (batch, seq) in enumerate(spec.validation_shapes):
            inputs = example_inputs(spec, batch, seq, vocab_size=checkpoint.config.vocab_size, seed=200 + i,
                                    hidden=checkpoint.config.hidden_size)
            with torch.inference_mode():
                ref = module(*[t.cuda() for t in inputs])
            ref = ref if isinstance(ref, tuple) else (ref,)
            feeds = {n: t.numpy() for n, t in zip(spec.input_names, inputs)}
            got = session.run(spec.output_names, feeds)
            for name, want, have in zip(spec.output_names, ref, got):
                want = want.float().cpu().numpy()
                if name in spec.mask_groups():  # real positions only, as export's validation compares
                    mask = feeds[spec.mask_groups()[name]].astype(bool)
                    keep = mask.reshape(mask.shape + (1,) * (want.ndim - 2))
                    want, have = want * keep, np.where(keep, have, 0.0)
                diff, _, min_cos, _ = compare(want, have, classify=name in CLASSIFY_OUTPUTS)
                assert diff <= tol.max_abs_diff and min_cos >= tol.min_cosine, (family, batch, seq, name, diff)
