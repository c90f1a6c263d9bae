"""Write perf_analyzer --input-data files with real Chinese text for every public model.

    python loadtest/make_perf_inputs.py            # -> loadtest/perf_analyzer/<model>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from load_data import Sampler  # noqa: E402

MODELS = ["text_embedding", "sentence_similarity", "pair_classification", "zero_shot_classification",
          "information_extraction"]


def perf_inputs(model: str, n: int = 200, seed: int = 0) -> dict:
    sampler = Sampler(seed)
    rows = []
    for _ in range(n):
        rows.append({name: {"content": values, "shape": [1]} for name, values in sampler.inputs(model).items()})
    return {"data": rows}


def main() -> None:
    out = HERE / "perf_analyzer"
    out.mkdir(exist_ok=True)
    for model in MODELS:
        (out / f"{model}.json").write_text(json.dumps(perf_inputs(model), ensure_ascii=False, indent=1))
        print(out / f"{model}.json")


if __name__ == "__main__":
    main()
