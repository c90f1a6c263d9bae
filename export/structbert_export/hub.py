"""Checkpoints from the ModelScope hub, through the ``modelscope`` client, into a cache a second
run reuses without a single request.

* The hub is **probed** first, bounded (``STRUCTBERT_HUB_PROBE_S``, 5 s): one request for the file
  list (names, sizes, sha256). A hub that answers an error, or not in time, is reported in one
  sentence, and the caller falls back; nothing is written.
* The download runs ``modelscope``'s ``snapshot_download`` (its progress bars, its retries) in a
  child process into a **staging folder** beside the cache entry, watched: no new byte for
  ``STRUCTBERT_HUB_STALL_S`` (60 s) and it is stopped. Every file is then checked against the
  listing's size and **sha256**; only then does the staging folder become the entry (one rename),
  with ``.structbert-hub.json`` recording what was checked. A failed, stalled or truncated download
  leaves no entry and no staging folder behind.
* ``MODELSCOPE_ENDPOINT`` (modelscope's own setting) names the hub; the tests point it at a
  loopback stand-in (``tests/hub_standin.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://www.modelscope.cn"
MARKER = ".structbert-hub.json"


class HubError(ValueError):
    """The hub could not give this checkpoint; the message says why in one sentence. (A ValueError,
    not a CheckpointError: this module is the download child's ``__main__`` and imports no torch.)"""

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable  # the hub itself (not this model) did not answer


def endpoint() -> str:
    return (os.environ.get("MODELSCOPE_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def probe_timeout_s() -> float:
    return float(os.environ.get("STRUCTBERT_HUB_PROBE_S", "5"))


def stall_timeout_s() -> float:
    return float(os.environ.get("STRUCTBERT_HUB_STALL_S", "60"))


def split_ref(ref: str) -> tuple[str, str | None]:
    """``owner/name[@revision]`` -> (id, revision or None)."""
    model_id, _, revision = ref.partition("@")
    return model_id, revision or None


def looks_like_id(ref: str) -> bool:
    model_id, _ = split_ref(ref)
    parts = model_id.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "/", "~"))


def entry_dir(cache: Path, model_id: str, revision: str) -> Path:
    return Path(cache) / model_id.replace("/", "--") / revision


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str


def cached(cache: Path, model_id: str, revision: str) -> Path | None:
    """The complete cache entry, if one is there (sizes checked, no request made)."""
    entry = entry_dir(cache, model_id, revision)
    marker = entry / MARKER
    if not marker.is_file():
        return None
    try:
        files = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError):
        return None
    for f in files:
        p = entry / f["path"]
        if not p.is_file() or p.stat().st_size != f["size"]:
            log.warning("%s: %s changed since it was downloaded; downloading again", entry, f["path"])
            return None
    return entry


def _get_bounded(url: str, timeout_s: float) -> bytes:
    """GET ``url`` within ``timeout_s`` all told. The socket timeout does not cover the name lookup
    (getaddrinfo can block for tens of seconds on a machine whose DNS server is unreachable), so the
    request runs in a daemon thread that is abandoned when late."""
    result: dict = {}

    def fetch() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                result["body"] = resp.read()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    worker = threading.Thread(target=fetch, daemon=True, name="hub-probe")
    worker.start()
    worker.join(timeout_s + 0.5)
    if worker.is_alive():
        raise TimeoutError(f"timed out after {timeout_s:g} s")
    if "error" in result:
        raise result["error"]
    return result["body"]


def list_files(model_id: str, revision: str, *, timeout_s: float | None = None) -> list[HubFile]:
    """The hub's file list of ``model_id@revision`` (one request, bounded): the probe."""
    timeout_s = probe_timeout_s() if timeout_s is None else timeout_s
    query = urllib.parse.urlencode({"Revision": revision, "Recursive": "True"})
    url = f"{endpoint()}/api/v1/models/{model_id}/repo/files?{query}"
    try:
        body = json.loads(_get_bounded(url, timeout_s))
    except urllib.error.HTTPError as exc:
        kind = "does not have" if exc.code == 404 else f"answered HTTP {exc.code} for"
        raise HubError(f"the hub {endpoint()} {kind} {model_id}@{revision}", unreachable=exc.code >= 500) from exc
    except (TimeoutError, OSError) as exc:  # URLError, refused, DNS, a socket timeout
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            why = f"no answer within {timeout_s:g} s"
        else:
            why = f"unreachable ({reason})"
        raise HubError(f"the hub {endpoint()} is {why}" if why.startswith("unreachable")
                       else f"the hub {endpoint()} gave {why}", unreachable=True) from exc
    except ValueError as exc:
        raise HubError(f"the hub {endpoint()} answered something that is not its JSON for {model_id}") from exc
    data = body.get("Data", body) if isinstance(body, dict) else {}
    entries = data.get("Files", []) if isinstance(data, dict) else data
    files = [HubFile(e["Path"], int(e.get("Size", -1)), str(e.get("Sha256") or ""))
             for e in entries if e.get("Type", "blob") == "blob"]
    if not files:
        raise HubError(f"the hub {endpoint()} lists no files for {model_id}@{revision}")
    return files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _bytes_in(folder: Path) -> int:
    total = 0
    for p in folder.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:  # renamed under us (.incomplete -> final)
            pass
    return total


def _run_client(model_id: str, revision: str, staging: Path, cache: Path, stall_s: float,
                startup_s: float = 120.0) -> None:
    """``modelscope``'s snapshot_download in a child process, stopped when no byte arrives for
    ``stall_s`` once the client is imported (``startup_s`` for the import itself)."""
    error_file = staging.parent / f"{staging.name}.error"
    started = staging.parent / f"{staging.name}.started"
    env = {**os.environ, "MODELSCOPE_CACHE": str(Path(cache) / ".modelscope")}
    child = subprocess.Popen([sys.executable, "-m", "structbert_export.hub", model_id, revision, str(staging),
                              endpoint(), str(error_file), str(started)], env=env)
    last, last_change, t0 = -1, time.monotonic(), time.monotonic()
    try:
        while child.poll() is None:
            time.sleep(0.25)
            if not started.exists():
                if time.monotonic() - t0 > startup_s:
                    raise HubError(f"the modelscope client did not start within {startup_s:g} s")
                last_change = time.monotonic()
                continue
            now = _bytes_in(staging)
            if now != last:
                last, last_change = now, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                raise HubError(f"the download of {model_id}@{revision} stalled: no data for {stall_s:g} s")
        if child.returncode != 0:
            detail = error_file.read_text().strip() if error_file.is_file() else f"exit code {child.returncode}"
            detail = "; ".join(line.strip() for line in detail.splitlines() if line.strip())
            raise HubError(f"the download of {model_id}@{revision} failed: {detail[:400]}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        error_file.unlink(missing_ok=True)
        started.unlink(missing_ok=True)


def download(model_id: str, revision: str, cache: Path, *, stall_s: float | None = None) -> Path:
    """The checkpoint ``model_id@revision`` in ``cache``: reused when complete, else probed,
    downloaded, checked against the hub's sha256 and moved into place. Raises HubError."""
    found = cached(cache, model_id, revision)
    if found is not None:
        log.info("%s@%s: cached at %s (no download)", model_id, revision, found)
        return found
    files = list_files(model_id, revision)
    entry = entry_dir(cache, model_id, revision)
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{revision}.partial-", dir=entry.parent))
    try:
        mb = sum(max(f.size, 0) for f in files) / 1e6
        log.info("%s@%s: downloading %d files, %.0f MB, from %s", model_id, revision, len(files), mb, endpoint())
        _run_client(model_id, revision, staging, cache, stall_timeout_s() if stall_s is None else stall_s)
        for f in files:
            p = staging / f.path
            if not p.is_file():
                raise HubError(f"the download of {model_id}@{revision} lacks {f.path}")
            if f.size >= 0 and p.stat().st_size != f.size:
                raise HubError(f"{model_id}@{revision}: {f.path} has {p.stat().st_size} bytes, the hub lists {f.size}")
            if f.sha256 and _sha256(p) != f.sha256:
                raise HubError(f"{model_id}@{revision}: {f.path} fails its sha256 check (the hub lists {f.sha256})")
        (staging / MARKER).write_text(json.dumps({
            "model_id": model_id, "revision": revision, "endpoint": endpoint(),
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files]}, indent=2))
        if entry.exists() and cached(cache, model_id, revision) is None:  # damaged since: replaced whole
            stale = entry.with_name(f".{revision}.stale-{os.getpid()}")
            entry.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            staging.rename(entry)
        except OSError:
            if cached(cache, model_id, revision) is None:  # not a concurrent run that finished first
                raise
        return entry
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _child(argv: list[str]) -> int:
    model_id, revision, staging, hub, error_file, started = argv
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError:
        Path(error_file).write_text("the modelscope client is not installed: pip install 'structbert-triton[modelscope]'")
        return 3
    Path(started).touch()
    try:
        snapshot_download(model_id, revision=revision, local_dir=staging, endpoint=hub)
    except Exception as exc:  # the parent reports it in one line
        Path(error_file).write_text(f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
