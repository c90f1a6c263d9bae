"""scripts/serve.sh's default path against a loopback stand-in for the ModelScope hub: the registry's
embedding checkpoint is fetched by the real modelscope client, cached, exported and served; the
zero-shot one is missing from that hub, so it falls back to random weights, and says so, and the
gateway's /v1/models and /info mark it. A second run downloads nothing and reuses both exports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.export.test_hub import MODEL_ID, modelscope_layout
from tests.hub_standin import StandInHub

pytestmark = pytest.mark.e2e
pytest.importorskip("modelscope")
ROOT = Path(__file__).resolve().parents[2]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_serve(env: dict, until: str, timeout_s: float = 420) -> list[str]:
    """scripts/serve.sh until a line containing ``until``; its output lines so far (the rest is not
    read: the pipe's buffer is enough for the server's few lines)."""
    proc = subprocess.Popen(["scripts/serve.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if until in line:
                return lines
            assert time.monotonic() < deadline, "serve.sh is taking too long:\n" + "\n".join(lines[-40:])
        raise AssertionError(f"serve.sh exited {proc.wait()}:\n" + "\n".join(lines[-40:]))
    finally:
        _stop_later.append(proc)  # left running for the caller to talk to; stop_all() ends it


_stop_later: list[subprocess.Popen] = []


def stop_all() -> None:
    while _stop_later:
        proc = _stop_later.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group serve.sh leads: serve, tritonserver, gateway
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.timeout(900)
def test_serve_sh_fetches_caches_exports_serves_and_marks_synthetic(tiny_checkpoint, tmp_path):
    with StandInHub() as hub:
        hub.add(MODEL_ID, modelscope_layout(tiny_checkpoint, tmp_path / "published"))
        http, grpc, metrics, gw = free_ports(4)
        env = {**os.environ, "MODELSCOPE_ENDPOINT": hub.endpoint, "STRUCTBERT_TRITON_CACHE": str(tmp_path / "cache"),
               "REPO": str(tmp_path / "repo"), "TASKS": "embedding,zero-shot", "SYNTHETIC": "tiny",
               "HTTP_PORT": str(http), "GRPC_PORT": str(grpc), "METRICS_PORT": str(metrics),
               "GATEWAY_PORT": str(gw), "STRUCTBERT_HUB_PROBE_S": "2"}
        try:
            lines = run_serve(env, "gateway ready")
            said = [line for line in lines if line.startswith(("embedding: ", "zero-shot: "))]
            assert len(said) == 2, lines
            assert said[0].startswith(f"embedding: real: {MODEL_ID}@master -- the registry's checkpoint, downloaded")
            assert said[1].startswith("zero-shot: SYNTHETIC (random weights: its answers mean nothing): synthetic-tiny")
            assert "does not have damo/nlp_structbert_zero-shot-classification_chinese-base@master" in said[1]
            downloads = len(hub.downloads())
            assert downloads == 5

            with httpx.Client(base_url=f"http://127.0.0.1:{gw}", timeout=30) as client:
                cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
                assert cards["text_embedding"]["synthetic"] is False
                assert cards["text_embedding"]["checkpoint"] == f"{MODEL_ID}@master"
                assert cards["zero_shot_classification"]["synthetic"] is True
                info = client.get("/info").json()
                assert info["model_id"] == f"{MODEL_ID}@master" and info["synthetic"] is False
                assert info["synthetic_models"] == ["zero_shot_classification"]
                assert len(client.post("/v1/embeddings", json={"input": "今天天气很好"}).json()["data"][0]["embedding"]) == 64
            stop_all()
            manifest = json.loads((tmp_path / "repo" / "structbert_manifest.json").read_text())
            assert manifest["embedding"]["synthetic"] is False and manifest["zero-shot"]["synthetic"] is True

            again = run_serve(env, "tritonserver ready")
            said = [line for line in again if line.startswith(("embedding: ", "zero-shot: "))]
            assert "cached in" in said[0] and said[0].endswith("(export reused: checkpoint and exporter unchanged)")
            assert said[1].endswith("(export reused: checkpoint and exporter unchanged)")
            assert len(hub.downloads()) == downloads  # the second run downloads nothing
        finally:
            stop_all()
