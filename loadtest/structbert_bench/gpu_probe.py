"""What the GPU does during a benchmark: SM utilisation over time and GPU memory per process, read
from ``nvidia-smi`` (absent on CPU machines: every probe then reports nothing)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path


def nvidia_smi(*args: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        run = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout if run.returncode == 0 else None


def parse_utilization(text: str) -> list[float]:
    """``nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits``: one value per GPU."""
    return [float(line.strip()) for line in text.splitlines() if line.strip() and line.strip()[0].isdigit()]


def parse_process_memory(text: str) -> dict[int, float]:
    """``nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`` -> pid: MiB."""
    out: dict[int, float] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit():
            try:
                out[int(parts[0])] = out.get(int(parts[0]), 0.0) + float(parts[1])
            except ValueError:
                continue  # "[N/A]" under some drivers
    return out


def process_label(pid: int) -> str:
    """tritonserver, or the model a Python-backend stub serves (its cmdline names model.py's path)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    model_py = next((a.decode(errors="replace") for a in args if a.endswith(b"/model.py")), "")
    if model_py:
        return "stub:" + Path(model_py).parent.parent.name
    return Path(args[0].decode(errors="replace")).name or str(pid)


def gpu_memory_by_process(pids: set[int] | None = None) -> dict[str, float]:
    """GPU memory (MiB) of each process using the GPU, labelled (only ``pids`` when given)."""
    text = nvidia_smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
    if text is None:
        return {}
    out: dict[str, float] = {}
    for pid, mib in parse_process_memory(text).items():
        if pids is None or pid in pids:
            label = process_label(pid)
            out[label] = out.get(label, 0.0) + mib
    return out


class UtilizationSampler:
    """Mean and peak GPU utilisation (percent of time a kernel ran; ``nvidia-smi dmon``'s ``sm``)
    while the ``with`` block runs, sampled every ``interval_s``. ``mean`` is None without a GPU."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            text = nvidia_smi("--query-gpu=utilization.gpu", "--format=csv,noheader,nounits")
            if text is None:
                return
            values = parse_utilization(text)
            if values:
                self.samples.append(values[0])

    def __enter__(self) -> UtilizationSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None

    @property
    def peak(self) -> float | None:
        return max(self.samples) if self.samples else None
