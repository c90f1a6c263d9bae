"""``scripts/gpu-check.sh --smoke``: the prepared GPU run rehearsed on this CPU machine (tiny models, a
fraction of a second per load level), so that on a GPU host only the GPU is left to chance: every step
runs and succeeds, and every result lands in the one archive."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("env", "export-base", "export-large", "pytest-gpu", "bench-base", "bench-large", "overhead")


def test_gpu_check_smoke_runs_every_step_into_one_archive(tmp_path):
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-check.tar.gz", "summary.md"]  # <= 8 files
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| ") and "---" not in line}
    assert {step: rows.get(step) for step in STEPS} == {step: "0" for step in STEPS}, run.stdout[-3000:]
    with tarfile.open(tmp_path / "gpu-check.tar.gz") as archive:
        names = set(archive.getnames())
        assert not [n for n in names if n.endswith((".onnx", ".pt", ".safetensors", ".bin"))]  # no weights
        for wanted in ("./summary.md", "./pytest-gpu.xml", "./bench-base/results.json", "./bench-large/results.json",
                       "./overhead/overhead.json", "./overhead/overhead.md", "./nvidia_smi_utilisation.csv",
                       "./logs/export-base.log"):
            assert wanted in names, (wanted, sorted(names)[:40])
        overhead = json.load(archive.extractfile("./overhead/overhead.json"))
    level = overhead["workloads"]["similarity"]["levels"][0]
    assert level["concurrency"] == 1 and level["rounds"][0]["served"]["rps"] > 0
    assert level["rounds"][0]["in_process"]["rps"] > 0
