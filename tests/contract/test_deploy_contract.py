"""Every deploy path runs the pinned release's image of this project, through NGC's entrypoint, with a
large /dev/shm: checked against the release facts (structbert_export/container_release.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from structbert_client import __version__
from structbert_export.container import facts, release

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGC_ENTRYPOINT = "/opt/nvidia/nvidia_entrypoint.sh"
IMAGE = f"structbert-triton:{__version__}"


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def docs(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / path).read_text()) if d]


def test_the_facts_are_complete_and_explained():
    data, rel = facts(), release()
    assert rel.image == f"nvcr.io/nvidia/tritonserver:{rel.release}-py3"
    assert rel.tritonclient == rel.triton_server  # the proto of the server's own release
    for key in ("release", "onnxruntime", "onnx_max_opset", "stub_python", "tensorrt", "libtorch", "torchscript_native"):
        assert data["why"].get(key), f"container_release.json: say where {key!r} comes from"
    assert "8631" in data["why"]["release"] and "BLS" in data["why"]["release"]


def test_the_dockerfile_builds_on_the_release_and_reads_its_pins_from_the_facts():
    text = dockerfile()
    (release_arg,) = re.findall(r"^ARG TRITON_RELEASE=(\S+)$", text, re.M)
    (base,) = re.findall(r"^FROM (\S+)$", text, re.M)
    assert release_arg == release().release
    assert base.replace("${TRITON_RELEASE}", release_arg) == release().image
    assert "container_release.json" in text and "install_stub_deps.py" in text
    # no version of the facts is written a second time here
    assert not re.search(r"numpy==|tokenizers==|onnxruntime==", text)


def test_the_image_chains_ngc_entrypoint():
    (entrypoint,) = re.findall(r"^ENTRYPOINT (.+)$", dockerfile(), re.M)
    assert json.loads(entrypoint) == [NGC_ENTRYPOINT, "/usr/local/bin/structbert-entrypoint"]


def test_compose_runs_the_image_entrypoint_with_a_large_shm():
    triton = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["triton"]
    assert triton["image"] == IMAGE and triton["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "entrypoint" not in triton and triton["command"] == []
    assert triton["shm_size"] in ("1gb", "2gb", "4gb")


def pod_checks(spec: dict, container: dict, repository: str) -> None:
    assert container["image"] == IMAGE
    assert "command" not in container and not container.get("args"), "a command/args bypasses the entrypoint"
    shm = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"}
    (volume,) = [v for v in spec["volumes"] if v["name"] in shm]
    assert volume["emptyDir"]["medium"] == "Memory"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODEL_REPOSITORY"] == repository and "TRITON_ADMIN_KEY" in env


def test_kubernetes_runs_the_project_image_through_its_entrypoint():
    (deployment,) = [d for d in docs("k8s/base/deployment.yaml") if d["kind"] == "Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    pod_checks(spec, spec["containers"][0], "/models")


def test_kserve_runs_the_project_image_not_the_stock_runtime():
    (runtime,) = docs("k8s/kserve/servingruntime.yaml")
    (isvc,) = docs("k8s/kserve/inferenceservice.yaml")
    pod_checks(runtime["spec"], runtime["spec"]["containers"][0], "/mnt/models")
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    assert "tritonserver:" not in (DEPLOY / "k8s/kserve/inferenceservice.yaml").read_text().split("apiVersion")[1]
