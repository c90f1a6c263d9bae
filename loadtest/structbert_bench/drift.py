"""Drift of one exported repository against another (e.g. INT8 vs FP32), end to end through the
embedded server, on real texts:

    python -m structbert_bench.drift --reference build/bench/repo-base-fp32 \
        --candidate build/bench/repo-base-int8 --out build/bench/drift.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .workloads import CATEGORIES, NER_SCHEMA, default_data_dir, payloads


def collect(repo: Path, data_dir: Path, n: int) -> dict:
    from structbert_client import StructBertClient, api
    from structbert_serving.embedded_server import EmbeddedServer

    out = {}
    with EmbeddedServer(repo) as server:
        client = StructBertClient(server.grpc_url, batch_size=32, timeout_s=600)
        names = {m.name for m in client._client.get_model_repository_index().models}
        if api.SENTENCE_SIMILARITY.name in names:
            pairs = payloads("similarity", data_dir, n, seed=3)
            out["similarity"] = client.similarity([a for a, _ in pairs], [b for _, b in pairs])
        if api.ZERO_SHOT_CLASSIFICATION.name in names:
            texts = [p[0] for p in payloads("zero_shot", data_dir, n, seed=3)]
            out["zero_shot"] = client.classify(texts, CATEGORIES)
        if api.INFORMATION_EXTRACTION.name in names:
            texts = [p[0] for p in payloads("uie", data_dir, n, seed=3)]
            out["uie"] = client.extract(texts, NER_SCHEMA)
    return out


def spans(paths) -> set:
    return {(p[0]["type"], *p[0]["offset"]) for p in paths}


def compare(ref: dict, cand: dict) -> dict:
    report = {}
    if "similarity" in ref:
        diff = np.abs(np.array(ref["similarity"]) - np.array(cand["similarity"]))
        report["similarity"] = {"pairs": len(diff), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    if "zero_shot" in ref:
        top1 = [r["labels"][0] == c["labels"][0] for r, c in zip(ref["zero_shot"], cand["zero_shot"])]
        order = [r["labels"] == c["labels"] for r, c in zip(ref["zero_shot"], cand["zero_shot"])]
        score_diff = [abs(r["scores"][r["labels"].index(lab)] - c["scores"][c["labels"].index(lab)])
                      for r, c in zip(ref["zero_shot"], cand["zero_shot"]) for lab in r["labels"]]
        margin = [r["scores"][0] - r["scores"][1] for r in ref["zero_shot"]]
        report["zero_shot"] = {"texts": len(top1), "top1_agreement": float(np.mean(top1)),
                               "full_ranking_agreement": float(np.mean(order)),
                               "max_score_abs_diff": float(np.max(score_diff)),
                               "mean_score_abs_diff": float(np.mean(score_diff)),
                               "reference_median_top1_margin": float(np.median(margin))}
    if "uie" in ref:
        same = [r == c for r, c in zip(ref["uie"], cand["uie"])]
        inter = sum(len(spans(r) & spans(c)) for r, c in zip(ref["uie"], cand["uie"]))
        union = sum(len(spans(r) | spans(c)) for r, c in zip(ref["uie"], cand["uie"]))
        report["uie"] = {"texts": len(same), "identical_paths": float(np.mean(same)),
                         "span_jaccard": inter / union if union else 1.0, "reference_spans": union}
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or default_data_dir()
    report = {"reference": str(args.reference), "candidate": str(args.candidate),
              **compare(collect(args.reference, data_dir, args.n), collect(args.candidate, data_dir, args.n))}
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
