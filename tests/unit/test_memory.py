"""The memory figures of the bench: PSS of a process tree, per model (structbert_bench.memory)."""

from __future__ import annotations

import os
import subprocess
import sys

from structbert_bench.memory import ProcessMemory, TreeMemory, describe, tree_memory
from structbert_bench.memory_bench import report_md


def test_a_tree_counts_every_descendant_once():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = tree_memory(os.getpid())
        pids = [p.pid for p in tree.processes]
        assert os.getpid() in pids and child.pid in pids and len(pids) == len(set(pids))
        assert tree.pss_mb > 0 and tree.pss_mb <= tree.rss_mb
    finally:
        child.kill()
        child.wait()


def test_stubs_are_told_by_their_model(tmp_path):
    assert describe(os.getpid())[0] != "stub"
    tree = TreeMemory([
        ProcessMemory(1, "tritonserver", "", 40.0, 20.0, 20.0, 60.0),
        ProcessMemory(2, "stub", "text_embedding", 30.0, 25.0, 5.0, 90.0),
        ProcessMemory(3, "stub", "text_embedding", 31.0, 25.0, 6.0, 90.0),
        ProcessMemory(4, "gateway", "", 80.0, 70.0, 10.0, 95.0),
    ])
    assert tree.by_model() == {"gateway": 80.0, "text_embedding": 61.0, "tritonserver": 40.0}
    assert tree.pss_mb == 181.0
    result = {"idle": tree.as_dict(), "after_varied": tree.as_dict(), "growth_pct": {"after_varied": 0.0}}
    table = report_md(result)
    assert "| text_embedding | 61 | 61 |" in table and "**181**" in table
