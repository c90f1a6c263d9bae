"""Keep ``tritonserver`` serving: restart it when it exits or a Python-backend stub dies, with
backoff, and give up (with the reason) on a crash loop.

Which layer restarts what:
- ``structbert-triton serve`` (this module) restarts the tritonserver process: after it exits
  unexpectedly (e.g. a signal 11) and when a Python-backend stub is gone (Triton 2.51 neither restarts
  a stub nor reports it; see ``stub_health``).
- In a container or a Kubernetes pod (the release of ``container_release.json``), the liveness probe
  on ``/v2/health/ready`` (which fails once a stub died from Triton 26.04 on: core#473) and the
  process's exit make the runtime restart the container/pod.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class CrashLoopError(RuntimeError):
    """Too many restarts in too short a time: restarting again would not help."""


@dataclass
class RestartPolicy:
    """Exponential backoff between restarts (reset after a long enough healthy run); more than
    ``max_restarts`` within ``window_s`` is a crash loop (None: never give up)."""

    max_restarts: int | None = 5
    window_s: float = 300.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    healthy_after_s: float = 60.0  # a server that stayed up this long starts the backoff over
    clock: Callable[[], float] = time.monotonic
    _restarts: deque = field(default_factory=deque)
    _delay: float = 0.0

    def next_delay(self, reason: str, up_for_s: float) -> float:
        """Seconds to wait before the next restart; raises :class:`CrashLoopError` on a crash loop."""
        now = self.clock()
        while self._restarts and now - self._restarts[0] > self.window_s:
            self._restarts.popleft()
        if self.max_restarts is not None and len(self._restarts) >= self.max_restarts:
            raise CrashLoopError(f"tritonserver needed {len(self._restarts) + 1} restarts within "
                                 f"{self.window_s:.0f} s; giving up. Last reason: {reason}")
        self._restarts.append(now)
        if up_for_s >= self.healthy_after_s or self._delay == 0.0:
            self._delay = self.backoff_s
        else:
            self._delay = min(self._delay * 2, self.max_backoff_s)
        return self._delay


def gateway_restart_policy() -> RestartPolicy:
    """The gateway's own: restarted however often it dies, at most a few seconds apart. Giving up on
    it would mean stopping tritonserver, which serves gRPC and HTTP clients all the while."""
    return RestartPolicy(max_restarts=None, backoff_s=0.5, max_backoff_s=4.0)


def supervise(server, *, policy: RestartPolicy, stop, check_stubs: bool = True, poll_s: float = 1.0,
              startup_timeout_s: float = 300.0, on_restart: Callable[[str], None] | None = None,
              gateway=None, gateway_policy: RestartPolicy | None = None) -> None:
    """Watch a started :class:`~structbert_serving.embedded_server.EmbeddedServer` until ``stop``
    (a ``threading.Event``) is set; restart it when it exits or loses a stub. ``gateway`` (a started
    :class:`~structbert_gateway.process.GatewayProcess`, optional) is restarted when it exits, under
    its own ``gateway_policy`` (default :func:`gateway_restart_policy`: never given up, so a failing
    gateway never takes tritonserver down); it outlives tritonserver restarts (its gRPC channels
    reconnect). Raises :class:`CrashLoopError` when tritonserver restarts do not help, ``ServerError``
    when one fails."""
    def restart(process, what: str, restart_policy: RestartPolicy, reason: str, since: float) -> bool:
        """Stop ``process``, wait the policy's delay, start it again; False when ``stop`` came first."""
        delay = restart_policy.next_delay(reason, time.monotonic() - since)
        log.error("restarting %s in %.1f s", what, delay)
        process.stop()
        if stop.wait(delay):
            return False
        process.start(timeout_s=startup_timeout_s, stop=stop)  # returns early on stop (SIGTERM while loading)
        if stop.is_set():
            return False
        if on_restart:
            on_restart(reason)
        return True

    started = gateway_started = time.monotonic()
    gateway_policy = gateway_policy or gateway_restart_policy()
    while not stop.wait(poll_s):
        if gateway is not None and (gateway.process is None or gateway.process.poll() is not None):
            code = None if gateway.process is None else gateway.process.returncode
            reason = f"the gateway exited with code {code}"
            log.error("%s:\n%s", reason, gateway.log_tail(10))
            try:  # its own budget: tritonserver keeps serving while the gateway comes back
                if not restart(gateway, "the gateway", gateway_policy, reason, gateway_started):
                    return
            except CrashLoopError:
                raise
            except RuntimeError as exc:  # GatewayError: it did not come up; tried again next round, later
                log.error("the gateway did not start again: %s", exc)
            gateway_started = time.monotonic()
        reason = None
        if server.process.poll() is not None:
            reason = f"tritonserver exited with code {server.process.returncode}"
        elif check_stubs:
            missing = server.missing_stubs()
            if missing:
                reason = f"Python-backend stubs died: {missing}"
        if reason is None:
            continue
        log.error("%s:\n%s", reason, server.failure_summary(tail=10))
        if not restart(server, "tritonserver", policy, reason, started):
            return
        started = time.monotonic()
