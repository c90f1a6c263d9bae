"""Render the kustomize subset deploy/k8s uses (resources, namespace, labels, strategic-merge patches
matched by kind and name) without the kustomize binary, for offline validation."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml


def _merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in base + patch):
        by_name = {x["name"]: x for x in base}
        merged = [_merge(by_name[x["name"]], x) if x["name"] in by_name else x for x in patch]
        return merged + [x for x in base if x["name"] not in {p["name"] for p in patch}]
    return copy.deepcopy(patch)


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def render(directory: Path) -> list[dict]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources: list[dict] = []
    for entry in spec.get("resources", []):
        target = directory / entry
        resources += render(target) if target.is_dir() else _docs(target)
    for patch_entry in spec.get("patches", []):
        for patch in _docs(directory / patch_entry["path"]):
            matches = [i for i, r in enumerate(resources)
                       if r["kind"] == patch["kind"] and r["metadata"]["name"] == patch["metadata"]["name"]]
            assert matches, f"patch {patch_entry['path']} matches no resource"
            for i in matches:
                resources[i] = _merge(resources[i], patch)
    for label_set in spec.get("labels", []):
        for r in resources:
            r.setdefault("metadata", {}).setdefault("labels", {}).update(label_set["pairs"])
    if "namespace" in spec:
        for r in resources:
            r["metadata"]["namespace"] = spec["namespace"]
    return resources
