"""Where the embedded server (2.51) and the container release differ in what this project relies on,
each difference is covered here or by a documented reason (README, "Deployment": "What differs
between the embedded server and the container release"):

- the Python-backend API the adapters call (``pb_utils`` names, error codes, request keywords): the
  release's stub defines every one (below), and the unit tests' fake implements it;
- the model-config proto (parameters, queue policy): test_native_contract parses every config of
  both flavours in the release's proto;
- the onnxruntime backend's parameters: test_native_contract, against the release's key lists;
- metric names: the dashboard and the autoscaling rule query only metrics the release exports;
- readiness with a dead stub: the deploy probes rely on the release's ready endpoint (only from
  26.04), while ``serve`` keeps ``stub_health`` for the embedded server;
- the gateway's packages: imported and set up under the image's Python.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import yaml

from structbert_export.container import facts, release
from tests import fake_pb_utils
from tests.contract import release_sources as upstream
from tests.contract.conftest import ROOT

SERVING = ROOT / "structbert_serving"
DEPLOY = ROOT / "deploy"


def pb_utils_uses() -> tuple[set[str], set[str], dict[str, set[str]]]:
    """(names read from pb_utils, TritonError codes, keyword arguments per pb_utils constructor) in
    every module the Python models import."""
    names, codes, keywords = set(), set(), {}
    for path in sorted(SERVING.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pb_utils":
                names.add(node.attr)
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "TritonError"):
                codes.add(node.attr)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "pb_utils"):
                keywords.setdefault(node.func.attr, set()).update(k.arg for k in node.keywords if k.arg)
    return names, codes, keywords


# keyword arguments of the release stub's constructors (python_backend r26.07 src/pb_stub.cc py::init)
CONSTRUCTOR_KEYWORDS = {
    "InferenceRequest": {"model_name", "inputs", "requested_output_names", "request_id", "correlation_id", "flags",
                         "timeout", "preferred_memory", "trace", "parameters", "model_version"},
    "InferenceResponse": {"output_tensors", "error", "parameters"},
    "TritonError": {"message", "code"},
    "PreferredMemory": {"preferred_memory_type", "preferred_device_id"},
}


def test_the_adapters_use_only_what_the_release_stub_defines():
    names, codes, keywords = pb_utils_uses()
    assert {"InferenceRequest", "InferenceResponse", "TritonError", "Tensor"} <= names  # the scan sees the adapters
    assert names <= upstream.PB_UTILS, names - upstream.PB_UTILS
    assert codes <= upstream.PB_ERROR_CODES, codes - upstream.PB_ERROR_CODES
    for constructor, used in keywords.items():
        assert used <= CONSTRUCTOR_KEYWORDS.get(constructor, set()), (constructor, used)
    # the unit tests' fake stands in for every one of them, so tests/unit exercises what the stub will run
    assert {n for n in names if not hasattr(fake_pb_utils, n)} == set()
    assert {c for c in codes if not hasattr(fake_pb_utils.TritonError, c)} == set()


def queried_metrics() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/structbert-triton.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    (rules,) = [d for d in yaml.safe_load_all((DEPLOY / "k8s/base/prometheus-adapter-rules.yaml").read_text()) if d]
    exprs += [rule["metricsQuery"] for rule in yaml.safe_load(rules["data"]["rules.yaml"])["rules"]]
    return {m for e in exprs for m in re.findall(r"\bnv_[a-z_]+", e)}


def test_the_dashboard_and_the_autoscaler_query_metrics_the_release_exports():
    """tests/deploy checks the same queries against the embedded 2.51 server's /metrics (CPU: no GPU
    metrics); the release exports a superset of 2.51's names (release_sources.METRICS)."""
    queried = queried_metrics()
    assert {"nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"} <= queried
    assert queried <= upstream.METRICS, queried - upstream.METRICS


def release_tuple(name: str) -> tuple[int, int]:
    year, month = name.split(".")
    return int(year), int(month)


def test_the_deploy_probes_rely_on_the_releases_readiness():
    """No deploy file runs structbert_serving.stub_health: the release's ready endpoint sees a dead
    stub (from 26.04, with --strict-readiness=true). Pin an older release and this fails: its probes
    would need stub_health back."""
    assert release_tuple(release().release) >= upstream.READY_SEES_DEAD_STUBS
    entrypoint = (DEPLOY / "docker/entrypoint.sh").read_text()
    assert "--strict-readiness=true" in entrypoint
    for path in (DEPLOY / "Dockerfile", DEPLOY / "docker-compose.yml", DEPLOY / "k8s/base/deployment.yaml"):
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert "stub_health" not in code, path
    (deployment,) = [d for d in yaml.safe_load_all((DEPLOY / "k8s/base/deployment.yaml").read_text())
                     if d and d["kind"] == "Deployment"]
    triton = deployment["spec"]["template"]["spec"]["containers"][0]
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_serve_keeps_the_stub_check_for_the_embedded_server():
    """The embedded 2.51 server answers ready with a dead stub: serve's supervisor checks the stubs."""
    assert release_tuple("24.10") < upstream.READY_SEES_DEAD_STUBS  # 2.51 = 24.10
    assert release().embedded_server == "2.51.0"
    source = (SERVING / "supervisor.py").read_text()
    assert "missing_stubs()" in source


def test_the_gateway_runs_under_the_images_python(native_repos, stub_python):
    """The gateway's pinned packages (fastapi, uvicorn, orjson, prometheus-client, tritonclient) under
    the image's Python: the app is built on a native repository, its OpenAPI document rendered, its
    tokenizers loaded and a Triton client set up."""
    rel = release()
    repo = native_repos[("cpu", "int8")]
    run = subprocess.run([str(stub_python), str(Path(__file__).with_name("gateway_check.py")), str(ROOT), str(repo)],
                         capture_output=True, text=True, timeout=300, cwd="/")
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["python"] == rel.stub_python
    pins = {name.split("[")[0]: version for name, version in facts()["gateway_packages"].items()}
    assert {name: result["versions"].get(name) for name in pins} == pins
    assert result["tokenizers"] and set(result["tokenizers"]) <= set(result["served"])
    assert result["paths"] >= 5 and "/v1/embeddings" in result["routes"]
