from __future__ import annotations

import subprocess
import sys

import pytest
from tritonclient.utils import InferenceServerException

from structbert_client import (
    InvalidInputError,
    RequestTimeoutError,
    ServerError,
    ServerOverloadedError,
    ServerUnavailableError,
    StructBertClient,
)
from structbert_client.errors import translate


def test_client_imports_without_torch_transformers_or_onnx():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'onnx', 'onnxruntime', 'tokenizers'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import structbert_client\n"
        "structbert_client.StructBertClient('localhost:1', protocol='grpc')\n"
        "structbert_client.StructBertClient('localhost:1', protocol='http')\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr


@pytest.mark.parametrize("status,message,cls", [
    ("StatusCode.INVALID_ARGUMENT", "TEXT[0] is empty", InvalidInputError),
    ("400", "bad", InvalidInputError),
    ("StatusCode.UNAVAILABLE", "failed to connect", ServerUnavailableError),
    ("503", "not ready", ServerUnavailableError),
    ("StatusCode.UNAVAILABLE", "Exceeds maximum queue size", ServerOverloadedError),
    ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", RequestTimeoutError),
    ("StatusCode.INTERNAL", "boom", ServerError),
    ("StatusCode.INTERNAL", "Stub process 'embedding_encoder_0_0' is not healthy.", ServerUnavailableError),
    ("StatusCode.NOT_FOUND", "Request for unknown model: 'x' has no available versions", ServerUnavailableError),
])
def test_translate(status, message, cls):
    error = translate(InferenceServerException(message, status=status))
    assert type(error) is cls and message in str(error)


def test_unreachable_server_is_unavailable_after_retries():
    client = StructBertClient("127.0.0.1:1", protocol="grpc", retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(ServerUnavailableError):
        client.embed("你好")
    assert not client.is_ready()


def test_local_input_checks():
    client = StructBertClient("127.0.0.1:1", protocol="http")
    with pytest.raises(InvalidInputError, match="empty list"):
        client.embed([])
    with pytest.raises(InvalidInputError, match=r"texts\[1\] is int"):
        client.embed(["a", 1])
    with pytest.raises(ValueError, match="protocol"):
        StructBertClient("x", protocol="smtp")


@pytest.mark.parametrize("status", ["StatusCode.INVALID_ARGUMENT", "400"])
def test_user_text_in_an_invalid_argument_message_never_changes_its_type(status):
    """Server messages echo user input: a hypothesis template containing "timeout expired" (or
    "is not healthy") stays an invalid-argument error, never a retried overload."""
    for echoed in ("request timeout expired {}", "exceeds maximum queue size", "is not healthy",
                   "has no available versions", "timed out", "connection refused"):
        message = f"HYPOTHESIS_TEMPLATE {echoed!r} has no '{{}}' placeholder for the label"
        error = translate(InferenceServerException(message, status=status))
        assert type(error) is InvalidInputError, (echoed, type(error))


@pytest.mark.parametrize("status,message,cls", [
    ("503", "Exceeds maximum queue size", ServerOverloadedError),
    ("StatusCode.UNAVAILABLE", "Request timeout expired", ServerOverloadedError),
    ("StatusCode.UNAVAILABLE", "embedding_encoder: Exceeds maximum queue size", ServerOverloadedError),
    ("503", "[request id: <id_unknown>] Exceeds maximum queue size", ServerOverloadedError),  # Triton over HTTP
    ("StatusCode.INTERNAL", "internal error: ValueError: Stub process 'x' is not healthy.", ServerError),
    (None, "Request timeout expired", ServerOverloadedError),  # no code: hints decide
    (None, "failed to connect to all addresses", ServerUnavailableError),
])
def test_translate_code_first(status, message, cls):
    assert type(translate(InferenceServerException(message, status=status))) is cls


def test_retry_backoff_is_capped(monkeypatch):
    """Exponential backoff stops growing at ``max_backoff_s``: with retries=40 an uncapped client slept
    0.25 * 2**10 s once a restart outlasted the first ten tries, and a restarted server went unseen
    for minutes (CI: the restart test timed out inside that sleep)."""
    import structbert_client.client as module

    client = StructBertClient("127.0.0.1:1", protocol="grpc", retries=20, backoff_s=0.25, max_backoff_s=2.0)
    delays: list[float] = []
    monkeypatch.setattr(module.time, "sleep", delays.append)

    def unavailable(*args, **kwargs):
        raise InferenceServerException("failed to connect", status="StatusCode.UNAVAILABLE")

    monkeypatch.setattr(client._client, "infer", unavailable)
    with pytest.raises(ServerUnavailableError):
        client.embed("你好")
    assert len(delays) == 20
    assert max(delays) <= 2.0 * 1.5  # the cap, with its jitter
    assert sum(delays[-5:]) >= 5 * 2.0 * 0.5  # and it keeps retrying at the cap, not at zero
    with pytest.raises(ValueError, match="max_backoff_s"):
        StructBertClient("x", max_backoff_s=-1)

