"""Run inside a side environment of the contract tier (no project imports): parse model configs with
that environment's ``tritonclient`` model_config proto, and run ONNX artifacts with its ONNX Runtime.

    python side_check.py < job.json > result.json

job: ``{"configs": [path, ...], "onnx": [{"model": path, "feeds": npz, "out": npz, "optimized"?: path}, ...]}``
result: ``{"versions": {...}, "configs": {path: null | error}, "onnx": {model: null | error}}``
"""

from __future__ import annotations

import contextlib
import json
import sys


def parse_configs(paths: list[str]) -> dict[str, str | None]:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    out = {}
    for path in paths:
        try:
            with open(path) as f:
                text_format.Parse(f.read(), model_config_pb2.ModelConfig())
            out[path] = None
        except Exception as exc:  # reported to the test, which fails with it
            out[path] = f"{type(exc).__name__}: {exc}"
    return out


def run_onnx(jobs: list[dict]) -> dict[str, str | None]:
    import numpy as np
    import onnxruntime as ort

    out = {}
    for job in jobs:
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            if job.get("optimized"):  # the graph this runtime runs, after its own fusions
                options.optimized_model_filepath = job["optimized"]
            session = ort.InferenceSession(job["model"], options, providers=["CPUExecutionProvider"])
            feeds = dict(np.load(job["feeds"]))
            names = [o.name for o in session.get_outputs()]
            np.savez(job["out"], **dict(zip(names, session.run(names, feeds))))
            out[job["model"]] = None
        except Exception as exc:
            out[job["model"]] = f"{type(exc).__name__}: {exc}"
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": "{}.{}".format(*sys.version_info[:2])}
    for name in ("onnxruntime", "tritonclient", "numpy", "tokenizers"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def main() -> None:
    job = json.load(sys.stdin)
    result = {"versions": versions()}
    if job.get("configs"):
        result["configs"] = parse_configs(job["configs"])
    if job.get("onnx"):
        result["onnx"] = run_onnx(job["onnx"])
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
