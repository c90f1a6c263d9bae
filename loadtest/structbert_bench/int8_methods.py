"""INT8 recipes side by side, in process through ONNX Runtime (the runtime both flavours use): drift
against PyTorch FP32 on held-out real text, alone-vs-batched invariance, and texts/s against the
FP32 ONNX artifact measured in the same run.

    python -m structbert_bench.int8_methods --model-dir <MiniLM> --family embedding --out build/int8.json
    python -m structbert_bench.int8_methods --synthetic base --family zero-shot --recipes static,dynamic
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RECIPES = {
    "dynamic": dict(method="dynamic", fuse_attention=True),
    "dynamic-per-row": dict(method="dynamic", fuse_attention=True),  # each row run alone, unpadded
    "static": dict(),
    "static-reduce-range": dict(reduce_range=True),
    "static-percentile": dict(calibration="percentile"),
    "static-entropy": dict(calibration="entropy"),
    # until issue 17's last commit "ffn_out" also matched the attention output projection:
    "static-keep-ffn-out": dict(keep_fp32=("ffn_out", "attention_out")),
    "static-keep-attention": dict(keep_fp32=("attention",)),
    "static-fused-attention": dict(fuse_attention=True),
    "static-keep-ffn-out-reduce-range": dict(keep_fp32=("ffn_out", "attention_out"), reduce_range=True),
    "static-keep-ffn-in": dict(keep_fp32=("ffn_in",)),
    "static-keep-attention-out": dict(keep_fp32=("attention_out",)),
    "static-symmetric": dict(activation_symmetric=True),
    "static-smooth": dict(smooth_alpha=0.5),
    "static-smooth-0.75": dict(smooth_alpha=0.75),
    "static-smooth-keep-ffn-out": dict(smooth_alpha=0.5, keep_fp32=("ffn_out", "attention_out")),
    "static-smooth-keep-ffn-down-only": dict(smooth_alpha=0.5, keep_fp32=("ffn_out",)),
    "static-smooth-keep-attention-out-only": dict(smooth_alpha=0.5, keep_fp32=("attention_out",)),
    "static-split-4": dict(split_outliers=4),
    "static-split-8-r3": dict(split_outliers=8, split_ratio=3.0),
    "static-split-4-smooth": dict(split_outliers=4, smooth_alpha=0.5),
    "static-split-4-keep-attention-out": dict(split_outliers=4, keep_fp32=("attention_out",)),
    "static-split-4-smooth-keep-attention-out": dict(split_outliers=4, smooth_alpha=0.5,
                                                     keep_fp32=("attention_out",)),
    "static-smooth-0.75-keep-attention-out-only": dict(smooth_alpha=0.75, keep_fp32=("attention_out",)),
    "static-smooth-keep-10pct": dict(smooth_alpha=0.5, keep_budget=0.10),
    "static-smooth-keep-20pct": dict(smooth_alpha=0.5, keep_budget=0.20),
    "static-smooth-0.75-keep-10pct": dict(smooth_alpha=0.75, keep_budget=0.10),
}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def run_rows(runner, rows, spec, batch: int) -> list[np.ndarray]:
    """First output per row; rows run in consecutive padded batches of ``batch`` (1 = alone)."""
    from structbert_export.calibration import pad_rows

    groups = spec.mask_groups()
    out = []
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        got = runner.run(pad_rows(chunk, groups))[spec.output_names[0]]
        for k, row in enumerate(chunk):
            value = got[k]
            name = spec.output_names[0]
            if name in groups:
                value = value[: row[groups[name]].shape[1]]
            out.append(value)
    return out


def throughput(runner, rows, spec, batch: int, repeats: int = 2) -> float:
    order = sorted(range(len(rows)), key=lambda i: rows[i][spec.input_names[0]].shape[1])
    ordered = [rows[i] for i in order]  # length-sorted chunks, as the embedded encoder runs them
    run_rows(runner, ordered[:batch], spec, batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run_rows(runner, ordered, spec, batch)
        best = min(best, time.perf_counter() - start)
    return len(rows) / best


def main() -> None:
    import torch

    from structbert_export.artifacts import export_onnx
    from structbert_export.calibration import real_rows
    from structbert_export.checkpoint import load_checkpoint
    from structbert_export.int8 import Int8Recipe
    from structbert_export.modules import build_module
    from structbert_export.specs import spec_for
    from structbert_export.synthetic import make_task_checkpoint
    from structbert_serving.runtime import load_runner

    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--synthetic", choices=["tiny", "base"])
    parser.add_argument("--family", default="embedding")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="int8-methods-"))
    if args.synthetic:
        task = "uie" if args.family.startswith("uie") else args.family
        ckpt_dir = make_task_checkpoint(work / "ckpt", task, args.synthetic, seed=0)
    else:
        ckpt_dir = args.model_dir
    checkpoint = load_checkpoint(ckpt_dir)
    spec = spec_for(args.family)
    module = build_module(args.family, checkpoint).float().eval()
    rows = real_rows(args.family, checkpoint, "validation", limit=args.rows).rows
    with torch.inference_mode():
        reference = [module(*[torch.from_numpy(r[n]) for n in spec.input_names]) for r in rows]
    reference = [(r[0] if isinstance(r, tuple) else r)[0].numpy() for r in reference]
    fp32 = export_onnx(module, spec, checkpoint, work / "fp32" / "model.onnx", "fp32")
    fp32_runner = load_runner(fp32, input_names=spec.input_names, output_names=spec.output_names, device="cpu")
    results = []
    for name in args.recipes.split(","):
        recipe = replace(Int8Recipe(), **RECIPES[name])
        t0 = time.perf_counter()
        artifact = export_onnx(module, spec, checkpoint, work / name / "model.onnx", "int8", recipe)
        export_s = time.perf_counter() - t0
        runner = load_runner(artifact, input_names=spec.input_names, output_names=spec.output_names, device="cpu")
        alone = run_rows(runner, rows, spec, 1)
        per_row = name == "dynamic-per-row"
        batched = alone if per_row else run_rows(runner, rows, spec, args.batch)
        drift = np.array([_cos(a[None], r[None])[0] for a, r in zip(alone, reference)])
        drift_b = np.array([_cos(a[None], r[None])[0] for a, r in zip(batched, reference)])
        inv = np.array([_cos(a[None], b[None])[0] for a, b in zip(alone, batched)])
        agree = None
        if spec.output_names[0] == "LOGITS":
            agree = float(np.mean([a.argmax() == r.argmax() for a, r in zip(batched, reference)]))
        fp32_tps = throughput(fp32_runner, rows, spec, args.batch)
        tps = throughput(runner, rows, spec, 1 if per_row else args.batch)
        result = {"method": name, "mean_cosine": float(drift.mean()), "min_cosine": float(drift.min()),
                  "batched_min_cosine": float(drift_b.min()), "alone_vs_batched_min_cosine": float(inv.min()),
                  "argmax_agreement": agree, "rows_per_s": round(tps, 1), "fp32_rows_per_s": round(fp32_tps, 1),
                  "speed_vs_fp32": round(tps / fp32_tps, 2), "export_s": round(export_s, 1)}
        results.append(result)
        print(json.dumps(result), flush=True)
    report = {"checkpoint": str(ckpt_dir), "family": args.family, "rows": len(rows), "batch": args.batch,
              "results": results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
