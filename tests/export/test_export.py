"""Export: every precision and format validates against PyTorch; configs parse; layouts load."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from structbert_client.api import PUBLIC_MODELS
from structbert_export import pbtxt
from structbert_export.artifacts import export_artifact
from structbert_export.checkpoint import CheckpointError, load_checkpoint
from structbert_export.modules import build_bert, build_module
from structbert_export.specs import CLASSIFY_OUTPUTS, SPECS, Tolerance, spec_for
from structbert_export.validation import ValidationError, validate_artifact
from tests.conftest import export_repo

SPEC = spec_for("embedding")
COMBOS = [("fp32", "onnx"), ("fp16", "onnx"), ("int8", "onnx"), ("fp32", "torchscript"), ("fp16", "torchscript")]


@pytest.mark.parametrize("precision,fmt", COMBOS)
def test_every_artifact_validates_and_reports(tiny_checkpoint, tmp_path, precision, fmt):
    checkpoint = load_checkpoint(tiny_checkpoint)
    artifact = export_artifact(build_module("embedding", checkpoint), SPEC, checkpoint, tmp_path, precision, fmt)
    report = validate_artifact(build_module("embedding", checkpoint), SPEC, checkpoint, artifact,
                               precision=precision, fmt=fmt, report_path=tmp_path / "validation.json")
    data = json.loads((tmp_path / "validation.json").read_text())
    assert data["passed"] and report.passed
    shapes = {(c["batch"], c["sequence"]) for c in data["cases"]}
    assert SPEC.trace_shape not in shapes and len(shapes) == len(SPEC.validation_shapes)
    if precision == "fp32":
        assert data["max_abs_diff"] < 1e-4
    else:  # drift is shown, not hidden
        assert data["max_abs_diff"] > 0


@pytest.mark.parametrize("task", ["zero-shot", "pair-classification"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_classifiers_report_argmax_agreement(request, tmp_path, task, precision):
    checkpoint_dir = request.getfixturevalue("nli_checkpoint" if task == "zero-shot" else "pair_checkpoint")
    checkpoint = load_checkpoint(checkpoint_dir)
    spec = spec_for(task)
    artifact = export_artifact(build_module(task, checkpoint), spec, checkpoint, tmp_path, precision, "onnx")
    report = validate_artifact(build_module(task, checkpoint), spec, checkpoint, artifact, precision=precision,
                               fmt="onnx", classify_outputs=CLASSIFY_OUTPUTS)
    assert report.passed and report.min_argmax_agreement is not None
    assert all(c.argmax_agreement is not None for c in report.cases)


def test_classifier_needs_a_head(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="no classifier head"):
        build_module("zero-shot", load_checkpoint(tiny_checkpoint))


def test_validation_miss_is_an_error_with_report(tiny_checkpoint, tmp_path):
    checkpoint = load_checkpoint(tiny_checkpoint)
    strict = dataclasses.replace(SPEC, tolerances={"fp16": Tolerance(max_abs_diff=1e-9, min_cosine=1.0)})
    artifact = export_artifact(build_module("embedding", checkpoint), strict, checkpoint, tmp_path, "fp16", "onnx")
    with pytest.raises(ValidationError, match="max abs diff"):
        validate_artifact(build_module("embedding", checkpoint), strict, checkpoint, artifact, precision="fp16",
                          fmt="onnx", report_path=tmp_path / "validation.json")
    assert json.loads((tmp_path / "validation.json").read_text())["passed"] is False


def test_huggingface_and_modelscope_layouts_give_the_same_model(tiny_checkpoint, tmp_path):
    """A Hugging Face BertModel directory (no key prefix, safetensors) holding the same weights."""
    ms = load_checkpoint(tiny_checkpoint)
    hf_dir = tmp_path / "hf"
    build_bert(ms, add_pooling_layer=True).save_pretrained(hf_dir)
    shutil.copy(tiny_checkpoint / "vocab.txt", hf_dir / "vocab.txt")
    hf = load_checkpoint(hf_dir)
    assert hf.model_type == "bert" and ms.model_type == "structbert"
    assert (hf_dir / "model.safetensors").is_file()
    ids = torch.tensor([[101, 2000, 3000, 4000, 102]])
    with torch.inference_mode():
        a = build_bert(ms)(ids).last_hidden_state
        b = build_bert(hf)(ids).last_hidden_state
    assert torch.equal(a, b)


def test_checkpoint_errors_are_readable(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(CheckpointError, match="weights"):
        load_checkpoint(tmp_path)


def all_configs(repo: Path) -> dict[str, object]:
    return {p.parent.name: pbtxt.parse(p.read_text()) for p in sorted(repo.glob("*/config.pbtxt"))}


def test_embedded_repository_configs_parse(tiny_repo):
    configs = all_configs(tiny_repo)
    public = set(PUBLIC_MODELS)
    encoders = {spec.triton_name for spec in SPECS.values()}
    assert set(configs) == public | encoders
    cross = configs["uie_cross"]
    groups = json.loads(cross.parameters["mask_groups"].string_value)
    assert groups["HINT_HIDDEN"] == "HINT_MASK" and groups["HEAD_LOGITS"] == "TEXT_MASK"
    assert {i.name for i in configs["information_extraction"].input if i.optional} == {"OUTPUT_ALL_PREFIX"}
    assert configs["zero_shot_classifier"].max_batch_size == 128  # fan-out: one row per label
    assert configs["pair_classifier"].output[0].dims == [2]
    zs = configs["zero_shot_classification"]
    assert {i.name: i.optional for i in zs.input} == {"TEXT": False, "LABELS": False,
                                                      "HYPOTHESIS_TEMPLATE": True, "MULTI_LABEL": True}
    encoder = configs["embedding_encoder"]
    assert encoder.backend == "python" and all(i.allow_ragged_batch for i in encoder.input)
    assert encoder.output[0].dims == [64]  # hidden size of the tiny model, from the spec
    for name, config in configs.items():
        assert config.backend == "python" and not config.platform, name  # no ensembles (server#8631)
        assert config.HasField("dynamic_batching"), name
        # admission control on the public models only: a queue policy on an encoder stalls its batcher
        assert config.dynamic_batching.HasField("default_queue_policy") == (name in public), name
        if name in public:
            policy = config.dynamic_batching.default_queue_policy
            assert policy.max_queue_size == 256
            if name == "information_extraction":  # BLS: one instance waiting on its encoders never serialises
                assert config.instance_group[0].count == 2
                assert policy.default_timeout_microseconds == 30_000_000
            else:  # computes in process: 2 instances taking turns on one runtime; no queue timeout (2.51 batcher stall)
                assert config.parameters["encoder_in_process"].string_value == "true"
                assert config.instance_group[0].count == 2
                assert policy.default_timeout_microseconds == 0 and not policy.allow_timeout_override
                assert config.dynamic_batching.max_queue_delay_microseconds == 0
    for encoder in ("embedding_encoder", "pair_classifier", "zero_shot_classifier", "reranker"):  # called directly only
        assert configs[encoder].parameters["lazy"].string_value == "true", encoder
    assert configs["uie_encoder"].parameters["lazy"].string_value == "false"
    rerank = configs["reranking"]
    assert [(i.name, list(i.dims), i.optional, i.allow_ragged_batch) for i in rerank.input] == [
        ("QUERY", [1], False, False), ("PASSAGES", [-1], False, True), ("TOP_N", [1], True, False)]
    assert configs["reranker"].output[0].dims == [1]  # a one-logit cross-encoder


def test_native_flavour_configs_parse(tiny_checkpoint, nli_checkpoint, tmp_path):
    repo = export_repo(tmp_path / "native", task="embedding", model_dir=tiny_checkpoint, opts={"flavour": "native"})
    export_repo(repo, task="zero-shot", model_dir=nli_checkpoint, opts={"flavour": "native"})
    zs = all_configs(repo)["zero_shot_classification"]
    tensor_names = json.loads(zs.parameters["encoder_tensor_names"].string_value)
    assert tensor_names["LOGITS"] == "LOGITS"
    assert zs.parameters["length_buckets"].string_value.endswith("512")
    configs = all_configs(repo)
    encoder = configs["embedding_encoder"]
    assert encoder.platform == "onnxruntime_onnx"
    names = {t.name for t in (*encoder.input, *encoder.output)}
    for name, config in configs.items():  # both flavours: admission control on the entries only
        assert config.dynamic_batching.HasField("default_queue_policy") == (name in PUBLIC_MODELS), name
    for public in ("text_embedding", "sentence_similarity"):
        params = configs[public].parameters
        assert params["encoder_in_process"].string_value == "false"  # native: the BLS path to Triton's backends
        assert set(json.loads(params["encoder_tensor_names"].string_value).values()) == names
        assert params["length_buckets"].string_value.endswith("512")
    accel = encoder.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP16"
    assert [w.name for w in encoder.model_warmup] == ["zeros"]


def test_export_cli(tmp_path, cache_root):
    out = tmp_path / "repo"
    cmd = [sys.executable, "-m", "structbert_triton", "export", "--task", "embedding", "--synthetic", "tiny",
           "--out", str(out), "--precision", "int8"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "NO meaning" in run.stderr and "validation passed" in run.stderr
    report = json.loads((out / "embedding_encoder" / "1" / "validation.json").read_text())
    assert report["precision"] == "int8" and report["passed"]
    manifest = json.loads((out / "structbert_manifest.json").read_text())
    assert manifest["embedding"]["precision"] == "int8"

    bad = subprocess.run([*cmd[:6], "--model-dir", str(tmp_path), "--out", str(out)], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "config.json is missing" in bad.stderr


@pytest.mark.e2e
def test_serve_exits_nonzero_with_reason_when_a_model_fails(tiny_repo, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_repo, broken)
    (broken / "embedding_encoder" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    run = subprocess.run([sys.executable, "-m", "structbert_triton", "serve", "--model-repository", str(broken),
                          "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "embedding_encoder" in run.stderr and "failed to load" in run.stderr.lower()


@pytest.mark.parametrize("family", ["zero-shot", "uie-cross"])
def test_sdpa_torchscript_matches_the_eager_reference(request, tmp_path, family):
    """--attention sdpa traces PyTorch's fused attention; validation compares with eager FP32."""
    checkpoint = load_checkpoint(request.getfixturevalue("nli_checkpoint" if family == "zero-shot" else "uie_checkpoint"))
    spec = spec_for(family)
    artifact = export_artifact(build_module(family, checkpoint, "sdpa"), spec, checkpoint, tmp_path, "fp32", "torchscript")
    report = validate_artifact(build_module(family, checkpoint), spec, checkpoint, artifact, precision="fp32",
                               fmt="torchscript", classify_outputs=CLASSIFY_OUTPUTS)
    assert report.passed and report.max_abs_diff < 1e-4


# --- the device a TorchScript artifact is traced on is the device it serves on ---------------------

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without a GPU")


def test_a_cpu_trace_is_refused_for_cuda(tiny_checkpoint, tmp_path):
    """The trace records the device of every tensor it creates; a CPU trace must never be shipped
    for (or loaded on) cuda: it would fail every request there."""
    from structbert_serving.runtime import check_trace_device, load_runner, traced_devices

    checkpoint = load_checkpoint(tiny_checkpoint)
    artifact = export_artifact(build_module("embedding", checkpoint), SPEC, checkpoint, tmp_path, "fp16",
                               "torchscript")
    module = torch.jit.load(str(artifact), map_location="cpu")
    assert traced_devices(module) == {"cpu"}
    check_trace_device(module, "cpu", artifact)
    with pytest.raises(RuntimeError, match="traced on cpu but is to run on cuda"):
        check_trace_device(module, "cuda", artifact)
    runner = load_runner(artifact, input_names=SPEC.input_names, output_names=SPEC.output_names, device="auto")
    assert runner.device == "cpu"  # auto follows the trace


@NO_GPU
def test_export_for_cuda_without_a_gpu_is_a_clear_error(tmp_path, cache_root):
    from structbert_export.tasks import export_device

    assert export_device("torchscript", "auto") == "cpu"
    with pytest.raises(ValueError, match="torch sees no GPU"):
        export_device("torchscript", "cuda")
    run = subprocess.run([sys.executable, "-m", "structbert_triton", "export", "--task", "embedding", "--synthetic",
                          "tiny", "--format", "torchscript", "--precision", "fp16", "--device", "cuda",
                          "--out", str(tmp_path / "repo")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "torch sees no GPU" in run.stderr
    assert not (tmp_path / "repo" / "embedding_encoder" / "1" / "model.pt").exists()


@NO_GPU
def test_torchscript_configs_name_the_trace_device(tiny_checkpoint, tmp_path):
    embedded = export_repo(tmp_path / "embedded", task="embedding", model_dir=tiny_checkpoint, format="torchscript")
    encoder = all_configs(embedded)["embedding_encoder"]
    assert encoder.parameters["device"].string_value == "cpu"
    meta = json.loads((embedded / "embedding_encoder" / "1" / "export.json").read_text())
    assert meta["device"] == "cpu"


def test_gpu_encoders_are_sized_for_large_batches():
    from structbert_export.repository import (
        GPU_BATCH_TOKENS,
        GPU_ENCODER_ROWS,
        ServingOptions,
        encoder_config,
        encoder_max_batch_size,
    )

    spec = spec_for("zero-shot")
    assert encoder_max_batch_size(spec, ServingOptions()) == 128
    assert encoder_max_batch_size(spec, ServingOptions(device="cuda")) == GPU_ENCODER_ROWS
    assert encoder_max_batch_size(spec, ServingOptions(device="cuda", flavour="native")) == 128  # TRT profiles
    sizes = {"hidden": 64, "max_length": 512, "labels": 3}
    config, _ = encoder_config(spec, sizes, Path("model.pt"), "fp16", ServingOptions(device="cuda"))
    assert config["max_batch_size"] == GPU_ENCODER_ROWS
    assert config["parameters"]["max_batch_tokens"]["string_value"] == str(GPU_BATCH_TOKENS)
    assert config["parameters"]["device"]["string_value"] == "cuda"
