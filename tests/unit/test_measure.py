"""The bench's own measurements that need no server."""

from __future__ import annotations

from structbert_bench.measure import cpu_times, steal_pct


def test_steal_is_the_share_of_cpu_time_the_hypervisor_gave_to_other_guests(tmp_path):
    """A shared VM (this project's CI: 40 % steal seen in one run) halves throughput in a window
    without any change in the code; the bench reports it next to its numbers."""
    stat = tmp_path / "stat"
    #                 user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 50 0 25 400 5 0 2 18 0 0\n")
    before = cpu_times(stat)
    stat.write_text("cpu  160 0 70 850 10 0 5 105 0 0\n")
    after = cpu_times(stat)
    assert steal_pct(before, after) == 35.0  # 70 of 200 jiffies
    assert steal_pct(after, after) is None  # no time passed
    assert cpu_times(tmp_path / "missing") is None and steal_pct(None, after) is None  # not Linux: unknown
