"""Launch the real ``tritonserver`` binary shipped in the ``nvidia-pytriton`` wheel on a repository.

Not PyTriton's Python API: the binary itself, with the Python backend and the stub for the running
Python (copied into a writable backend directory), with ``PATH`` and ``LD_LIBRARY_PATH`` set so the
stub runs this Python and finds pytriton's libraries.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# The production flag set. deploy/ (Dockerfile entrypoint, docker compose, Kubernetes) uses exactly
# these plus restricted_api_flags(); tests/deploy checks that the sets agree.
PRODUCTION_FLAGS = (
    "--model-control-mode=none",
    "--strict-readiness=true",
    "--exit-on-error=true",
    "--disable-auto-complete-config",
    "--metrics-config=summary_latencies=true",  # p50/p99 quantiles for dashboards
)
# API groups that need the admin key header (inference, health and metadata stay open)
RESTRICTED_APIS = "model-repository,model-config,shared-memory,statistics,trace,logging"
ADMIN_KEY_HEADER = "admin-key"


def restricted_api_flags(key: str, header: str = ADMIN_KEY_HEADER) -> list[str]:
    """Flags that put the admin API groups behind ``<header>: <key>`` on HTTP and gRPC."""
    return [f"--http-restricted-api={RESTRICTED_APIS}:{header}={key}",
            f"--grpc-restricted-protocol={RESTRICTED_APIS}:{header}={key}"]


class ServerError(RuntimeError):
    """The server did not start or a model failed to load; the message carries the server's reasons."""


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``, as PyTriton
    does), so a killed ``serve`` or test never leaves a tritonserver holding ports and memory; the
    server's ``--exit-timeout-secs`` bounds its shutdown and its stubs exit with it."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def taken_ports(host: str, ports: dict[str, int]) -> dict[str, int]:
    """The ones of ``ports`` (option -> port) that something on this host already listens on: bound
    as the servers bind them (SO_REUSEADDR, so a port in TIME_WAIT is free)."""
    taken = {}
    for option, port in ports.items():
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host or "0.0.0.0", port))
            except OSError:
                taken[option] = port
    return taken


def pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise ServerError("the embedded server needs nvidia-pytriton: pip install 'structbert-triton[embedded]'") from exc
    return Path(pytriton.__file__).resolve().parent


def _libs_dir(root: Path) -> Path:
    return root.parent / "nvidia_pytriton.libs"


def prepare_backends(target: Path) -> Path:
    """A writable backend directory: pytriton's backends + the stub for this Python version."""
    root = pytriton_root() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton ships no Python-backend stub for Python {version}")
    shutil.copytree(root / "backends", target, dirs_exist_ok=True)
    shutil.copy2(stub, target / "python" / "triton_python_backend_stub")
    return target


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)  # the stub takes its Python from the first python3 on PATH
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(_libs_dir(pytriton_root()))]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class EmbeddedServer:
    """``with EmbeddedServer(repo) as server:`` starts tritonserver and waits until it is ready."""

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 0  # 0 = pick a free port
    grpc_port: int = 0
    metrics_port: int = 0
    extra_args: list[str] = field(default_factory=list)
    log_file: Path | None = None
    exit_timeout_s: int = 5
    process: subprocess.Popen | None = None
    _workdir: Path | None = None

    def __post_init__(self):
        self.repository = Path(self.repository).resolve()
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        self.metrics_port = self.metrics_port or free_port()

    @property
    def http_url(self) -> str:
        return f"{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    def command(self, backend_dir: Path) -> list[str]:
        binary = pytriton_root() / "tritonserver" / "bin" / "tritonserver"
        return [
            str(binary), f"--model-repository={self.repository}", f"--backend-directory={backend_dir}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}", "--allow-metrics=true",
            f"--exit-timeout-secs={self.exit_timeout_s}", *PRODUCTION_FLAGS, *self.extra_args,
        ]

    def start(self, timeout_s: float = 180, stop: threading.Event | None = None) -> EmbeddedServer:
        """Start tritonserver and wait until it is ready; returns early, not ready, once ``stop`` is
        set (a supervisor asked to shut down while a restarted server loads its models)."""
        if not self.repository.is_dir():
            raise ServerError(f"model repository {self.repository} does not exist; run `structbert-triton export` first")
        self._workdir = Path(tempfile.mkdtemp(prefix="structbert-triton-"))
        backends = prepare_backends(self._workdir / "backends")
        if self.log_file is None:
            self.log_file = self._workdir / "tritonserver.log"
        self._log_handle = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop(); a restart appends
        cmd = self.command(backends)
        log.info("starting %s", " ".join(cmd))
        self.process = subprocess.Popen(cmd, stdout=self._log_handle, stderr=subprocess.STDOUT, env=server_env(),
                                        start_new_session=True, preexec_fn=die_with_parent)
        try:
            self.wait_ready(timeout_s, stop)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError):
            return False

    def wait_ready(self, timeout_s: float, stop: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        stop = stop or threading.Event()
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}:\n{self.failure_summary()}")
            if self.is_ready() or stop.wait(0.25):
                return
        raise ServerError(f"tritonserver not ready after {timeout_s:.0f} s:\n{self.failure_summary()}")

    def log_text(self) -> str:
        if self.log_file and Path(self.log_file).is_file():
            return Path(self.log_file).read_text(errors="replace")
        return ""

    def failure_summary(self, tail: int = 25) -> str:
        """The lines that say why: model load failures first, then the log's tail."""
        lines = self.log_text().splitlines()
        reasons = [ln for ln in lines if "failed to load" in ln or (ln[:1] == "E" and "]" in ln)]
        return "\n".join(dict.fromkeys(reasons[-15:] + lines[-tail:]))

    def missing_stubs(self) -> dict[str, int]:
        """Models whose Python-backend stubs died (Triton 2.51 neither restarts them nor reports it)."""
        from .stub_health import missing_stubs

        if self.process is None or self.process.poll() is not None:
            return {}
        return missing_stubs(self.repository, parent_pid=self.process.pid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=self.exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if getattr(self, "_log_handle", None):
            self._log_handle.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir / "backends", ignore_errors=True)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
