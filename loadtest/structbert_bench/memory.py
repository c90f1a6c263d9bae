"""Memory of a server's process tree: PSS per process, per model and in all (Linux /proc).

PSS (proportional set size, ``/proc/<pid>/smaps_rollup``) splits each shared page between the
processes that map it, so the PSS of a tree adds up to what the tree costs the host: the
artifact's memory-mapped weights count once however many stubs read them, where RSS counts them in
every stub. ``python -m structbert_bench.memory PID`` prints the table of a running server.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .measure import process_tree

FIELDS = {"Pss": "pss", "Pss_Anon": "pss_anon", "Pss_File": "pss_file", "Rss": "rss"}


def smaps_rollup(pid: int) -> dict[str, float]:
    """``pss``, ``pss_anon``, ``pss_file``, ``rss`` of one process in MiB ({} if it is gone)."""
    out: dict[str, float] = {}
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[FIELDS[key]] = int(value.split()[0]) / 1024
    return out


def describe(pid: int) -> tuple[str, str]:
    """(role, model) of a server-tree process, from its command line: a Python-backend stub's
    first argument is its model's ``<repo>/<model>/<version>/model.py``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone", ""
    args = [a.decode(errors="replace") for a in argv if a]
    joined = " ".join(args)
    if args and args[0].endswith("triton_python_backend_stub") and len(args) > 1:
        return "stub", Path(args[1]).parent.parent.name
    if args and args[0].endswith("tritonserver"):
        return "tritonserver", ""
    if "structbert_gateway" in joined:
        return "gateway", ""
    if "structbert-triton" in joined or "structbert_triton" in joined:
        return "serve", ""
    return Path(args[0]).name if args else "?", ""


@dataclass
class ProcessMemory:
    pid: int
    role: str
    model: str
    pss_mb: float
    pss_anon_mb: float
    pss_file_mb: float
    rss_mb: float


@dataclass
class TreeMemory:
    """One sample of a process tree."""

    processes: list[ProcessMemory] = field(default_factory=list)

    @property
    def pss_mb(self) -> float:
        return round(sum(p.pss_mb for p in self.processes), 1)

    @property
    def rss_mb(self) -> float:
        return round(sum(p.rss_mb for p in self.processes), 1)

    def by_model(self) -> dict[str, float]:
        """PSS per model (all its instances' stubs), and per other role (tritonserver, gateway, ...)."""
        out: dict[str, float] = {}
        for p in self.processes:
            key = p.model or p.role
            out[key] = round(out.get(key, 0.0) + p.pss_mb, 1)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def as_dict(self) -> dict:
        return {"pss_mb": self.pss_mb, "rss_mb": self.rss_mb, "processes": len(self.processes),
                "by_model": self.by_model(), "per_process": [asdict(p) for p in self.processes]}


def tree_memory(pid: int) -> TreeMemory:
    """PSS of ``pid`` and all its descendants now."""
    tree = TreeMemory()
    for child in process_tree(pid):
        m = smaps_rollup(child)
        if not m:
            continue
        role, model = describe(child)
        tree.processes.append(ProcessMemory(
            pid=child, role=role, model=model, pss_mb=round(m.get("pss", 0.0), 1),
            pss_anon_mb=round(m.get("pss_anon", 0.0), 1), pss_file_mb=round(m.get("pss_file", 0.0), 1),
            rss_mb=round(m.get("rss", 0.0), 1)))
    return tree


def pss_mb(pids: list[int]) -> float:
    """PSS of several process trees together (a server and its gateway), in MiB."""
    return round(sum(tree_memory(pid).pss_mb for pid in pids), 1)


def table(tree: TreeMemory) -> str:
    rows = [f"| {name} | {mb:.0f} |" for name, mb in tree.by_model().items()]
    return "\n".join(["| model / process | PSS MiB |", "|---|---:|", *rows,
                      f"| **server tree ({len(tree.processes)} processes)** | **{tree.pss_mb:.0f}** |"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pid", type=int, help="the server's root process (structbert-triton serve, or tritonserver)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    tree = tree_memory(args.pid)
    print(json.dumps(tree.as_dict(), indent=2) if args.json else table(tree))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
