"""Every native repository a user can export, against what the container's release accepts: its
model_config proto, the onnxruntime backend's keys, its ONNX Runtime, and its stub's Python."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format

from structbert_client.api import PUBLIC_MODELS
from structbert_export import pbtxt
from structbert_export.artifacts import example_inputs
from structbert_export.checkpoint import load_checkpoint
from structbert_export.container import IncompatibleArtifactError, ensure_onnx_loadable, release
from structbert_export.specs import SPECS, spec_for
from tests.contract.conftest import ROOT, side_run
from tests.contract.release_sources import SESSION_KEYS, TENSORRT_KEYS

ENCODERS = {spec.triton_name: spec.family for spec in SPECS.values()}  # every encoder of every family


def configs(repo: Path) -> dict:
    return {p.parent.name: pbtxt.parse(p.read_text()) for p in sorted(repo.glob("*/config.pbtxt"))}


def test_every_native_config_parses_in_the_release_proto(native_repos, contract_python):
    paths = [str(p) for repo in native_repos.values() for p in sorted(repo.glob("*/config.pbtxt"))]
    assert len(paths) == len(native_repos) * (len(ENCODERS) + len(PUBLIC_MODELS))
    result = side_run(contract_python, {"configs": paths})
    assert result["versions"]["tritonclient"] == release().tritonclient
    assert {p: e for p, e in result["configs"].items() if e} == {}


def shapes(value: str) -> dict[str, list[int]]:
    return {name: [int(d) for d in dims.split("x")] for name, dims in (s.split(":") for s in value.split(","))}


def check_profiles(config, params: dict[str, str]) -> None:
    """Profile shapes name every input with every dimension (batch first), fixed dims as declared."""
    profile = {k: shapes(params[f"trt_profile_{k}_shapes"]) for k in ("min", "opt", "max")}
    inputs = {t.name: list(t.dims) for t in config.input}
    for key, by_name in profile.items():
        assert set(by_name) == set(inputs), (config.name, key)
        for name, dims in by_name.items():
            assert len(dims) == 1 + len(inputs[name]), (config.name, key, name, dims)
            assert all(d == want for d, want in zip(dims[1:], inputs[name]) if want != -1), (config.name, name)
    for name in inputs:
        assert all(lo <= mid <= hi for lo, mid, hi in zip(profile["min"][name], profile["opt"][name],
                                                          profile["max"][name])), name
        assert profile["max"][name][0] == config.max_batch_size


@pytest.mark.parametrize("device,precision", [("cpu", "fp32"), ("cpu", "int8"), ("cuda", "fp32"), ("cuda", "fp16")])
def test_native_encoders_match_the_onnxruntime_backend(native_repos, device, precision):
    from tritonclient.grpc import model_config_pb2

    kinds = model_config_pb2.ModelInstanceGroup.Kind
    found = configs(native_repos[(device, precision)])
    caches = set()
    for name, config in found.items():
        if name in PUBLIC_MODELS:
            assert config.backend == "python" and not config.platform, name
            continue
        assert config.platform == "onnxruntime_onnx" and config.default_model_filename == "model.onnx", name
        assert [kinds.Name(g.kind) for g in config.instance_group] == ["KIND_GPU" if device == "cuda" else "KIND_CPU"]
        assert set(config.parameters) <= SESSION_KEYS, name
        assert config.parameters["intra_op_thread_count"].string_value == "1", name  # --intra-op-threads 1
        warm = config.model_warmup[0]
        assert set(warm.inputs) == {t.name for t in config.input}, name
        for tensor in config.input:
            sample = warm.inputs[tensor.name]
            assert sample.data_type == tensor.data_type and len(sample.dims) == len(tensor.dims), (name, tensor.name)
        accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
        if device == "cuda" and precision == "fp32":
            (trt,) = accelerators
            params = dict(trt.parameters)
            assert trt.name == "tensorrt" and set(params) <= TENSORRT_KEYS, set(params) - TENSORRT_KEYS
            assert params["precision_mode"] == "FP16" and params["trt_engine_cache_enable"] == "1"
            check_profiles(config, params)
            caches.add(params["trt_engine_cache_path"])
        else:  # CPU provider, or the CUDA provider for the ORT-fused FP16 graph
            assert not config.HasField("optimization"), name
    assert len(caches) == (len(ENCODERS) if (device, precision) == ("cuda", "fp32") else 0)


def artifacts(native_repos) -> dict[str, tuple[Path, str, str]]:
    """Unique ONNX artifacts: digest -> (path, family, precision)."""
    found = {}
    for (_, precision), repo in native_repos.items():
        for model, family in ENCODERS.items():
            path = repo / model / "1" / "model.onnx"
            found.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), (path, family, precision))
    return found


# The release's ORT against the main environment's ORT, same CPU provider: FP32 graphs agree to float
# rounding; fused/quantised kernels changed between the releases, within these bounds (measured).
AGREEMENT = {"fp32": 1e-5, "fp16": 1e-2, "int8": 2e-2}


def test_every_onnx_artifact_loads_and_answers_in_the_containers_onnxruntime(native_repos, contract_python,
                                                                            tmp_path):
    import onnx
    import onnxruntime as ort

    rel = release()
    found = artifacts(native_repos)
    assert len(found) >= 3 * len(ENCODERS)  # fp32, int8 and fp16 graphs of every encoder
    jobs, expected = [], {}
    for i, (path, family, precision) in enumerate(found.values()):
        model = onnx.load(str(path), load_external_data=False)
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        assert opset <= rel.onnx_max_opset and model.ir_version <= rel.onnx_max_ir_version, (path, opset)
        spec = spec_for(family)
        meta = json.loads((path.parent / "export.json").read_text())
        inputs = example_inputs(spec, 3, 33, vocab_size=load_checkpoint(meta["source"]).config.vocab_size,
                                hidden=meta["hidden_size"], seed=i)
        feeds = {n: t.numpy() for n, t in zip(spec.input_names, inputs)}
        np.savez(tmp_path / f"feeds{i}.npz", **feeds)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        expected[str(path)] = (dict(zip(spec.output_names, session.run(spec.output_names, feeds))), precision)
        jobs.append({"model": str(path), "feeds": str(tmp_path / f"feeds{i}.npz"), "out": str(tmp_path / f"out{i}.npz")})
    result = side_run(contract_python, {"onnx": jobs})
    assert result["versions"]["onnxruntime"] == rel.onnxruntime
    assert {m: e for m, e in result["onnx"].items() if e} == {}
    worst = {}
    for job in jobs:
        want, precision = expected[job["model"]]
        got = dict(np.load(job["out"]))
        assert set(got) == set(want), job["model"]
        diff = max(float(np.abs(got[k] - want[k]).max()) for k in want)
        worst[precision] = max(worst.get(precision, 0.0), diff)
        assert diff <= AGREEMENT[precision], (job["model"], precision, diff)
    print(f"ONNX Runtime {rel.onnxruntime} vs the export's ORT, max abs diff per precision: {worst}")


def test_the_containers_onnxruntime_fuses_the_int8_layer_norms(native_repos, contract_python, tmp_path):
    """INT8 artifacts keep Add + LayerNormalization unfused (ORT 1.30-1.31's fused CPU kernel is the
    slower); the container's ONNX Runtime fuses them into its SkipLayerNormalization at load (1.19.2,
    where it was the faster kernel: 17-20 ms against 28 + ~10 unfused per pass; 1.28.0 fuses them
    too, its speed there not measured)."""
    import onnx

    source = native_repos[("cpu", "int8")] / "embedding_encoder" / "1" / "model.onnx"
    assert "SkipLayerNormalization" not in {n.op_type for n in onnx.load(str(source)).graph.node}
    feeds = tmp_path / "feeds.npz"
    ids = np.array([[101, 2000, 2001, 102]], np.int64)
    np.savez(feeds, INPUT_IDS=ids, ATTENTION_MASK=np.ones_like(ids), TOKEN_TYPE_IDS=np.zeros_like(ids))
    job = {"model": str(source), "feeds": str(feeds), "out": str(tmp_path / "o.npz"),
           "optimized": str(tmp_path / "optimized.onnx")}
    assert side_run(contract_python, {"onnx": [job]})["onnx"][str(source)] is None
    # the graph only: ORT's optimized copy names the weights file beside the source artifact
    ops = [n.op_type for n in onnx.load(job["optimized"], load_external_data=False).graph.node]
    assert ops.count("SkipLayerNormalization") >= 2 and "MatMulIntegerToFloat" in ops, sorted(set(ops))


def test_the_release_facts_about_onnx_hold_in_its_onnxruntime(native_repos, contract_python, tmp_path):
    """IR version max_ir is read, max_ir + 1 refused (so lowering the IR version is needed and
    enough); an opset beyond the facts is refused at export."""
    import onnx

    rel = release()
    source = native_repos[("cpu", "fp32")] / "embedding_encoder" / "1" / "model.onnx"
    model = onnx.load(str(source))
    newer = tmp_path / "ir-newer.onnx"
    model.ir_version = rel.onnx_max_ir_version + 1
    onnx.save(model, str(newer))
    feeds = tmp_path / "feeds.npz"
    ids = np.array([[101, 2000, 102]], np.int64)
    np.savez(feeds, INPUT_IDS=ids, ATTENTION_MASK=np.ones_like(ids), TOKEN_TYPE_IDS=np.zeros_like(ids))
    job = {"model": str(newer), "feeds": str(feeds), "out": str(tmp_path / "o.npz")}
    refused = side_run(contract_python, {"onnx": [job]})["onnx"][str(newer)]
    assert refused and "IR version" in refused
    assert ensure_onnx_loadable(newer) == {"opset": 17, "ir_version": rel.onnx_max_ir_version}
    assert side_run(contract_python, {"onnx": [job]})["onnx"][str(newer)] is None
    model.opset_import[0].version = rel.onnx_max_opset + 1
    onnx.save(model, str(newer))
    with pytest.raises(IncompatibleArtifactError, match=f"opset {rel.onnx_max_opset + 1}"):
        ensure_onnx_loadable(newer)


def test_the_release_onnxruntime_reads_up_to_the_facts_opset(contract_python, tmp_path):
    """ai.onnx opset onnx_max_opset loads in the release's ONNX Runtime, the next one is refused:
    the facts' bound is the runtime's own (measured, not copied from a table)."""
    import onnx
    from onnx import TensorProto, helper

    rel = release()
    feeds = tmp_path / "x.npz"
    np.savez(feeds, X=np.ones(2, np.float32))
    jobs = {}
    for opset in (rel.onnx_max_opset, rel.onnx_max_opset + 1):
        graph = helper.make_graph([helper.make_node("Add", ["X", "X"], ["Y"])], "add",
                                  [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = rel.onnx_max_ir_version
        path = tmp_path / f"add{opset}.onnx"
        onnx.save(model, str(path))
        jobs[opset] = {"model": str(path), "feeds": str(feeds), "out": str(tmp_path / f"y{opset}.npz")}
    result = side_run(contract_python, {"onnx": list(jobs.values())})["onnx"]
    assert result[jobs[rel.onnx_max_opset]["model"]] is None
    refused = result[jobs[rel.onnx_max_opset + 1]["model"]]
    assert refused and "opset" in refused.lower(), refused
    np.testing.assert_array_equal(np.load(jobs[rel.onnx_max_opset]["out"])["Y"], [2.0, 2.0])


def test_python_models_import_and_answer_in_the_stub_python(native_repos, stub_python):
    rel = release()
    repo = native_repos[("cuda", "fp32")]
    models = {}
    for name in PUBLIC_MODELS:
        config = json_format.MessageToDict(configs(repo)[name], preserving_proto_field_name=True)
        models[name] = {"dir": str(repo / name), "config": config}
    hidden = configs(repo)["text_embedding"].output[0].dims[0]
    run = subprocess.run([str(stub_python), str(Path(__file__).with_name("stub_check.py")), str(ROOT)],
                         input=json.dumps({"models": models, "hidden": hidden}), capture_output=True, text=True,
                         timeout=300, cwd="/")
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert (result["python"], result["numpy"], result["tokenizers"]) == (rel.stub_python, rel.numpy, rel.tokenizers)
    assert {n: m["error"] for n, m in result["models"].items() if not m["ok"]} == {}
    assert set(result["models"]) == set(PUBLIC_MODELS)
    assert result["models"]["text_embedding"]["answer"] == hidden
