from __future__ import annotations

from structbert_bench.gpu_probe import (
    UtilizationSampler,
    gpu_memory_by_process,
    parse_process_memory,
    parse_utilization,
)


def test_parse_nvidia_smi_outputs():
    assert parse_utilization("87\n12\n") == [87.0, 12.0]
    assert parse_utilization("[N/A]\n") == []
    text = "1234, 812\n1234, 100\n5678, [N/A]\n4321, 586\n"
    assert parse_process_memory(text) == {1234: 912.0, 4321: 586.0}


def test_probes_report_nothing_without_a_gpu(monkeypatch):
    monkeypatch.setattr("structbert_bench.gpu_probe.shutil.which", lambda _: None)
    assert gpu_memory_by_process() == {}
    with UtilizationSampler(interval_s=0.01) as sampler:
        pass
    assert sampler.mean is None and sampler.peak is None
