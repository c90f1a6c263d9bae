"""Run by the Python-backend stub's Python (``.venv-stub``: the container's Python, numpy and
tokenizers, nothing else): import every public model's ``model.py`` of a repository as the stub
would, ``initialize`` it, and answer one request through a fake encoder.

    python stub_check.py PROJECT_ROOT < job.json > result.json

job: ``{"models": {name: {"dir": model dir, "config": config as JSON}}, "hidden": int}``
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import traceback
from importlib.metadata import version


def main() -> None:
    root = sys.argv[1]
    # as `pip install --no-deps .` lays the project out in the container image
    sys.path[:0] = [root, f"{root}/client"]
    import numpy as np

    from tests import fake_pb_utils as fake

    fake.install()
    job = json.load(sys.stdin)
    hidden = job["hidden"]
    fake.MODELS["embedding_encoder"] = lambda f: {"EMBEDDING": np.ones((len(f["INPUT_IDS"]), hidden), np.float32)}
    result = {"python": "{}.{}".format(*sys.version_info[:2]), "numpy": version("numpy"),
              "tokenizers": version("tokenizers"), "models": {}}
    for name, model in job["models"].items():
        try:
            spec = importlib.util.spec_from_file_location(f"model_{name}", f"{model['dir']}/1/model.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            instance = module.TritonPythonModel()
            instance.initialize(fake.model_args(model["dir"], model["config"]))
            answer = None
            if name == "text_embedding":
                responses = asyncio.run(instance.execute([fake.request(TEXT=fake.texts("今天天气很好"))]))
                error = responses[0].error()
                answer = error.message() if error else fake.get_output_tensor_by_name(
                    responses[0], "EMBEDDING").as_numpy().shape[1]
            result["models"][name] = {"ok": True, "answer": answer}
        except Exception:  # reported to the test, which fails with it
            result["models"][name] = {"ok": False, "error": traceback.format_exc(limit=4)}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
