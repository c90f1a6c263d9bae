"""Realistic request payloads for load tests: real Chinese texts with their natural lengths."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
CATEGORIES = ["书籍", "平板", "手机", "水果", "洗发水", "热水器", "蒙牛", "衣服", "计算机", "酒店"]
NER_SCHEMA = json.dumps({"人物": None, "地理位置": None, "组织机构": None}, ensure_ascii=False)


def data_dir() -> Path:
    env = os.environ.get("STRUCTBERT_DATA_DIR")
    for candidate in ([Path(env)] if env else []) + [HERE.parent.parent / "shared" / "data", HERE.parent / "tests" / "data"]:
        if (candidate / "msra_ner.jsonl").is_file():
            return candidate
    raise FileNotFoundError("set STRUCTBERT_DATA_DIR to a folder with the shared .jsonl files")


def _texts(name: str) -> list[str]:
    folder = data_dir()
    path = folder / name
    if not path.is_file():  # tests/data holds a sample under another name
        path = next(folder.glob(name.split(".")[0].split("_")[0] + "*.jsonl"))
    return [t for t in (json.loads(x)["text"] for x in path.read_text().splitlines() if x.strip()) if t.strip()]


class Sampler:
    """Draws request inputs (model -> {input name: [strings]}) for every public model."""

    def __init__(self, seed: int | None = None):
        self.rng = random.Random(seed)
        self.reviews = _texts("shopping_reviews.jsonl")
        self.news = _texts("msra_ner.jsonl")

    def inputs(self, model: str) -> dict[str, list]:
        r = self.rng
        if model == "text_embedding":
            return {"TEXT": [r.choice(self.reviews)]}
        if model in ("sentence_similarity", "pair_classification"):
            return {"TEXT_A": [r.choice(self.reviews)], "TEXT_B": [r.choice(self.reviews)]}
        if model == "zero_shot_classification":
            return {"TEXT": [r.choice(self.reviews)], "LABELS": [json.dumps(CATEGORIES, ensure_ascii=False)]}
        if model == "information_extraction":
            return {"TEXT": [r.choice(self.news)], "SCHEMA": [NER_SCHEMA]}
        raise ValueError(f"unknown model {model}")
