from __future__ import annotations

import pytest

from structbert_serving.supervisor import CrashLoopError, RestartPolicy


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_healthy_run():
    clock = Clock()
    policy = RestartPolicy(max_restarts=100, backoff_s=1, max_backoff_s=8, healthy_after_s=60, clock=clock)
    delays = [policy.next_delay("crash", up_for_s=1) for _ in range(6)]
    assert delays == [1, 2, 4, 8, 8, 8]
    assert policy.next_delay("crash", up_for_s=120) == 1  # it had stayed up: start over


def test_a_crash_loop_gives_up_with_the_reason():
    clock = Clock()
    policy = RestartPolicy(max_restarts=3, window_s=300, clock=clock)
    for _ in range(3):
        policy.next_delay("signal 11", up_for_s=1)
        clock.now += 10
    with pytest.raises(CrashLoopError, match="signal 11"):
        policy.next_delay("signal 11", up_for_s=1)


def test_restarts_outside_the_window_do_not_count():
    clock = Clock()
    policy = RestartPolicy(max_restarts=2, window_s=100, clock=clock)
    for _ in range(10):  # one crash every 200 s is not a loop
        policy.next_delay("exit 1", up_for_s=200)
        clock.now += 200


def test_expected_stubs_reads_instance_groups_only(tmp_path):
    from structbert_serving.stub_health import expected_stubs

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.pbtxt").write_text(
        'name: "m"\nbackend: "python"\ninstance_group {\n  count: 2\n  kind: KIND_CPU\n}\n'
        'instance_group {\n  kind: KIND_CPU\n}\n'
        'model_warmup {\n  name: "w"\n  count: 7\n}\nparameters {\n  key: "x"\n  value { string_value: "}{ count: 9" }\n}\n')
    native = tmp_path / "n"
    native.mkdir()
    (native / "config.pbtxt").write_text('name: "n"\nplatform: "onnxruntime_onnx"\ninstance_group { count: 3 }\n')
    assert expected_stubs(tmp_path) == {"m": 3}


class _Proc:
    def __init__(self, code=None):
        self.returncode = code

    def poll(self):
        return self.returncode


class _FakeServer:
    process = _Proc()

    def missing_stubs(self):
        return {}


class _FakeGateway:
    def __init__(self, stop, exits: int):
        self.stop_event, self.exits, self.starts = stop, exits, 0
        self.process = _Proc(1)  # it has exited

    def log_tail(self, lines=10):
        return "boom"

    def stop(self):
        pass

    def start(self, timeout_s, stop=None):
        self.starts += 1
        self.process = _Proc(1 if self.starts < self.exits else None)
        if self.starts >= self.exits:
            self.stop_event.set()
        return self


def test_supervise_restarts_an_exited_gateway():
    import threading

    from structbert_serving.supervisor import supervise

    stop = threading.Event()
    gateway = _FakeGateway(stop, exits=2)
    reasons = []
    fast = RestartPolicy(max_restarts=5, backoff_s=0.0, max_backoff_s=0.0)
    supervise(_FakeServer(), policy=fast, stop=stop, poll_s=0.0, gateway=gateway, gateway_policy=fast,
              on_restart=reasons.append)
    assert gateway.starts == 2 and all(r.startswith("the gateway exited with code 1") for r in reasons)


def test_a_crash_looping_gateway_is_restarted_every_time_and_spends_no_server_budget():
    """The gateway is restarted on its own account, however often it dies: giving up would stop
    tritonserver too, which was serving all along."""
    import threading

    from structbert_serving.supervisor import gateway_restart_policy, supervise

    loop = _FakeGateway(threading.Event(), exits=30)
    server_policy = RestartPolicy(max_restarts=1, backoff_s=0.0, max_backoff_s=0.0)
    policy = gateway_restart_policy()
    policy.backoff_s = policy.max_backoff_s = 0.0
    supervise(_FakeServer(), policy=server_policy, stop=loop.stop_event, poll_s=0.0, gateway=loop,
              gateway_policy=policy)
    assert loop.starts == 30
    assert not server_policy._restarts  # tritonserver was never restarted nor charged
    capped = gateway_restart_policy()
    assert max(capped.next_delay("exit", up_for_s=1) for _ in range(20)) <= 4.0  # back within seconds


def test_a_gateway_that_fails_to_start_is_tried_again():
    import threading

    from structbert_gateway.process import GatewayError
    from structbert_serving.supervisor import supervise

    class Flaky(_FakeGateway):
        def start(self, timeout_s, stop=None):
            self.starts += 1
            if self.starts < 3:
                self.process = _Proc(1)
                raise GatewayError("port 8080 in use")
            self.process = _Proc(None)
            self.stop_event.set()
            return self

    stop = threading.Event()
    gateway = Flaky(stop, exits=0)
    fast = RestartPolicy(max_restarts=None, backoff_s=0.0, max_backoff_s=0.0)
    supervise(_FakeServer(), policy=RestartPolicy(), stop=stop, poll_s=0.0, gateway=gateway, gateway_policy=fast)
    assert gateway.starts == 3


def test_readiness_is_false_when_something_else_answers_on_the_port():
    """A port taken by another program that answers garbage (seen: an echo of the request line) is
    not ready; the probe must not raise out of serve's start."""
    import socket
    import threading

    from structbert_serving.embedded_server import EmbeddedServer

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def echo():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(conn.recv(1024).split(b"\r\n")[0] + b"\r\n\r\n")

    threading.Thread(target=echo, daemon=True).start()
    server = EmbeddedServer("/tmp", http_port=listener.getsockname()[1])
    try:
        assert server.is_ready() is False
    finally:
        listener.close()
