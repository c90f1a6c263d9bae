"""GPU measurements of the served model paths, in one run on one GPU machine:

    PYTHONPATH=client:export:model_repository:loadtest python -m structbert_bench.gpu --out $OUT

What it runs is the embedded flavour's GPU path without Triton's transport: TorchScript FP16
artifacts (exported and validated on the GPU), the ragged encoder that batches requests, and the
SiameseUIE level loop. The baseline in the same run is PyTorch eager with FP16 autocast, one
request at a time (what ModelScope users run on a GPU). Synthetic checkpoints: same architecture
and cost as the real ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np
import torch

from structbert_export.artifacts import export_artifact
from structbert_export.checkpoint import load_checkpoint
from structbert_export.modules import build_module
from structbert_export.specs import CLASSIFY_OUTPUTS, spec_for
from structbert_export.synthetic import make_task_checkpoint
from structbert_export.tokenizer_files import write_tokenizer_json
from structbert_serving import uie
from structbert_serving.encoder import EncoderSettings, RaggedEncoder
from structbert_serving.runtime import load_runner
from structbert_serving.tokenization import TextTokenizer

from . import baseline
from .workloads import CATEGORIES, NER_SCHEMA, default_data_dir, payloads

DEVICE = "cuda"
PADDINGS = (0.5,)  # padded/real - 1 allowed per chunk (see plan_chunks); run 2 swept inf/0.5/0.25
ATTENTION = "eager"  # --attention


def sync_time() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def gemm_peak_tflops() -> float:
    a = torch.randn(8192, 8192, device=DEVICE, dtype=torch.float16)
    b = torch.randn(8192, 8192, device=DEVICE, dtype=torch.float16)
    for _ in range(3):
        a @ b
    start = sync_time()
    for _ in range(20):
        a @ b
    return 20 * 2 * 8192**3 / (sync_time() - start) / 1e12


def flops_per_token(config, length: float) -> float:
    """Forward FLOPs per token of a BERT encoder: the dense layers plus attention scores/values."""
    d, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    return layers * (2 * (4 * d * d + 2 * d * inter) + 4 * length * d)


def resident_gib() -> float:
    """GPU memory held after load, with validation's FP32 reference freed first."""
    import gc

    gc.collect()
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated() / 2**30


def export_fp16(family: str, checkpoint, out: Path) -> tuple[object, dict]:
    spec = spec_for(family)
    artifact = export_artifact(build_module(family, checkpoint, ATTENTION).to(DEVICE), spec, checkpoint,
                               out / f"{family}-{ATTENTION}", "fp16", "torchscript")
    from structbert_export.validation import validate_artifact

    report = validate_artifact(build_module(family, checkpoint), spec, checkpoint, artifact, precision="fp16",
                               fmt="torchscript", classify_outputs=CLASSIFY_OUTPUTS, device=DEVICE)
    runner = load_runner(artifact, input_names=spec.input_names, output_names=spec.output_names, device=DEVICE)
    return runner, {"max_abs_diff": report.max_abs_diff, "min_cosine": report.min_cosine,
                    "argmax_agreement": report.min_argmax_agreement, "passed": report.passed}


def percentiles(lat: list[float]) -> dict:
    arr = np.asarray(lat) * 1000
    return {"p50_ms": round(float(np.percentile(arr, 50)), 2), "p99_ms": round(float(np.percentile(arr, 99)), 2)}


def pair_requests(tokenizer: TextTokenizer, pairs) -> list[dict]:
    out = []
    for batch in tokenizer.encode_many([[p] for p in pairs]):
        out.append({"INPUT_IDS": batch.input_ids, "ATTENTION_MASK": batch.attention_mask,
                    "TOKEN_TYPE_IDS": batch.token_type_ids})
    return out


def encoder_throughput(encoder: RaggedEncoder, requests: list[dict], batch: int, seconds: float) -> tuple[float, int]:
    """Rows/s when ``batch`` requests arrive together (as a dynamic batch would bring them)."""
    encoder.run(requests[:batch])
    done, tokens, start = 0, 0, sync_time()
    while sync_time() - start < seconds:
        chunk = requests[(done % len(requests)):(done % len(requests)) + batch] or requests[:batch]
        encoder.run(chunk)
        done += len(chunk)
        tokens += sum(int(r["ATTENTION_MASK"].sum()) for r in chunk)
    elapsed = sync_time() - start
    return done / elapsed, tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/structbert-gpu"))
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--attention", choices=("eager", "sdpa"), default="eager")
    args = parser.parse_args()
    global ATTENTION
    ATTENTION = args.attention
    args.out.mkdir(parents=True, exist_ok=True)
    data = default_data_dir()
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "date": time.strftime("%F %T"),
              "attention": ATTENTION,
              "measured_fp16_gemm_tflops": round(gemm_peak_tflops(), 1), "pipelines": {}}
    print(json.dumps(result), flush=True)

    def record(name, value):
        result["pipelines"][name] = value
        (args.out / f"gpu_results_{ATTENTION}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
        print(name, json.dumps(value), flush=True)

    # --- pair classification, similarity-large ------------------------------------------------
    ck = load_checkpoint(make_task_checkpoint(args.work / "pair-large", "pair-classification", "large"))
    torch.cuda.reset_peak_memory_stats()
    runner, validation = export_fp16("pair-classification", ck, args.work)
    tok_path = write_tokenizer_json(ck, args.work / "tokenizer.json")
    tokenizer = TextTokenizer(tok_path, max_length=512)
    pairs = [tuple(p) for p in payloads("pair", data, 4096, seed=1)]
    requests = pair_requests(tokenizer, pairs)
    resident = resident_gib()
    rows = {}
    for padding in PADDINGS:
        encoder = RaggedEncoder(runner, ["INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS"],
                                EncoderSettings(max_tokens=1 << 18, max_rows=1024, max_padding=padding))
        for batch in (1, 64, 256, 512, 1024):
            rate, tok_rate = encoder_throughput(encoder, requests, batch, args.seconds)
            rows[f"batch {batch}, max padding {padding}"] = {
                "pairs_per_s": round(rate, 1), "tokens_per_s": round(tok_rate),
                "tflops": round(tok_rate * flops_per_token(ck.config, tok_rate / rate) / 1e12, 1)}
    memory = torch.cuda.max_memory_allocated() / 2**30
    del encoder, runner
    torch.cuda.empty_cache()
    model, hf_tok = baseline.load_classifier(ck.path, DEVICE)
    lat = []
    with torch.autocast("cuda", dtype=torch.float16):
        for p in pairs[:5]:
            baseline.pair_logits(model, hf_tok, [p], truncation="longest_first")
        start = time.perf_counter()
        for p in pairs:
            t0 = time.perf_counter()
            baseline.pair_logits(model, hf_tok, [p], truncation="longest_first")
            lat.append(time.perf_counter() - t0)
            if time.perf_counter() - start > args.seconds:
                break
    record("pair_classification_large", {"validation_fp16_vs_fp32": validation, "served_path": rows,
                                         "gpu_memory_gib": {"resident_after_load": round(resident, 2),
                                                            "peak_with_batches": round(memory, 2)},
                                         "baseline_pairs_per_s": round(len(lat) / sum(lat), 1),
                                         "baseline": percentiles(lat)})
    del model
    torch.cuda.empty_cache()

    # --- zero-shot base, 10 labels ---------------------------------------------------------------
    ck = load_checkpoint(make_task_checkpoint(args.work / "zs-base", "zero-shot", "base"))
    torch.cuda.reset_peak_memory_stats()
    runner, validation = export_fp16("zero-shot", ck, args.work)
    tokenizer = TextTokenizer(tok_path, max_length=512, pair_truncation="only_first")
    texts = [p[0] for p in payloads("zero_shot", data, 1024, seed=1)]
    requests = [{"INPUT_IDS": b.input_ids, "ATTENTION_MASK": b.attention_mask, "TOKEN_TYPE_IDS": b.token_type_ids}
                for b in tokenizer.encode_many([[(t, lab) for lab in CATEGORIES] for t in texts])]
    resident = resident_gib()
    rows = {}
    for padding in PADDINGS:
        encoder = RaggedEncoder(runner, ["INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS"],
                                EncoderSettings(max_tokens=1 << 18, max_rows=4096, max_padding=padding))
        for batch in (1, 16, 64, 128, 256):
            rate, tok_rate = encoder_throughput(encoder, requests, batch, args.seconds)
            rows[f"batch {batch}, max padding {padding}"] = {
                "texts_per_s": round(rate, 1), "pairs_per_s": round(rate * 10, 1),
                "tflops": round(tok_rate * flops_per_token(ck.config, tok_rate / rate / 10) / 1e12, 1)}
    memory = torch.cuda.max_memory_allocated() / 2**30
    del encoder, runner
    torch.cuda.empty_cache()
    model, hf_tok = baseline.load_classifier(ck.path, DEVICE)
    lat = []
    with torch.autocast("cuda", dtype=torch.float16):
        start = time.perf_counter()
        for t in texts:
            t0 = time.perf_counter()
            baseline.zero_shot_batched(model, hf_tok, t, CATEGORIES)
            lat.append(time.perf_counter() - t0)
            if time.perf_counter() - start > args.seconds:
                break
    record("zero_shot_base_10_labels", {"validation_fp16_vs_fp32": validation, "served_path": rows,
                                        "gpu_memory_gib": {"resident_after_load": round(resident, 2),
                                                           "peak_with_batches": round(memory, 2)},
                                        "baseline_texts_per_s": round(len(lat) / sum(lat), 1),
                                        "baseline": percentiles(lat)})
    del model
    torch.cuda.empty_cache()

    # --- SiameseUIE base --------------------------------------------------------------------------
    ck = load_checkpoint(make_task_checkpoint(args.work / "uie-base", "uie", "base"))
    torch.cuda.reset_peak_memory_stats()
    enc_runner, enc_val = export_fp16("uie-encoder", ck, args.work)
    cross_runner, cross_val = export_fp16("uie-cross", ck, args.work)
    resident = resident_gib()
    enc = RaggedEncoder(enc_runner, spec_for("uie-encoder").input_names,
                        EncoderSettings(max_tokens=1 << 17, max_rows=512, max_padding=0.25,
                                        mask_groups=spec_for("uie-encoder").mask_groups()))
    cross = RaggedEncoder(cross_runner, spec_for("uie-cross").input_names,
                          EncoderSettings(max_tokens=1 << 18, max_rows=512, max_padding=0.25,
                                          mask_groups=spec_for("uie-cross").mask_groups()))

    async def call(model, feeds):
        return model.run([feeds])[0]

    uie_tok = uie.UieTokenizer(tok_path)
    news = [p[0] for p in payloads("uie", data, 512, seed=1)]

    def run_uie(batch_texts):
        items = [uie.Extraction(t, NER_SCHEMA) for t in batch_texts]
        asyncio.run(uie.extract(items, uie_tok.encode_texts(batch_texts), uie_tok,
                                lambda f: call(enc, f), lambda f: call(cross, f)))
        torch.cuda.synchronize()

    for t in news[:5]:
        run_uie([t])
    lat = []
    for t in news[:200]:
        t0 = time.perf_counter()
        run_uie([t])
        lat.append(time.perf_counter() - t0)
    batched = {}
    for batch in (16, 64):
        start, done = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            run_uie(news[done % 256:done % 256 + batch])
            done += batch
        batched[batch] = {"extractions_per_s": round(done / (time.perf_counter() - start), 1)}
    memory = torch.cuda.max_memory_allocated() / 2**30
    enc = cross = enc_runner = cross_runner = None  # free the GPU for the baseline
    torch.cuda.empty_cache()
    ref = baseline.SiameseUieReference(ck.path, DEVICE)
    base_lat = []
    with torch.autocast("cuda", dtype=torch.float16):
        for t in news[:5]:
            ref.extract(t, NER_SCHEMA)
        start = time.perf_counter()
        for t in news[:200]:
            t0 = time.perf_counter()
            ref.extract(t, NER_SCHEMA)
            base_lat.append(time.perf_counter() - t0)
            if time.perf_counter() - start > args.seconds:
                break
    record("uie_base", {"validation_fp16_vs_fp32": {"encoder": enc_val, "cross": cross_val},
                        "served_path_one_at_a_time": percentiles(lat), "served_path_batched": batched,
                        "gpu_memory_gib": {"resident_after_load": round(resident, 2),
                                           "peak_with_batches": round(memory, 2)},
                        "baseline": percentiles(base_lat),
                        "baseline_extractions_per_s": round(len(base_lat) / sum(base_lat), 1)})
    print("done", flush=True)


if __name__ == "__main__":
    main()
