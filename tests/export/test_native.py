"""The native flavour (the nvcr.io container's onnxruntime backend) as a Triton user expects it:
``--device`` honoured, thread settings, per-model TensorRT engine caches, profile shapes of each
input's real rank, TorchScript refused, and an export that never breaks a serving repository."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from structbert_export import pbtxt
from structbert_export.specs import spec_for
from tests.conftest import export_repo

KIND_GPU = model_config_pb2.ModelInstanceGroup.Kind.Value("KIND_GPU")
KIND_CPU = model_config_pb2.ModelInstanceGroup.Kind.Value("KIND_CPU")


def config(repo: Path, model: str):
    return pbtxt.parse((repo / model / "config.pbtxt").read_text())


def trt(cfg) -> dict[str, str]:
    (accel,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel.name == "tensorrt"
    return dict(accel.parameters)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_native_cpu_export_runs_on_cpu_instances_with_its_thread_settings(native_repos):
    """--device cpu: KIND_CPU, no TensorRT block, ORT's session options as the backend reads them
    (the repository is exported with --intra-op-threads 1)."""
    repo = native_repos[("cpu", "fp32")]
    encoder = config(repo, "embedding_encoder")
    assert encoder.platform == "onnxruntime_onnx"
    assert [g.kind for g in encoder.instance_group] == [KIND_CPU]
    assert not encoder.HasField("optimization")
    assert encoder.parameters["intra_op_thread_count"].string_value == "1"
    assert encoder.parameters["execution_mode"].string_value == "0"
    meta = json.loads((repo / "embedding_encoder" / "1" / "export.json").read_text())
    assert meta["serving"]["device"] == "cpu"


@pytest.mark.parametrize("precision,kind,tensorrt", [("fp32", KIND_GPU, True), ("int8", KIND_CPU, False)])
def test_native_auto_device(tiny_checkpoint, tmp_path, precision, kind, tensorrt):
    """auto: the container's host is a GPU host (FP32 -> TensorRT FP16); INT8 is a CPU artifact."""
    repo = export_repo(tmp_path / "repo", task="embedding", model_dir=tiny_checkpoint, precision=precision,
                       opts={"flavour": "native"})
    encoder = config(repo, "embedding_encoder")
    assert [g.kind for g in encoder.instance_group] == [kind]
    assert encoder.HasField("optimization") == tensorrt


def test_tensorrt_engine_cache_is_per_model_and_artifact(native_repos, tmp_path):
    """ORT names an engine after the graph, not the weights: each model and each artifact needs its
    own cache, or pair_classifier and zero_shot_classifier load each other's engine and new weights
    reuse a stale one."""
    from structbert_export.synthetic import make_bert_checkpoint

    repo = native_repos[("cuda", "fp32")]
    caches = {m: trt(config(repo, m)) for m in ("pair_classifier", "zero_shot_classifier", "embedding_encoder")}
    paths = [c["trt_engine_cache_path"] for c in caches.values()]
    assert len(set(paths)) == 3 and all(p.startswith("/trt_cache/") for p in paths)
    assert all(c["trt_engine_cache_enable"] == "1" and c["precision_mode"] == "FP16" for c in caches.values())
    # new weights for the same model and graph: a new engine
    other = make_bert_checkpoint(tmp_path / "other", "tiny", seed=99)
    again = export_repo(tmp_path / "repo", task="embedding", model_dir=other, opts={"flavour": "native", "device": "cuda"})
    assert trt(config(again, "embedding_encoder"))["trt_engine_cache_path"] != caches["embedding_encoder"][
        "trt_engine_cache_path"]


def test_tensorrt_profile_shapes_give_every_dimension_of_every_input(native_repos):
    repo = native_repos[("cuda", "fp32")]
    for model, family in (("uie_encoder", "uie-encoder"), ("uie_cross", "uie-cross")):
        spec = spec_for(family)
        params = trt(config(repo, model))
        for key in ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"):
            shapes = dict(item.split(":") for item in params[key].split(","))
            assert set(shapes) == set(spec.input_names), key
            for tensor in spec.inputs:
                assert len(shapes[tensor.name].split("x")) == len(tensor.dims), (model, key, shapes)
    cross = dict(item.split(":") for item in trt(config(repo, "uie_cross"))["trt_profile_max_shapes"].split(","))
    assert cross["TEXT_HIDDEN"] == "128x512x64" and cross["HINT_HIDDEN"] == "128x128x64"


def cli_export(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "structbert_triton", "export", "--task", "embedding",
                           "--out", str(out), *args], capture_output=True, text=True, timeout=300)


def test_native_torchscript_is_refused_before_anything_is_written(tiny_checkpoint, tmp_path):
    """torch 2.13 would save it, the container's libtorch 2.5 would have to load it: TorchScript is
    not forward-compatible."""
    run = cli_export(tmp_path / "repo", "--model-dir", str(tiny_checkpoint), "--flavour", "native",
                     "--format", "torchscript")
    assert run.returncode == 2, run.stderr
    assert "not forward-compatible" in run.stderr and "--format onnx" in run.stderr
    assert not (tmp_path / "repo").exists()


def test_native_int8_on_cuda_is_refused(tiny_checkpoint, tmp_path):
    run = cli_export(tmp_path / "repo", "--model-dir", str(tiny_checkpoint), "--flavour", "native",
                     "--precision", "int8", "--device", "cuda")
    assert run.returncode == 2 and "CPU artifact" in run.stderr
    assert not (tmp_path / "repo").exists()


def test_a_refused_or_failed_export_leaves_the_repository_as_it_was(tiny_checkpoint, tmp_path, monkeypatch):
    from structbert_export import tasks
    from structbert_export.validation import ValidationError

    repo = export_repo(tmp_path / "repo", task="embedding", model_dir=tiny_checkpoint)
    before = tree_digest(repo)
    run = cli_export(repo, "--model-dir", str(tiny_checkpoint), "--precision", "int8", "--format", "torchscript")
    assert run.returncode == 2 and "INT8" in run.stderr
    assert tree_digest(repo) == before

    def failing(*args, **kwargs):
        raise ValidationError("injected: max abs diff 1 > 0.0001")

    monkeypatch.setattr(tasks, "validate_artifact", failing)
    with pytest.raises(ValidationError, match="injected"):
        export_repo(repo, task="embedding", model_dir=tiny_checkpoint, precision="fp16")
    assert tree_digest(repo) == before
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no staging folder left behind


def test_a_good_export_replaces_only_its_own_models(tiny_checkpoint, nli_checkpoint, tmp_path):
    repo = export_repo(tmp_path / "repo", task="embedding", model_dir=tiny_checkpoint)
    export_repo(repo, task="zero-shot", model_dir=nli_checkpoint)
    zero_shot = tree_digest(repo / "zero_shot_classifier")
    export_repo(repo, task="embedding", model_dir=tiny_checkpoint, precision="int8")
    assert tree_digest(repo / "zero_shot_classifier") == zero_shot
    assert json.loads((repo / "embedding_encoder/1/export.json").read_text())["precision"] == "int8"
    manifest = json.loads((repo / "structbert_manifest.json").read_text())
    assert manifest["embedding"]["precision"] == "int8" and "zero-shot" in manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


@pytest.mark.e2e
def test_the_old_repository_still_serves_after_a_failed_export(tiny_checkpoint, tmp_path, monkeypatch):
    from structbert_export import tasks
    from structbert_export.validation import ValidationError
    from structbert_serving.embedded_server import EmbeddedServer
    from tests.conftest import make_client

    repo = export_repo(tmp_path / "repo", task="embedding", model_dir=tiny_checkpoint)
    run = cli_export(repo, "--model-dir", str(tiny_checkpoint), "--precision", "int8", "--format", "torchscript")
    assert run.returncode == 2
    monkeypatch.setattr(tasks, "validate_artifact", lambda *a, **k: (_ for _ in ()).throw(ValidationError("x")))
    with pytest.raises(ValidationError):
        export_repo(repo, task="embedding", model_dir=tiny_checkpoint)
    with EmbeddedServer(repo) as server:
        client = make_client(server, "grpc")
        assert client.embed("今天天气很好").shape == (64,)
        client.close()


def test_a_swap_that_fails_halfway_puts_the_old_models_back(tmp_path, monkeypatch):
    from structbert_export.tasks import swap_in

    out, staging = tmp_path / "repo", tmp_path / "staging"
    for root, text in ((out, "old"), (staging, "new")):
        for model in ("a", "b"):
            (root / model).mkdir(parents=True)
            (root / model / "config.pbtxt").write_text(text)
    rename = Path.rename

    def flaky(self, target):
        if self == staging / "b":
            raise OSError("disk full")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", flaky)
    with pytest.raises(OSError, match="disk full"):
        swap_in(staging, out, ["a", "b"])
    assert {m: (out / m / "config.pbtxt").read_text() for m in ("a", "b")} == {"a": "old", "b": "old"}


def test_native_configs_bound_the_runtimes_activations():
    """The backend has no prepacking switch; what it can bound: the CPU arena shrinks back after each
    run (a run option the backend reads), the GPU arena grows by what a run asks."""
    from structbert_export.native import session_parameters

    cpu = {k: v["string_value"] for k, v in session_parameters(0, device="cpu").items()}
    assert cpu["enable_mem_arena"] == "true" and cpu["memory.enable_memory_arena_shrinkage"] == "cpu:0"
    gpu = {k: v["string_value"] for k, v in session_parameters(0, device="cuda").items()}
    assert gpu["arena_extend_strategy"] == "1" and "memory.enable_memory_arena_shrinkage" not in gpu


def test_on_a_gpu_the_pipelines_call_one_encoder_and_it_warms_up_at_its_budget(tmp_path):
    """Every process that touches CUDA holds a context and a device copy of the weights: with
    --device cuda the public models do not run the artifact themselves; the encoder's one session
    warms up at the token budget, so an out-of-memory shows at load."""
    from structbert_export.repository import ServingOptions, encoder_config, runs_in_public_model
    from structbert_export.specs import spec_for
    from structbert_serving.params import EncoderModelParams

    spec = spec_for("embedding")
    sizes = {"hidden": 32, "max_length": 512, "labels": 2}
    for device, in_process, budget in (("cuda", False, 512), ("cpu", True, 0)):
        opts = ServingOptions(device=device)
        assert runs_in_public_model(spec, opts) is in_process
        config, _ = encoder_config(spec, sizes, tmp_path / "model.onnx", "fp32", opts)
        params = EncoderModelParams.parse({k: v["string_value"] for k, v in config["parameters"].items()})
        assert params.runtime.budget_warmup_length == budget
        assert not params.runtime.prepack_weights and not params.runtime.memory_arena
