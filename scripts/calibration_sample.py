"""Draw the INT8 calibration/validation sample shipped in export/structbert_export/calibration_data/
from the workplace's real Chinese text (../shared/data). Deterministic: rerunning it rewrites the
same files.

    python scripts/calibration_sample.py [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "export" / "structbert_export" / "calibration_data"
# reviews the project's tests already send stay out of the sample (tests/data/msra_ner.jsonl is the
# whole MSRA file: the news sample's validation split is what is held out there)
TEST_REVIEWS = (ROOT / "tests" / "data" / "shopping_reviews_sample.jsonl", ROOT / "tests" / "data" / "hotel_reviews_long.jsonl")
MIN_CHARS, MAX_CHARS = 8, 300
PER_CATEGORY = {"calibration": 12, "validation": 6}  # x 10 shopping categories
HOTEL = {"calibration": 24, "validation": 12}
NEWS = {"calibration": 64, "validation": 32}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def usable(text: str, seen: set[str]) -> bool:
    return MIN_CHARS <= len(text) <= MAX_CHARS and text not in seen and "\n" not in text


def draw(rows: list[dict], counts: dict[str, int], seen: set[str], rng: random.Random) -> list[tuple[str, dict]]:
    rows = [r for r in rows if usable(r["text"], seen)]
    rng.shuffle(rows)
    out, i = [], 0
    for split, n in counts.items():
        for row in rows[i:i + n]:
            seen.add(row["text"])
            out.append((split, row))
        i += n
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    rng = random.Random(17)
    seen = {row["text"] for f in TEST_REVIEWS for row in read(f)}
    reviews = []
    shopping = read(args.data_dir / "shopping_reviews.jsonl")
    for category in sorted({r["category"] for r in shopping}):
        picked = draw([r for r in shopping if r["category"] == category], PER_CATEGORY, seen, rng)
        reviews += [{"split": s, "source": "shopping_reviews", "text": r["text"], "category": r["category"],
                     "sentiment": r["sentiment"]} for s, r in picked]
    reviews += [{"split": s, "source": "hotel_reviews", "text": r["text"], "category": "酒店",
                 "sentiment": r["sentiment"]} for s, r in draw(read(args.data_dir / "hotel_reviews.jsonl"), HOTEL,
                                                                seen, rng)]
    news = [{"split": s, "source": "msra_ner", "text": r["text"], "entities": r["entities"]}
            for s, r in draw(read(args.data_dir / "msra_ner.jsonl"), NEWS, seen, rng)]
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("reviews.jsonl", reviews), ("news.jsonl", news)):
        (OUT / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(name, len(rows), {s: sum(r["split"] == s for r in rows) for s in ("calibration", "validation")})


if __name__ == "__main__":
    main()
