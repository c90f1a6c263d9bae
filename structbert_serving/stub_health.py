"""Is every Python-backend stub of a Triton server alive?

Triton 24.06-24.10 (server 2.51, the embedded server ``serve`` runs) no longer restarts a crashed
Python-backend stub, and its health endpoints keep answering 200 while every request to that model
fails with "Stub process ... is not healthy" (triton-inference-server/server#7347, #7862, #8604).
This check counts live stub processes against the instance counts in the repository's configs;
``serve`` restarts the server when it fails.

A workaround for the embedded server only: upstream fixed it in python_backend#423 / core#461
(26.01, first on its r26.01 branches: a dead stub makes its model instance not ready) and core#473
(26.04: ``/v2/health/ready`` fails then, with ``--strict-readiness=true``), so the container
release's probes in deploy/ ask ``/v2/health/ready`` instead. Drop this module when the embedded server reaches 26.04.

    python -m structbert_serving.stub_health --repository /models    # exit 1 when a stub is gone
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

STUB = "triton_python_backend_stub"


def blocks(text: str, field: str) -> list[str]:
    """The bodies of the top-level ``field { ... }`` messages of a config.pbtxt (braces matched, so a
    ``count`` inside another message, e.g. a future ``model_warmup``, is never read as an instance
    count). Strings holding braces are skipped."""
    out, depth, start, i = [], 0, None, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':  # skip a quoted string (with escapes)
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch == "{":
            if depth == 0 and re.search(rf"(^|\s){field}\s*:?\s*$", text[:i]):
                start = i + 1
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0 and start is not None:
                out.append(text[start:i])
                start = None
        i += 1
    return out


def expected_stubs(repository: str | Path) -> dict[str, int]:
    """model -> number of Python-backend instances (stubs) its config asks for (1 per instance group
    without a count, as Triton does)."""
    out = {}
    for config in sorted(Path(repository).glob("*/config.pbtxt")):
        text = config.read_text()
        if not re.search(r'^backend:\s*"python"', text, re.MULTILINE):
            continue
        counts = [int(m.group(1)) if (m := re.search(r"\bcount:\s*(\d+)", body)) else 1
                  for body in blocks(text, "instance_group")]
        out[config.parent.name] = sum(counts) or 1
    return out


def live_stubs(parent_pid: int | None = None) -> dict[str, int]:
    """model -> number of running (not zombie) stub processes, read from /proc."""
    out: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if not cmdline or STUB not in cmdline[0].decode(errors="replace"):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, ppid = fields[0], int(fields[1])
        if state == "Z" or (parent_pid is not None and ppid != parent_pid):
            continue
        model_py = next((a.decode(errors="replace") for a in cmdline if a.endswith(b"/model.py")), "")
        model = Path(model_py).parent.parent.name
        out[model] = out.get(model, 0) + 1
    return out


def missing_stubs(repository: str | Path, parent_pid: int | None = None) -> dict[str, int]:
    """model -> how many of its stubs are gone (empty when all are alive)."""
    live = live_stubs(parent_pid)
    return {m: n - live.get(m, 0) for m, n in expected_stubs(repository).items() if live.get(m, 0) < n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repository", default="/models")
    args = parser.parse_args()
    missing = missing_stubs(args.repository)
    if missing:
        print(f"unhealthy: Python-backend stubs missing: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
