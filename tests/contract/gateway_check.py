"""Run by the image's Python (``.venv-stub``: the stub's numpy and tokenizers and the gateway's pinned
packages, nothing else): build the HTTP gateway's app on a repository as the image's gateway
container would, render its OpenAPI document, load its tokenizers and set up its Triton client.

    python gateway_check.py PROJECT_ROOT REPOSITORY > result.json
"""

from __future__ import annotations

import asyncio
import json
import sys
from importlib.metadata import version
from pathlib import Path


async def client(url: str) -> str:
    from structbert_gateway.backend import TritonBackend

    backend = TritonBackend(url, pool_size=1)  # channels only: nothing connects until a call
    await backend.close()
    return type(backend).__name__


def main() -> None:
    root, repository = sys.argv[1], Path(sys.argv[2])
    sys.path[:0] = [root, f"{root}/client"]  # as `pip install --no-deps .` lays the project out in the image
    import uvicorn

    from structbert_gateway.app import create_app
    from structbert_gateway.options import GatewayOptions
    from structbert_gateway.repository import RepositoryInfo

    repo = RepositoryInfo.load(repository)
    served = set(repo.models)
    app = create_app(GatewayOptions(repository=repository), served, repo)
    document = app.openapi()
    uvicorn.Config(app, host="127.0.0.1", port=0)  # the server the image's gateway runs
    tokenizers = sorted(m for m in served if repo.tokenizer(m) is not None)
    result = {"python": "{}.{}".format(*sys.version_info[:2]), "served": sorted(served), "tokenizers": tokenizers,
              "paths": len(document["paths"]), "routes": sorted(document["paths"]),
              "client": asyncio.run(client("127.0.0.1:1")),
              "versions": {name: version(name) for name in ("fastapi", "fastapi-offline", "uvicorn", "orjson", "prometheus-client",
                                                            "tritonclient", "numpy", "tokenizers")}}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
