"""``structbert-triton export --task ...``: checkpoint -> validated artifact -> Triton models."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from structbert_serving.classification import id2label_list
from structbert_serving.uie import MAX_TEXT_TOKENS
from structbert_serving.zero_shot import MAX_LABELS, NliIndices

from . import pbtxt
from .artifacts import export_artifact
from .checkpoint import Checkpoint, load_checkpoint, resolve_model_id
from .modules import build_module
from .repository import (
    ServingOptions,
    copy_python_model,
    dynamic_batching,
    encoder_config,
    encoder_max_batch_size,
    ensemble_config,
    reset_model_dir,
    step,
    tokenizer_config,
    write_json,
)
from .specs import CLASSIFY_OUTPUTS, spec_for
from .synthetic import BANNER, make_task_checkpoint
from .tokenizer_files import write_tokenizer_json
from .validation import validate_artifact

log = logging.getLogger(__name__)

TASKS = ("embedding", "pair-classification", "zero-shot", "uie")


@dataclass
class ExportRequest:
    task: str
    out: Path
    model_dir: Path | None = None
    model_id: str | None = None
    synthetic: str | None = None
    precision: str = "fp32"
    format: str = "onnx"
    seed: int = 0
    attention: str = "eager"  # sdpa: PyTorch's fused attention (TorchScript on GPU, large batches)
    entailment_index: int | None = None
    contradiction_index: int | None = None


def cache_dir() -> Path:
    root = os.environ.get("STRUCTBERT_TRITON_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(root) / "structbert-triton"


def resolve_checkpoint(req: ExportRequest) -> Checkpoint:
    chosen = [x for x in (req.model_dir, req.model_id, req.synthetic) if x]
    if len(chosen) != 1:
        raise ValueError("give exactly one of --model-dir, --model-id or --synthetic")
    if req.model_dir:
        return load_checkpoint(req.model_dir)
    if req.model_id:
        return load_checkpoint(resolve_model_id(req.model_id, cache_dir() / "hub"))
    path = cache_dir() / "synthetic" / f"{req.task}-{req.synthetic}-seed{req.seed}"
    if not (path / "config.json").is_file():
        make_task_checkpoint(path, req.task, req.synthetic, seed=req.seed)
    else:
        log.warning(BANNER)
    return load_checkpoint(path)


def export_encoder(req: ExportRequest, checkpoint: Checkpoint, opts: ServingOptions,
                   family: str | None = None) -> tuple[dict, dict[str, str]]:
    """Export + validate the family's encoder into ``<repo>/<encoder>/1``; write its config."""
    family = family or req.task
    spec = spec_for(family)
    model_dir = req.out / spec.triton_name
    reset_model_dir(model_dir)
    version = model_dir / "1"
    if req.attention != "eager" and req.format == "onnx":
        log.warning("--attention %s with ONNX: ONNX Runtime's BERT fusions only recognise eager attention", req.attention)
    module = build_module(family, checkpoint, req.attention)
    artifact = export_artifact(module, spec, checkpoint, version, req.precision, req.format)
    report = validate_artifact(build_module(family, checkpoint), spec, checkpoint, artifact,
                               precision=req.precision, fmt=req.format, classify_outputs=CLASSIFY_OUTPUTS,
                               report_path=version / "validation.json")
    sizes = {"hidden": checkpoint.config.hidden_size, "max_length": checkpoint.max_seq_length,
             "labels": checkpoint.config.num_labels}
    config, names = encoder_config(spec, sizes, artifact, req.precision, opts)
    if opts.flavour == "embedded":
        copy_python_model(model_dir, "encoder")
    pbtxt.write(model_dir, config)
    write_json(version / "export.json", {
        "task": req.task, "family": family, "source": str(checkpoint.path), "synthetic": bool(req.synthetic),
        "precision": req.precision, "format": req.format, "flavour": opts.flavour, "attention": req.attention,
        "max_seq_length": checkpoint.max_seq_length, "hidden_size": checkpoint.config.hidden_size,
        "validation": {"passed": report.passed, "max_abs_diff": report.max_abs_diff,
                       "min_cosine": report.min_cosine, "min_argmax_agreement": report.min_argmax_agreement},
        "serving": asdict(opts),
    })
    return sizes, names


def export_tokenizer(name: str, checkpoint: Checkpoint, out: Path, opts: ServingOptions,
                     text_inputs: tuple[str, ...] = ("TEXT",), pair_truncation: str = "longest_first") -> None:
    model_dir = out / name
    reset_model_dir(model_dir)
    version = copy_python_model(model_dir, "tokenizer")
    write_tokenizer_json(checkpoint, version / "tokenizer.json")
    pbtxt.write(model_dir, tokenizer_config(name, checkpoint.max_seq_length, opts, text_inputs, pair_truncation))


def export_embedding(req: ExportRequest, opts: ServingOptions) -> list[str]:
    """tokenizer + encoder (+ mean pooling in the graph) + cosine; ensembles text_embedding and
    sentence_similarity."""
    checkpoint = resolve_checkpoint(req)
    sizes, names = export_encoder(req, checkpoint, opts)
    hidden = sizes["hidden"]
    export_tokenizer("embedding_tokenizer", checkpoint, req.out, opts)

    cosine_dir = req.out / "cosine_similarity"
    reset_model_dir(cosine_dir)
    copy_python_model(cosine_dir, "cosine")
    pbtxt.write(cosine_dir, {
        "name": "cosine_similarity", "backend": "python", "max_batch_size": opts.max_batch_size,
        "input": [pbtxt.tensor("EMBEDDING_A", "float32", [hidden]), pbtxt.tensor("EMBEDDING_B", "float32", [hidden])],
        "output": [pbtxt.tensor("SCORE", "float32", [1])],
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        "dynamic_batching": dynamic_batching(opts, 500),
    })

    tokens = ("INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS")

    def encode_steps(text: str, suffix: str, embedding: str) -> list[dict]:
        return [
            step("embedding_tokenizer", {"TEXT": text}, {t: f"{t.lower()}{suffix}" for t in tokens}),
            step("embedding_encoder", {names[t]: f"{t.lower()}{suffix}" for t in tokens},
                 {names["EMBEDDING"]: embedding}),
        ]

    mbs = opts.max_batch_size
    pbtxt.write(req.out / "text_embedding", ensemble_config(
        "text_embedding", mbs, [pbtxt.tensor("TEXT", "bytes", [1])],
        [pbtxt.tensor("EMBEDDING", "float32", [hidden])], encode_steps("TEXT", "", "EMBEDDING")))
    (req.out / "text_embedding" / "1").mkdir(exist_ok=True)
    pbtxt.write(req.out / "sentence_similarity", ensemble_config(
        "sentence_similarity", mbs,
        [pbtxt.tensor("TEXT_A", "bytes", [1]), pbtxt.tensor("TEXT_B", "bytes", [1])],
        [pbtxt.tensor("SCORE", "float32", [1])],
        [*encode_steps("TEXT_A", "_a", "embedding_a"), *encode_steps("TEXT_B", "_b", "embedding_b"),
         step("cosine_similarity", {"EMBEDDING_A": "embedding_a", "EMBEDDING_B": "embedding_b"},
              {"SCORE": "SCORE"})]))
    (req.out / "sentence_similarity" / "1").mkdir(exist_ok=True)
    models = ["embedding_tokenizer", "embedding_encoder", "cosine_similarity", "text_embedding",
              "sentence_similarity"]
    log.info("wrote %s to %s", ", ".join(models), req.out)
    return models


TOKENS = ("INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS")


def export_pair_classification(req: ExportRequest, opts: ServingOptions) -> list[str]:
    """pair_tokenizer -> pair_classifier (LOGITS) -> pair_softmax (PROBS, LABELS); ensemble
    pair_classification."""
    checkpoint = resolve_checkpoint(req)
    sizes, names = export_encoder(req, checkpoint, opts)
    labels = id2label_list(checkpoint.config.id2label, sizes["labels"])
    export_tokenizer("pair_tokenizer", checkpoint, req.out, opts, ("TEXT_A", "TEXT_B"), "longest_first")
    softmax_dir = req.out / "pair_softmax"
    reset_model_dir(softmax_dir)
    copy_python_model(softmax_dir, "pair_softmax")
    n = len(labels)
    pbtxt.write(softmax_dir, {
        "name": "pair_softmax", "backend": "python", "max_batch_size": opts.max_batch_size,
        "input": [pbtxt.tensor("LOGITS", "float32", [n])],
        "output": [pbtxt.tensor("PROBS", "float32", [n]), pbtxt.tensor("LABELS", "bytes", [n])],
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        "dynamic_batching": dynamic_batching(opts, 500),
        "parameters": pbtxt.parameters({"labels": json.dumps(labels, ensure_ascii=False)}),
    })
    pbtxt.write(req.out / "pair_classification", ensemble_config(
        "pair_classification", opts.max_batch_size,
        [pbtxt.tensor("TEXT_A", "bytes", [1]), pbtxt.tensor("TEXT_B", "bytes", [1])],
        [pbtxt.tensor("PROBS", "float32", [n]), pbtxt.tensor("LABELS", "bytes", [n])],
        [step("pair_tokenizer", {"TEXT_A": "TEXT_A", "TEXT_B": "TEXT_B"}, {t: t.lower() for t in TOKENS}),
         step("pair_classifier", {names[t]: t.lower() for t in TOKENS}, {names["LOGITS"]: "logits"}),
         step("pair_softmax", {"LOGITS": "logits"}, {"PROBS": "PROBS", "LABELS": "LABELS"})]))
    (req.out / "pair_classification" / "1").mkdir(exist_ok=True)
    return ["pair_tokenizer", "pair_classifier", "pair_softmax", "pair_classification"]


def export_zero_shot(req: ExportRequest, opts: ServingOptions) -> list[str]:
    """zero_shot_classifier (NLI LOGITS) + the BLS model zero_shot_classification."""
    checkpoint = resolve_checkpoint(req)
    sizes, names = export_encoder(req, checkpoint, opts)
    if sizes["labels"] < 2:
        raise ValueError(f"{checkpoint.path}: an NLI checkpoint needs at least 2 labels, found {sizes['labels']}")
    indices = NliIndices.from_label2id(checkpoint.config.label2id, entailment=req.entailment_index,
                                       contradiction=req.contradiction_index)
    for which, idx in (("entailment", indices.entailment), ("contradiction", indices.contradiction)):
        if not 0 <= idx < sizes["labels"]:
            raise ValueError(f"{which} index {idx} is outside the {sizes['labels']} labels of {checkpoint.path}")
    spec = spec_for(req.task)
    model_dir = req.out / "zero_shot_classification"
    reset_model_dir(model_dir)
    version = copy_python_model(model_dir, "zero_shot")
    write_tokenizer_json(checkpoint, version / "tokenizer.json")
    tokenizer_params = tokenizer_config("x", checkpoint.max_seq_length, opts)["parameters"]
    params = {k: v["string_value"] for k, v in tokenizer_params.items()}
    params.update({
        "encoder_model": spec.triton_name, "encoder_max_batch_size": encoder_max_batch_size(spec, opts),
        "encoder_tensor_names": json.dumps(names), "max_labels": MAX_LABELS,
        "entailment_index": indices.entailment, "contradiction_index": indices.contradiction,
    })
    pbtxt.write(model_dir, {
        "name": "zero_shot_classification", "backend": "python", "max_batch_size": opts.max_batch_size,
        "input": [pbtxt.tensor("TEXT", "bytes", [1]), pbtxt.tensor("LABELS", "bytes", [1]),
                  pbtxt.tensor("HYPOTHESIS_TEMPLATE", "bytes", [1], optional=True),
                  pbtxt.tensor("MULTI_LABEL", "bool", [1], optional=True)],
        "output": [pbtxt.tensor("RESULT", "bytes", [1])],
        # BLS: several instances so one waiting on the encoder does not serialise the others
        "instance_group": [{"kind": "KIND_CPU", "count": 2}],
        "dynamic_batching": dynamic_batching(opts, opts.max_queue_delay_us),
        "parameters": pbtxt.parameters(params),
    })
    log.info("NLI indices: entailment %d, contradiction %d", indices.entailment, indices.contradiction)
    return [spec.triton_name, "zero_shot_classification"]


def export_uie(req: ExportRequest, opts: ServingOptions) -> list[str]:
    """uie_encoder (first L-6 layers) + uie_cross (last 6 + pointers) + the BLS model
    information_extraction that walks the schema."""
    checkpoint = resolve_checkpoint(req)
    _, encoder_names = export_encoder(req, checkpoint, opts, "uie-encoder")
    _, cross_names = export_encoder(req, checkpoint, opts, "uie-cross")
    encoder_spec, cross_spec = spec_for("uie-encoder"), spec_for("uie-cross")
    model_dir = req.out / "information_extraction"
    reset_model_dir(model_dir)
    version = copy_python_model(model_dir, "uie")
    write_tokenizer_json(checkpoint, version / "tokenizer.json")
    pbtxt.write(model_dir, {
        "name": "information_extraction", "backend": "python", "max_batch_size": opts.max_batch_size,
        "input": [pbtxt.tensor("TEXT", "bytes", [1]), pbtxt.tensor("SCHEMA", "bytes", [1]),
                  pbtxt.tensor("OUTPUT_ALL_PREFIX", "bool", [1], optional=True)],
        "output": [pbtxt.tensor("RESULT", "bytes", [1])],
        "instance_group": [{"kind": "KIND_CPU", "count": 2}],
        "dynamic_batching": dynamic_batching(opts, opts.max_queue_delay_us),
        "parameters": pbtxt.parameters({
            "encoder_model": encoder_spec.triton_name, "cross_model": cross_spec.triton_name,
            "encoder_max_batch_size": min(encoder_max_batch_size(encoder_spec, opts),
                                          encoder_max_batch_size(cross_spec, opts)),
            "tensor_names": json.dumps({**encoder_names, **cross_names}), "max_text_tokens": MAX_TEXT_TOKENS,
            "max_chars": opts.max_chars,
        }),
    })
    return [encoder_spec.triton_name, cross_spec.triton_name, "information_extraction"]


EXPORTERS = {"embedding": export_embedding, "pair-classification": export_pair_classification,
             "zero-shot": export_zero_shot, "uie": export_uie}


def run_export(req: ExportRequest, opts: ServingOptions | None = None) -> list[str]:
    if req.task not in EXPORTERS:
        raise ValueError(f"unknown task {req.task!r}; choose one of {', '.join(EXPORTERS)}")
    req.out = Path(req.out).resolve()
    req.out.mkdir(parents=True, exist_ok=True)
    models = EXPORTERS[req.task](req, opts or ServingOptions())
    manifest = req.out / "structbert_manifest.json"
    data = json.loads(manifest.read_text()) if manifest.is_file() else {}
    data[req.task] = {"models": models, "precision": req.precision, "format": req.format,
                      "flavour": (opts or ServingOptions()).flavour}
    manifest.write_text(json.dumps(data, indent=2))
    return models
