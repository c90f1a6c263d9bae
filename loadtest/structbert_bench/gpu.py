"""GPU measurements of the served model paths, in one run on one GPU machine:

    python -m structbert_bench.gpu --out $OUT [--attention sdpa]
    python -m structbert_bench.gpu --out /tmp/smoke --device cpu --sizes tiny --seconds 0.2   # a smoke run

What it runs is the embedded flavour's GPU path without Triton's transport: TorchScript FP16
artifacts (exported and validated on the GPU), the ragged encoder that batches requests, and the
SiameseUIE level loop. The baseline in the same run is PyTorch eager with FP16 autocast, one
request at a time (what ModelScope users run on a GPU). Synthetic checkpoints: same architecture
and cost as the real ones. This is the in-process reference for what Triton's transport costs:
``structbert-triton bench --device cuda`` measures the same pipelines through the real server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from structbert_export.artifacts import export_artifact
from structbert_export.checkpoint import load_checkpoint
from structbert_export.modules import build_module
from structbert_export.specs import CLASSIFY_OUTPUTS, TOKEN_INPUTS, spec_for
from structbert_export.synthetic import make_task_checkpoint
from structbert_export.tokenizer_files import write_tokenizer_json
from structbert_serving import uie
from structbert_serving.encoder import EncoderSettings, RaggedEncoder
from structbert_serving.runtime import load_runner
from structbert_serving.tokenization import TextTokenizer

from . import baseline
from .workloads import CATEGORIES, NER_SCHEMA, default_data_dir, payloads

PADDINGS = (0.5,)  # padded/real - 1 allowed per chunk (see plan_chunks); run 2 swept inf/0.5/0.25
TOKENS = [t.name for t in TOKEN_INPUTS]


@dataclass
class Run:
    """Where and how this run measures (``--device cpu --sizes tiny`` makes a quick smoke run)."""

    device: str = "cuda"
    attention: str = "eager"
    seconds: float = 8.0
    work: Path = Path("/tmp/structbert-gpu")
    sizes: tuple[str, str, str] = ("large", "base", "base")  # pair, zero-shot, UIE
    batches: dict = field(default_factory=lambda: {"pair": (1, 64, 256, 512, 1024),
                                                   "zero_shot": (1, 16, 64, 128, 256), "uie": (16, 64)})

    @property
    def gpu(self) -> bool:
        return self.device == "cuda"

    def sync_time(self) -> float:
        if self.gpu:
            torch.cuda.synchronize()
        return time.perf_counter()

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.gpu else contextlib.nullcontext()

    def empty_cache(self) -> None:
        gc.collect()
        if self.gpu:
            torch.cuda.empty_cache()

    def reset_peak(self) -> None:
        if self.gpu:
            torch.cuda.reset_peak_memory_stats()

    def memory_gib(self, peak: bool = False) -> float:
        """GPU memory allocated now (after freeing what can be) or at its peak; 0 on the CPU."""
        if not self.gpu:
            return 0.0
        if peak:
            return torch.cuda.max_memory_allocated() / 2**30
        self.empty_cache()
        return torch.cuda.memory_allocated() / 2**30


def gemm_peak_tflops(run: Run) -> float:
    n = 8192 if run.gpu else 512
    dtype = torch.float16 if run.gpu else torch.float32
    a = torch.randn(n, n, device=run.device, dtype=dtype)
    b = torch.randn(n, n, device=run.device, dtype=dtype)
    for _ in range(3):
        a @ b
    start = run.sync_time()
    for _ in range(20):
        a @ b
    return 20 * 2 * n**3 / (run.sync_time() - start) / 1e12


def flops_per_token(config, length: float) -> float:
    """Forward FLOPs per token of a BERT encoder: the dense layers plus attention scores/values."""
    d, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    return layers * (2 * (4 * d * d + 2 * d * inter) + 4 * length * d)


def export_fp16(run: Run, family: str, checkpoint) -> tuple[object, dict]:
    spec = spec_for(family)
    artifact = export_artifact(build_module(family, checkpoint, run.attention).to(run.device), spec, checkpoint,
                               run.work / f"{family}-{run.attention}", "fp16", "torchscript")
    from structbert_export.validation import validate_artifact

    report = validate_artifact(build_module(family, checkpoint), spec, checkpoint, artifact, precision="fp16",
                               fmt="torchscript", classify_outputs=CLASSIFY_OUTPUTS, device=run.device)
    runner = load_runner(artifact, input_names=spec.input_names, output_names=spec.output_names, device=run.device)
    return runner, {"max_abs_diff": report.max_abs_diff, "min_cosine": report.min_cosine,
                    "argmax_agreement": report.min_argmax_agreement, "passed": report.passed}


def percentiles(lat: list[float]) -> dict:
    arr = np.asarray(lat) * 1000
    return {"p50_ms": round(float(np.percentile(arr, 50)), 2), "p99_ms": round(float(np.percentile(arr, 99)), 2)}


def as_requests(batches) -> list[dict]:
    return [{"INPUT_IDS": b.input_ids, "ATTENTION_MASK": b.attention_mask, "TOKEN_TYPE_IDS": b.token_type_ids}
            for b in batches]


def encoder_throughput(run: Run, encoder: RaggedEncoder, requests: list[dict], batch: int) -> tuple[float, int]:
    """Rows/s when ``batch`` requests arrive together (as a dynamic batch would bring them)."""
    encoder.run(requests[:batch])
    done, tokens, start = 0, 0, run.sync_time()
    while run.sync_time() - start < run.seconds:
        chunk = requests[(done % len(requests)):(done % len(requests)) + batch] or requests[:batch]
        encoder.run(chunk)
        done += len(chunk)
        tokens += sum(int(r["ATTENTION_MASK"].sum()) for r in chunk)
    elapsed = run.sync_time() - start
    return done / elapsed, tokens / elapsed


def time_calls(run: Run, call: Callable[[object], object], items: list, *, warm: int = 5,
               limit: int | None = None) -> list[float]:
    """Latencies of ``call`` over ``items`` one at a time, after ``warm`` calls, for at most
    ``run.seconds`` (or ``limit`` items)."""
    for item in items[:warm]:
        call(item)
    lat: list[float] = []
    start = time.perf_counter()
    for item in items[:limit]:
        t0 = run.sync_time()
        call(item)
        lat.append(run.sync_time() - t0)
        if limit is None and time.perf_counter() - start > run.seconds:
            break
    return lat


def classifier_sweep(run: Run, family: str, checkpoint, requests: list[dict], batches, *, rows_per_item: int,
                     unit: str, baseline: Callable[[], Callable[[object], object]], baseline_items: list) -> dict:
    """A classifier's served path (ragged encoder) at several batch sizes, then the eager baseline
    (``baseline()`` loads it once the served path's memory is freed)."""
    run.reset_peak()
    runner, validation = export_fp16(run, family, checkpoint)
    resident = run.memory_gib()
    rows = {}
    for padding in PADDINGS:
        encoder = RaggedEncoder(runner, TOKENS, EncoderSettings(max_tokens=1 << 18, max_rows=1024 * rows_per_item,
                                                                max_padding=padding))
        for batch in batches:
            rate, tok_rate = encoder_throughput(run, encoder, requests, batch)
            rows[f"batch {batch}, max padding {padding}"] = {
                f"{unit}_per_s": round(rate, 1), "tokens_per_s": round(tok_rate),
                "tflops": round(tok_rate * flops_per_token(checkpoint.config, tok_rate / rate / rows_per_item)
                                / 1e12, 1)}
    peak = run.memory_gib(peak=True)
    del encoder, runner
    run.empty_cache()
    call = baseline()
    with run.autocast():
        lat = time_calls(run, call, baseline_items)
    del call
    run.empty_cache()
    return {"validation_fp16_vs_fp32": validation, "served_path": rows,
            "gpu_memory_gib": {"resident_after_load": round(resident, 2), "peak_with_batches": round(peak, 2)},
            f"baseline_{unit}_per_s": round(len(lat) / sum(lat), 1), "baseline": percentiles(lat)}


def measure_pair(run: Run, data: Path, tok_path: Path, checkpoint) -> dict:
    tokenizer = TextTokenizer(tok_path, max_length=512)
    pairs = [tuple(p) for p in payloads("pair", data, 4096, seed=1)]

    def eager():
        model, hf_tok = baseline.load_classifier(checkpoint.path, run.device)
        return lambda p: baseline.pair_logits(model, hf_tok, [p], truncation="longest_first")

    return classifier_sweep(
        run, "pair-classification", checkpoint, as_requests(tokenizer.encode_many([[p] for p in pairs])),
        run.batches["pair"], rows_per_item=1, unit="pairs", baseline=eager, baseline_items=pairs)


def measure_zero_shot(run: Run, data: Path, tok_path: Path, checkpoint) -> dict:
    tokenizer = TextTokenizer(tok_path, max_length=512, pair_truncation="only_first")
    texts = [p[0] for p in payloads("zero_shot", data, 1024, seed=1)]
    requests = as_requests(tokenizer.encode_many([[(t, label) for label in CATEGORIES] for t in texts]))

    def eager():
        model, hf_tok = baseline.load_classifier(checkpoint.path, run.device)
        return lambda t: baseline.zero_shot_batched(model, hf_tok, t, CATEGORIES)

    result = classifier_sweep(run, "zero-shot", checkpoint, requests, run.batches["zero_shot"],
                              rows_per_item=len(CATEGORIES), unit="texts", baseline=eager, baseline_items=texts)
    for row in result["served_path"].values():
        row["pairs_per_s"] = round(row["texts_per_s"] * len(CATEGORIES), 1)
    return result


def measure_uie(run: Run, data: Path, tok_path: Path, checkpoint) -> dict:
    run.reset_peak()
    enc_runner, enc_val = export_fp16(run, "uie-encoder", checkpoint)
    cross_runner, cross_val = export_fp16(run, "uie-cross", checkpoint)
    resident = run.memory_gib()

    def ragged(runner, family: str, max_tokens: int) -> RaggedEncoder:
        spec = spec_for(family)
        return RaggedEncoder(runner, spec.input_names, EncoderSettings(
            max_tokens=max_tokens, max_rows=512, max_padding=0.25, mask_groups=spec.mask_groups()))

    enc, cross = ragged(enc_runner, "uie-encoder", 1 << 17), ragged(cross_runner, "uie-cross", 1 << 18)

    async def call(model, feeds):
        return model.run([feeds])[0]

    uie_tok = uie.UieTokenizer(tok_path)
    news = [p[0] for p in payloads("uie", data, 512, seed=1)]

    def run_uie(batch_texts):
        items = [uie.Extraction(t, NER_SCHEMA) for t in batch_texts]
        asyncio.run(uie.extract(items, uie_tok.encode_texts(batch_texts), uie_tok,
                                lambda f: call(enc, f), lambda f: call(cross, f)))

    lat = time_calls(run, lambda t: run_uie([t]), news, limit=200)
    batched = {}
    for batch in run.batches["uie"]:
        start, done = run.sync_time(), 0
        while run.sync_time() - start < run.seconds:
            run_uie(news[done % 256:done % 256 + batch])
            done += batch
        batched[batch] = {"extractions_per_s": round(done / (run.sync_time() - start), 1)}
    peak = run.memory_gib(peak=True)
    enc = cross = enc_runner = cross_runner = None  # free the GPU for the baseline
    run.empty_cache()
    ref = baseline.SiameseUieReference(checkpoint.path, run.device)
    with run.autocast():
        base_lat = time_calls(run, lambda t: ref.extract(t, NER_SCHEMA), news[:200])
    return {"validation_fp16_vs_fp32": {"encoder": enc_val, "cross": cross_val},
            "served_path_one_at_a_time": percentiles(lat), "served_path_batched": batched,
            "gpu_memory_gib": {"resident_after_load": round(resident, 2), "peak_with_batches": round(peak, 2)},
            "baseline": percentiles(base_lat),
            "baseline_extractions_per_s": round(len(base_lat) / sum(base_lat), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/structbert-gpu"))
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--attention", choices=("eager", "sdpa"), default="eager")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--sizes", default="large,base,base", help="checkpoint sizes: pair, zero-shot, UIE "
                        "(or one size for all)")
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",") * (3 if "," not in args.sizes else 1)
    run = Run(device=args.device, attention=args.attention, seconds=args.seconds, work=args.work, sizes=tuple(sizes))
    if not run.gpu:
        run.batches = {"pair": (1, 8), "zero_shot": (1, 4), "uie": (4,)}
    args.out.mkdir(parents=True, exist_ok=True)
    data = default_data_dir()
    result = {"gpu": torch.cuda.get_device_name() if run.gpu else "none (cpu smoke run)", "torch": torch.__version__,
              "date": time.strftime("%F %T"), "attention": run.attention,
              "measured_fp16_gemm_tflops": round(gemm_peak_tflops(run), 1), "pipelines": {}}
    print(json.dumps(result), flush=True)
    checkpoints = {task: load_checkpoint(make_task_checkpoint(run.work / f"{task}-{size}", task, size))
                   for task, size in zip(("pair-classification", "zero-shot", "uie"), run.sizes)}
    tok_path = write_tokenizer_json(checkpoints["pair-classification"], run.work / "tokenizer.json")
    for name, task, measure in (("pair_classification_large", "pair-classification", measure_pair),
                                ("zero_shot_base_10_labels", "zero-shot", measure_zero_shot),
                                ("uie_base", "uie", measure_uie)):
        result["pipelines"][name] = measure(run, data, tok_path, checkpoints[task])
        (args.out / f"gpu_results_{run.attention}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
        print(name, json.dumps(result["pipelines"][name]), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
