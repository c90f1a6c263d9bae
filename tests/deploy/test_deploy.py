"""Offline validation of deploy/: overlays rendered by ``kubectl kustomize`` against the Kubernetes
schemas, hadolint, yamllint, compose structure, one flag set everywhere, and a dashboard that only
queries metrics Triton exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from structbert_serving.embedded_server import PRODUCTION_FLAGS, RESTRICTED_APIS, restricted_api_flags

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30.0"
CRDS = {"ServiceMonitor": "monitoring.coreos.com/v1", "InferenceService": "serving.kserve.io/v1beta1",
        "ServingRuntime": "serving.kserve.io/v1alpha1"}
# Exported by Triton only on GPU hosts (Triton's metrics docs); the CPU test server cannot show them.
GPU_METRICS = {"nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes", "nv_gpu_power_usage"}


def render(overlay: Path) -> list[dict]:
    """The overlay as Kubernetes will see it, rendered by the real ``kubectl kustomize``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # .ci/run refuses to run without kubectl, so CI never skips this
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    run = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def validate_k8s(resource: dict) -> None:
    if resource["kind"] in CRDS:
        assert resource["apiVersion"] == CRDS[resource["kind"]]
        assert resource["metadata"]["name"] and isinstance(resource["spec"], dict)
        return
    import kubernetes_validate

    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ["base", "overlays/production", "overlays/dev"])
def test_kustomize_renders_valid_manifests(overlay):
    resources = render(DEPLOY / "k8s" / overlay)
    kinds = {r["kind"] for r in resources}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor",
            "ConfigMap", "PersistentVolumeClaim"} <= kinds
    for resource in resources:
        validate_k8s(resource)
    deployment = next(r for r in resources if r["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
    # ready fails once a Python-backend stub died (the release facts; tests/contract checks why)
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    shm = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    hpa = next(r for r in resources if r["kind"] == "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "triton_queue_compute_ratio"
    if overlay == "overlays/production":
        assert deployment["spec"]["replicas"] == 2 and hpa["spec"]["maxReplicas"] == 16
    check_gateway_container(deployment, resources)


def check_gateway_container(deployment: dict, resources: list[dict]) -> None:
    """The HTTP gateway runs beside triton in the pod: same image, its own command, probes on /health."""
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    gateway = containers["gateway"]
    assert gateway["image"] == containers["triton"]["image"]
    assert gateway["command"] == ["python3", "-m", "structbert_gateway"]
    args = set(gateway["args"])
    assert {"--triton-url=127.0.0.1:8001", "--triton-http-url=127.0.0.1:8000", "--repository=/models",
            "--host=0.0.0.0", "--port=8080"} <= args
    assert gateway["ports"] == [{"name": "gateway", "containerPort": 8080}]
    for probe in ("startupProbe", "readinessProbe"):
        assert gateway[probe]["httpGet"] == {"path": "/health", "port": "gateway"}
    assert gateway["livenessProbe"]["tcpSocket"]["port"] == "gateway"
    assert {"mountPath": "/models", "name": "models", "readOnly": True} in gateway["volumeMounts"]
    service = next(r for r in resources if r["kind"] == "Service" and r["metadata"]["name"] == "structbert-triton")
    assert {"name": "gateway", "port": 8080, "targetPort": "gateway"} in service["spec"]["ports"]
    monitor = next(r for r in resources if r["kind"] == "ServiceMonitor")
    assert {"port": "gateway-metrics", "path": "/metrics", "interval": "10s"} in monitor["spec"]["endpoints"]


def test_kserve_example_is_well_formed():
    """The InferenceService runs the project's own ServingRuntime (the stock Triton runtime's image has
    neither structbert_serving nor tokenizers); the flags come from the image's entrypoint."""
    (isvc,) = [d for d in yaml.safe_load_all((DEPLOY / "k8s/kserve/inferenceservice.yaml").read_text()) if d]
    (runtime,) = [d for d in yaml.safe_load_all((DEPLOY / "k8s/kserve/servingruntime.yaml").read_text()) if d]
    validate_k8s(isvc)
    validate_k8s(runtime)
    model = isvc["spec"]["predictor"]["model"]
    assert "triton" not in isvc["spec"]["predictor"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    (container,) = runtime["spec"]["containers"]
    assert "command" not in container and "args" not in container
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODEL_REPOSITORY"] == "/mnt/models" and "TRITON_ADMIN_KEY" in env
    assert container["ports"][0]["containerPort"] == int(env["HTTP_PORT"])


def test_adapter_rule_exposes_the_hpa_metric():
    (cm,) = [d for d in yaml.safe_load_all((DEPLOY / "k8s/base/prometheus-adapter-rules.yaml").read_text()) if d]
    rules = yaml.safe_load(cm["data"]["rules.yaml"])["rules"]
    assert rules[0]["name"]["as"] == "triton_queue_compute_ratio"
    assert "nv_inference_compute_infer_duration_us" in rules[0]["metricsQuery"]


def test_yamllint():
    config = "{extends: default, rules: {line-length: {max: 130}, document-start: disable, truthy: disable, comments: {min-spaces-from-content: 1}}}"
    run = subprocess.run([sys.executable, "-m", "yamllint", "-d", config, str(DEPLOY)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    run = subprocess.run([binary, "--failure-threshold", "warning", str(DEPLOY / "Dockerfile")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_compose_structure():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    triton = compose["services"]["triton"]
    assert {"triton", "prometheus", "grafana"} <= set(compose["services"])
    assert triton["shm_size"] and {"8000:8000", "8001:8001", "8002:8002"} <= set(triton["ports"])
    device = triton["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"] and device["count"] == 1
    check = triton["healthcheck"]["test"]
    check = check if isinstance(check, str) else " ".join(check)
    assert "/v2/health/ready" in check
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["triton:8002"]
    gateway = compose["services"]["gateway"]
    assert gateway["image"] == triton["image"] and gateway["entrypoint"] == ["python3", "-m", "structbert_gateway"]
    assert {"--triton-url=triton:8001", "--triton-http-url=triton:8000", "--repository=/models"} <= set(gateway["command"])
    assert gateway["ports"] == ["8080:8080"] and "/health" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["depends_on"]["triton"]["condition"] == "service_healthy"
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in prometheus["scrape_configs"]}
    assert jobs["gateway"] == ["gateway:8080"]


def test_image_carries_the_gateway():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY structbert_gateway ./structbert_gateway" in dockerfile
    assert "8080" in dockerfile.split("EXPOSE", 1)[1].splitlines()[0]
    import tomllib

    extra = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gateway"]
    from structbert_export.container import facts

    assert "install_stub_deps.py" in dockerfile  # installs the facts' gateway_packages
    pinned = {re.split(r"[\[=<>]", d)[0] for d in facts()["gateway_packages"]}
    assert {re.split(r"[\[=<>]", d)[0] for d in extra} - {"tokenizers"} <= pinned  # the extra's deps are in the image


def flags_in(script: str) -> set[str]:
    """The flags of the script's ``exec tritonserver`` command, tokenised as the shell would."""
    import shlex

    command = script[script.index("exec tritonserver"):].replace("\\\n", " ")
    return {token for token in shlex.split(command.split("\n")[0]) if token.startswith("--")}


def normalise(flag: str) -> str:
    """Key placeholders differ per file ($VAR, ${VAR}, $(VAR)): compare with a fixed one."""
    return re.sub(r"admin-key=.*$", "admin-key=KEY", flag.replace('"', "").replace("${RESTRICTED}", RESTRICTED_APIS))


def test_one_flag_set_everywhere():
    """The flags live in the image's entrypoint; compose, Kubernetes and KServe all run it (none sets
    a command or replaces the entrypoint: tests/contract checks the NGC entrypoint chain)."""
    expected = {normalise(f) for f in (*PRODUCTION_FLAGS, *restricted_api_flags("KEY"))}
    entrypoint = {normalise(f) for f in flags_in((DEPLOY / "docker/entrypoint.sh").read_text())}
    assert expected <= entrypoint, expected - entrypoint
    deployment = next(r for r in render(DEPLOY / "k8s/base") if r["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container and not container.get("args")
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert compose["services"]["triton"]["command"] == []  # compose runs the image's entrypoint


@pytest.mark.e2e
def test_dashboard_queries_only_metrics_triton_exports(tiny_server):
    import urllib.request

    dashboard = json.loads((DEPLOY / "grafana/dashboards/structbert-triton.json").read_text())
    exported = {line.split("{")[0].split(" ")[0] for line in
                urllib.request.urlopen(tiny_server.metrics_url).read().decode().splitlines() if line.startswith("nv_")}
    assert "nv_inference_request_summary_us" in exported  # summary_latencies=true is in the flag set
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"\bnv_[a-z_]+", target["expr"]))
    assert queried and queried <= exported | GPU_METRICS, queried - exported - GPU_METRICS
    assert {"nv_inference_request_summary_us", "nv_inference_queue_duration_us", "nv_inference_exec_count",
            "nv_gpu_utilization"} <= queried


def test_image_tags_follow_the_package_version():
    from structbert_client import __version__

    tags = set(re.findall(r"structbert-triton:([\w.\-]+)", "\n".join(
        (DEPLOY / f).read_text() for f in ("docker-compose.yml", "Dockerfile", "k8s/base/deployment.yaml",
                                           "k8s/kserve/servingruntime.yaml"))))
    assert tags == {__version__}, f"deploy/ pins image tags {tags}; the package is {__version__}"
