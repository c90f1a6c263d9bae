"""Validate an exported artifact against the PyTorch FP32 module: names, shapes, then values.

Checked on shapes other than the trace shape, with padding. Every artifact gets a JSON report;
a miss beyond the precision's tolerance raises :class:`ValidationError` (after the report is written).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from structbert_serving.runtime import load_runner

from .artifacts import example_inputs
from .checkpoint import Checkpoint
from .specs import EncoderSpec, Tolerance

log = logging.getLogger(__name__)


class ValidationError(RuntimeError):
    """An artifact's outputs differ from PyTorch's beyond the tolerance for its precision."""


@dataclass
class CaseResult:
    batch: int
    sequence: int
    output: str
    max_abs_diff: float
    mean_cosine: float
    min_cosine: float
    argmax_agreement: float | None = None


@dataclass
class Report:
    artifact: str
    family: str
    precision: str
    format: str
    runtime_device: str
    tolerance: dict
    cases: list[CaseResult] = field(default_factory=list)
    max_abs_diff: float = 0.0
    min_cosine: float = 1.0
    min_argmax_agreement: float | None = None
    passed: bool = False
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-30)


def compare(reference: np.ndarray, actual: np.ndarray, *, classify: bool) -> tuple[float, float, float, float | None]:
    if reference.shape != actual.shape:
        raise ValidationError(f"shape mismatch: reference {reference.shape}, artifact {actual.shape}")
    if not np.isfinite(actual).all():
        return float("inf"), 0.0, 0.0, 0.0 if classify else None
    diff = float(np.abs(reference.astype(np.float64) - actual).max()) if reference.size else 0.0
    cos = _row_cosines(reference, actual)
    agree = float((reference.argmax(-1) == actual.argmax(-1)).mean()) if classify else None
    return diff, float(cos.mean()), float(cos.min()), agree


def check(report: Report, tol: Tolerance) -> None:
    if tol.max_abs_diff is not None and report.max_abs_diff > tol.max_abs_diff:
        report.failures.append(f"max abs diff {report.max_abs_diff:.3g} > {tol.max_abs_diff:g}")
    if report.min_cosine < tol.min_cosine:
        report.failures.append(f"min cosine {report.min_cosine:.6f} < {tol.min_cosine:g}")
    if tol.min_argmax_agreement is not None and report.min_argmax_agreement is not None \
            and report.min_argmax_agreement < tol.min_argmax_agreement:
        report.failures.append(
            f"argmax agreement {report.min_argmax_agreement:.3f} < {tol.min_argmax_agreement:g}")
    report.passed = not report.failures


def validate_artifact(module: nn.Module, spec: EncoderSpec, checkpoint: Checkpoint, artifact: Path, *,
                      precision: str, fmt: str, classify_outputs: tuple[str, ...] = (),
                      report_path: Path | None = None, device: str = "cpu") -> Report:
    """``device="cuda"`` validates where a GPU artifact will run (reference: FP32 on the same GPU)."""
    start = time.perf_counter()
    tol = spec.tolerances[precision]
    runner = load_runner(artifact, input_names=spec.input_names, output_names=spec.output_names, device=device)
    report = Report(artifact=artifact.name, family=spec.family, precision=precision, format=fmt,
                    runtime_device=runner.device, tolerance=asdict(tol))
    module = module.float().eval().to(device)
    for i, (batch, seq) in enumerate(spec.validation_shapes):
        inputs = example_inputs(spec, batch, seq, vocab_size=checkpoint.config.vocab_size, seed=100 + i,
                                hidden=checkpoint.config.hidden_size)
        with torch.inference_mode():
            ref = module(*[t.to(device) for t in inputs])
        ref = tuple(t.cpu() for t in (ref if isinstance(ref, (tuple, list)) else (ref,)))
        feeds = {n: t.numpy() for n, t in zip(spec.input_names, inputs)}
        got = runner.run(feeds)
        groups = spec.mask_groups()
        for name, ref_t in zip(spec.output_names, ref):
            want, have = ref_t.float().numpy(), got[name]
            if name in groups:  # padded positions are never read: compare real positions only
                keep = feeds[groups[name]].astype(bool).reshape(feeds[groups[name]].shape + (1,) * (want.ndim - 2))
                want, have = want * keep, np.where(keep, have, 0.0)
            diff, mean_cos, min_cos, agree = compare(want, have, classify=name in classify_outputs)
            report.cases.append(CaseResult(batch, seq, name, diff, mean_cos, min_cos, agree))
    report.max_abs_diff = max(c.max_abs_diff for c in report.cases)
    report.min_cosine = min(c.min_cosine for c in report.cases)
    agreements = [c.argmax_agreement for c in report.cases if c.argmax_agreement is not None]
    report.min_argmax_agreement = min(agreements) if agreements else None
    check(report, tol)
    report.seconds = round(time.perf_counter() - start, 2)
    if report_path is not None:
        report_path.write_text(report.to_json())
    summary = (f"{spec.family} {fmt}/{precision}: max abs diff {report.max_abs_diff:.3g}, "
               f"min cosine {report.min_cosine:.6f} over {len(spec.validation_shapes)} shapes")
    if not report.passed:
        raise ValidationError(f"{summary}: FAILED ({'; '.join(report.failures)}); report: {report_path}")
    log.info("validation passed: %s", summary)
    return report
