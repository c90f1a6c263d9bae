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
    assert re.fullmatch(r"\d\d\.\d\d", rel.release) and rel.image == f"nvcr.io/nvidia/tritonserver:{rel.release}-py3"
    assert {k for k in data if k != "why"} <= set(data["why"]), "container_release.json: say where each fact comes from"
    # a client whose model_config proto is the server's, never newer than the server (the why says how it was matched)
    client, server = (tuple(int(p) for p in v.split(".")) for v in (rel.tritonclient, rel.triton_server))
    assert client <= server and "proto" in data["why"]["tritonclient"]
    assert data["gateway_packages"]["tritonclient[grpc]"] == rel.tritonclient
    assert rel.embedded_server != rel.triton_server and "tests/contract" in data["why"]["embedded_server"]


# Where a deploy file pins the container release (an image tag, the Dockerfile's build argument, the
# pods' annotation) or names a server version: each must come from the facts.
RELEASE_PINS = (r"tritonserver:(\d\d\.\d\d)", r"TRITON_RELEASE=(\d[\d.]*\d)", r'triton-release: "?([\d.]+)')
SERVER_VERSION = r"\b(2\.\d\d\.\d+)\b"


def test_every_deploy_file_follows_the_release_facts():
    rel = release()
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in ("", ".yml", ".yaml", ".sh", ".py", ".md")]
    pinned = {}
    for path in files:
        text = path.read_text()
        for pattern in RELEASE_PINS:
            for found in re.findall(pattern, text):
                pinned.setdefault(found, set()).add(path.relative_to(DEPLOY).as_posix())
        versions = set(re.findall(SERVER_VERSION, text))
        assert versions <= {rel.triton_server, rel.embedded_server}, (path, versions)
    assert set(pinned) == {rel.release}, pinned
    assert {"Dockerfile", "k8s/base/deployment.yaml", "k8s/kserve/servingruntime.yaml"} <= pinned[rel.release]


def test_the_pods_say_which_release_they_run():
    """Kubernetes and KServe run the project's image (built on the release); their pods carry the
    release as an annotation, so an operator reads it without pulling the image."""
    (deployment,) = [d for d in docs("k8s/base/deployment.yaml") if d["kind"] == "Deployment"]
    (runtime,) = docs("k8s/kserve/servingruntime.yaml")
    for meta in (deployment["spec"]["template"]["metadata"], runtime["metadata"]):
        assert meta["annotations"]["structbert-triton/triton-release"] == release().release


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
