"""The gateway as a child process (``structbert-triton serve`` and the tests start it this way): it
dies with its parent, and ``start`` waits until it answers HTTP (``/health``: 200 once Triton is ready,
503 while it is not; either way the gateway itself is up)."""

from __future__ import annotations

import http.client
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class GatewayError(RuntimeError):
    """The gateway did not come up; the message carries its log's tail."""


@dataclass
class GatewayProcess:
    triton_url: str  # Triton's gRPC host:port
    repository: Path | None = None
    triton_http_url: str | None = None  # given: inference over Triton's HTTP endpoint (unless --triton-protocol grpc)
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    log_file: Path | None = None
    process: subprocess.Popen | None = None

    def __post_init__(self):
        if not self.port:
            from structbert_serving.embedded_server import free_port

            self.port = free_port()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "structbert_gateway", "--triton-url", self.triton_url, "--host", self.host,
               "--port", str(self.port), "--log-level", "warning"]
        if self.repository is not None:
            cmd += ["--repository", str(self.repository)]
        if self.triton_http_url:
            cmd += ["--triton-http-url", self.triton_http_url]
        return cmd + list(self.extra_args)

    def start(self, timeout_s: float = 60.0, stop: threading.Event | None = None) -> GatewayProcess:
        """Start the gateway and wait until it answers; returns early, not up, once ``stop`` is set.
        Not until Triton is ready: a tritonserver that dies meanwhile is the supervisor's to restart."""
        from structbert_serving.embedded_server import die_with_parent

        if self.log_file is None:
            self.log_file = Path(tempfile.mkdtemp(prefix="structbert-gateway-")) / "gateway.log"
        self._log = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                        start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout_s
        stop = stop or threading.Event()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GatewayError(f"the gateway exited with code {self.process.returncode}:\n{self.log_tail()}")
            if self.is_up() or stop.wait(0.2):
                return self
        self.stop()
        raise GatewayError(f"the gateway did not answer after {timeout_s:.0f} s:\n{self.log_tail()}")

    def is_up(self) -> bool:
        """The gateway answers HTTP (its /health says 200 or 503)."""
        return self.health() is not None

    def is_ready(self) -> bool:
        """The gateway and Triton behind it are ready (/health 200)."""
        return self.health() == 200

    def health(self) -> int | None:
        """/health's status code; None when the gateway does not answer."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError):
            return None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_file and Path(self.log_file).is_file():
            return "\n".join(Path(self.log_file).read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
