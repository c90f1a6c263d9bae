"""GPU memory of one served FP16 base model, measured in a fresh process (nothing else loaded):

    python -m structbert_bench.gpu_memory --out $OUT

Exports TorchScript FP16 artifacts of synthetic base checkpoints (zero-shot classifier, SiameseUIE
encoder + cross part), then for each model starts a new Python process that loads it on the GPU
and reports the memory PyTorch holds after loading and the peak while encoding a batch of
64 x 128 tokens (plus the CUDA context, which the process holds whatever the model).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys, torch
torch.cuda.init(); torch.zeros(1, device="cuda")
free0, total = torch.cuda.mem_get_info()
base = torch.cuda.memory_allocated()
paths = sys.argv[1:]
modules = [torch.jit.load(p, map_location="cuda").eval() for p in paths]
loaded = torch.cuda.memory_allocated() - base
torch.cuda.reset_peak_memory_stats()
with torch.inference_mode():
    for m in modules:
        if "cross" in paths[modules.index(m)]:
            m(torch.randn(64, 128, 768, device="cuda"), torch.ones(64, 128, dtype=torch.long, device="cuda"),
              torch.randn(64, 16, 768, device="cuda"), torch.ones(64, 16, dtype=torch.long, device="cuda"))
        else:
            ids = torch.randint(1000, 20000, (64, 128), device="cuda"); one = torch.ones_like(ids)
            args = (ids, one, torch.zeros_like(ids)) + ((torch.arange(128, device="cuda").expand(64, -1),) if "uie-encoder" in paths[modules.index(m)] else ())
            m(*args)
peak = torch.cuda.max_memory_allocated() - base
free1, _ = torch.cuda.mem_get_info()
print(json.dumps({"weights_gib": round(loaded / 2**30, 3), "peak_64x128_gib": round(peak / 2**30, 3),
                  "process_total_gib": round((free0 - free1) / 2**30 + 0.0, 3)}))
"""


def main() -> None:
    import torch

    from structbert_export.artifacts import export_artifact
    from structbert_export.checkpoint import load_checkpoint
    from structbert_export.modules import build_module
    from structbert_export.specs import spec_for
    from structbert_export.synthetic import make_task_checkpoint

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/structbert-gpu-mem"))
    args = parser.parse_args()
    models = {"zero_shot_classifier (base)": [("zero-shot", "zero-shot")],
              "SiameseUIE (base: encoder + cross)": [("uie", "uie-encoder"), ("uie", "uie-cross")]}
    result = {"gpu": torch.cuda.get_device_name()}
    for label, parts in models.items():
        paths = []
        for task, family in parts:
            ck = load_checkpoint(make_task_checkpoint(args.work / task, task, "base"))
            paths.append(str(export_artifact(build_module(family, ck).cuda(), spec_for(family), ck,
                                             args.work / family, "fp16", "torchscript")))
        run = subprocess.run([sys.executable, "-c", PROBE, *paths], capture_output=True, text=True, check=True)
        result[label] = json.loads(run.stdout.strip().splitlines()[-1])
        print(label, result[label], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_memory.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
