"""Write perf_analyzer ``--input-data`` files with real Chinese text for every public model.

    python -m structbert_bench.perf_inputs            # -> loadtest/perf_analyzer/<model>.json
"""

from __future__ import annotations

import json
from pathlib import Path

from structbert_client.api import PUBLIC_MODELS

from .workloads import Sampler

OUT = Path(__file__).resolve().parents[1] / "perf_analyzer"


def perf_inputs(model: str, n: int = 200, seed: int = 0) -> dict:
    sampler = Sampler(seed)
    return {"data": [{name: {"content": values, "shape": [len(values)]} for name, values in sampler.inputs(model).items()}
                     for _ in range(n)]}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for model in PUBLIC_MODELS:
        (OUT / f"{model}.json").write_text(json.dumps(perf_inputs(model), ensure_ascii=False, indent=1))
        print(OUT / f"{model}.json")


if __name__ == "__main__":
    main()
