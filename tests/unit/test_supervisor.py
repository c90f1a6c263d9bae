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
