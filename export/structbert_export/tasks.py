"""``structbert-triton export --task ...``: checkpoint -> validated artifact -> Triton models."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from structbert_client import api
from structbert_registry.families import FAMILIES
from structbert_serving.classification import id2label_list
from structbert_serving.params import (
    PairClassificationParams,
    PipelineParams,
    RerankingParams,
    UieParams,
    ZeroShotParams,
)
from structbert_serving.reranking import MAX_PASSAGES, relevance_index
from structbert_serving.zero_shot import NliIndices

from . import pbtxt
from .artifacts import export_artifact
from .checkpoint import Checkpoint, load_checkpoint, resolve_model_id
from .container import ensure_onnx_loadable, release
from .modules import build_module
from .native import OptionError, native_device
from .repository import (
    ServingOptions,
    copy_python_model,
    encoder_config,
    encoder_max_batch_size,
    encoder_params,
    in_process_params,
    public_tensors,
    python_model,
    tokenizer_params,
    write_json,
)
from .specs import CLASSIFY_OUTPUTS, spec_for
from .synthetic import BANNER, make_task_checkpoint
from .tokenizer_files import write_tokenizer_json
from .validation import int8_summary, validate_artifact

log = logging.getLogger(__name__)



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
    relevance_index: int | None = None  # reranking: the relevant label (default: see reranking.relevance_index)
    max_passages: int = MAX_PASSAGES  # reranking: passages per query
    checkpoint_label: str = ""  # what is served, for the manifest (default: the id, folder or synthetic size)
    reuse_key: str = ""  # structbert_triton.prepare: the export is reused while this is unchanged


def is_synthetic(req: ExportRequest) -> bool:
    """Random weights: ``--synthetic``, or a directory the synthetic builder wrote (its
    ``configuration.json`` says ``"synthetic": true``)."""
    if req.synthetic:
        return True
    if req.model_dir:
        meta = Path(req.model_dir) / "configuration.json"
        try:
            return bool(meta.is_file() and json.loads(meta.read_text()).get("synthetic"))
        except ValueError:
            return False
    return False


def checkpoint_label(req: ExportRequest) -> str:
    if req.checkpoint_label:
        return req.checkpoint_label
    if req.model_id:
        return req.model_id
    if req.model_dir:
        return str(Path(req.model_dir).expanduser().resolve())
    return f"synthetic-{req.synthetic} (seed {req.seed})"


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


def export_device(fmt: str, requested: str) -> str:
    """Where the artifact is traced and validated. TorchScript bakes the trace's device into the
    graph, so a GPU artifact must be traced on the GPU: ``auto`` takes the GPU when there is one;
    ``cuda`` without one is an error, never a CPU-traced file. ONNX graphs are portable: ``auto``
    validates on the CPU, ``cuda`` on the GPU."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no GPU on this machine. A TorchScript trace bakes in the "
                         "device it ran on, so export GPU artifacts on a GPU host (or pass --device cpu)")
    if requested == "auto":
        return "cuda" if fmt == "torchscript" and torch.cuda.is_available() else "cpu"
    return requested


def validation_device(fmt: str, opts: ServingOptions) -> str:
    """Where the artifact is validated. A native encoder is an ONNX graph (portable): validated on
    the GPU when it will serve there and this host has one, otherwise on the CPU."""
    if opts.flavour == "native":
        import torch

        return "cuda" if opts.device == "cuda" and torch.cuda.is_available() else "cpu"
    return export_device(fmt, opts.device)


def export_encoder(req: ExportRequest, checkpoint: Checkpoint, opts: ServingOptions,
                   family: str | None = None) -> tuple[dict, dict[str, str]]:
    """Export + validate the family's encoder into ``<repo>/<encoder>/1``; write its config."""
    family = family or req.task
    spec = spec_for(family)
    model_dir = req.out / spec.triton_name
    version = model_dir / "1"
    if req.attention != "eager" and req.format == "onnx":
        log.warning("--attention %s with ONNX: ONNX Runtime's BERT fusions only recognise eager attention", req.attention)
    device = validation_device(req.format, opts)
    module = build_module(family, checkpoint, req.attention).to(device)  # a trace bakes in its device
    artifact = export_artifact(module, spec, checkpoint, version, req.precision, req.format)
    # every ONNX artifact loads in the container's ONNX Runtime (opset and IR version), or is refused
    onnx_versions = ensure_onnx_loadable(artifact) if req.format == "onnx" else None
    report = validate_artifact(build_module(family, checkpoint), spec, checkpoint, artifact,
                               precision=req.precision, fmt=req.format, classify_outputs=CLASSIFY_OUTPUTS,
                               report_path=version / "validation.json", device=device)
    sizes = {"hidden": checkpoint.config.hidden_size, "max_length": checkpoint.max_seq_length,
             "labels": checkpoint.config.num_labels}
    config, names = encoder_config(spec, sizes, artifact, req.precision, opts,
                                   device=device if req.format == "torchscript" else opts.device)
    if opts.flavour == "embedded":
        copy_python_model(model_dir, "encoder")
    pbtxt.write(model_dir, config)
    write_json(version / "export.json", {
        "task": req.task, "family": family, "source": str(checkpoint.path), "synthetic": is_synthetic(req),
        "checkpoint": checkpoint_label(req),
        "precision": req.precision, "format": req.format, "flavour": opts.flavour, "attention": req.attention,
        "device": device, "onnx": onnx_versions, "container": release().image if opts.flavour == "native" else None,
        "max_seq_length": checkpoint.max_seq_length, "hidden_size": checkpoint.config.hidden_size,
        **({"pooling": checkpoint.pooling} if family == "embedding" else {}),
        "validation": {"passed": report.passed, "max_abs_diff": report.max_abs_diff,
                       "min_cosine": report.min_cosine, "min_argmax_agreement": report.min_argmax_agreement},
        # issue 17: INT8 recipe, calibration set and rows, float32 layers; real-text validation set
        **int8_summary(report),
        "serving": asdict(opts),
    })
    return sizes, names


def tokenizer_writer(checkpoint: Checkpoint):
    return lambda path: write_tokenizer_json(checkpoint, path)


def pipeline_params(req: ExportRequest, checkpoint: Checkpoint, opts: ServingOptions, spec, names: dict[str, str],
                    pair_truncation: str = "longest_first") -> dict:
    """The fields every token pipeline's parameters share (``PipelineParams``)."""
    return {**tokenizer_params(checkpoint.max_seq_length, opts, pair_truncation), **encoder_params(spec, names, opts),
            **in_process_params(req.out, spec, opts)}


def public_model(req: ExportRequest, checkpoint: Checkpoint, model: api.PublicModel, sizes: dict[str, int],
                 opts: ServingOptions, params) -> list[str]:
    """A public model as the wire API declares it, its adapter, typed parameters and tokenizer."""
    inputs, outputs = public_tensors(model, sizes)
    return python_model(req.out, model.name, inputs=inputs, outputs=outputs, opts=opts, params=params,
                        tokenizer=tokenizer_writer(checkpoint))


def export_embedding(req: ExportRequest, opts: ServingOptions) -> list[str]:
    """embedding_encoder (mean pooling and L2 normalisation in the graph) + the BLS models
    text_embedding and sentence_similarity (tokenise, encode, cosine)."""
    checkpoint = resolve_checkpoint(req)
    sizes, names = export_encoder(req, checkpoint, opts)
    spec = spec_for(req.task)
    params = PipelineParams(**pipeline_params(req, checkpoint, opts, spec, names))
    return [spec.triton_name,
            *public_model(req, checkpoint, api.TEXT_EMBEDDING, sizes, opts, params),
            *public_model(req, checkpoint, api.SENTENCE_SIMILARITY, sizes, opts, params)]


def export_pair_classification(req: ExportRequest, opts: ServingOptions) -> list[str]:
    """pair_classifier (encoder + pooler + classifier -> LOGITS) + the BLS model pair_classification
    (tokenise the pair, classify, softmax -> PROBS, LABELS)."""
    checkpoint = resolve_checkpoint(req)
    sizes, names = export_encoder(req, checkpoint, opts)
    spec = spec_for(req.task)
    params = PairClassificationParams(**pipeline_params(req, checkpoint, opts, spec, names),
                                      labels=id2label_list(checkpoint.config.id2label, sizes["labels"]))
    return [spec.triton_name, *public_model(req, checkpoint, api.PAIR_CLASSIFICATION, sizes, opts, params)]


def export_text_classification(req: ExportRequest, opts: ServingOptions) -> list[str]:
    """text_classifier (encoder + pooler + classifier -> LOGITS) + the BLS model text_classification
    (tokenise one text, classify, softmax -> PROBS, LABELS)."""
    checkpoint = resolve_checkpoint(req)
    sizes, names = export_encoder(req, checkpoint, opts)
    spec = spec_for(req.task)
    params = PairClassificationParams(**pipeline_params(req, checkpoint, opts, spec, names),  # labels: the same fields
                                      labels=id2label_list(checkpoint.config.id2label, sizes["labels"]))
    return [spec.triton_name, *public_model(req, checkpoint, api.TEXT_CLASSIFICATION, sizes, opts, params)]


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
    params = ZeroShotParams(**pipeline_params(req, checkpoint, opts, spec, names, "only_first"),  # never cut the hypothesis
                            entailment_index=indices.entailment, contradiction_index=indices.contradiction)
    log.info("NLI indices: entailment %d, contradiction %d", indices.entailment, indices.contradiction)
    return [spec.triton_name, *public_model(req, checkpoint, api.ZERO_SHOT_CLASSIFICATION, sizes, opts, params)]


def export_reranking(req: ExportRequest, opts: ServingOptions) -> list[str]:
    """reranker (a cross-encoder's LOGITS: one logit, or a pair classifier's labels) + the BLS model
    reranking (one pair per passage, cut from the passage only; relevance = sigmoid of the logit or
    softmax of the relevant label)."""
    checkpoint = resolve_checkpoint(req)
    sizes, names = export_encoder(req, checkpoint, opts)
    labels = id2label_list(checkpoint.config.id2label, sizes["labels"])
    relevant = relevance_index(labels, req.relevance_index)
    if req.max_passages < 1:
        raise ValueError(f"--max-passages {req.max_passages}: allow at least one passage per query")
    spec = spec_for(req.task)
    params = RerankingParams(**pipeline_params(req, checkpoint, opts, spec, names, "only_second"),  # keep the query
                             max_passages=req.max_passages, relevance_index=relevant)
    log.info("reranking: relevance = %s of label %d (%s)", "sigmoid" if len(labels) == 1 else "softmax", relevant,
             labels[relevant])
    return [spec.triton_name, *public_model(req, checkpoint, api.RERANKING, sizes, opts, params)]


def export_uie(req: ExportRequest, opts: ServingOptions) -> list[str]:
    """uie_encoder (first L-6 layers) + uie_cross (last 6 + pointers) + the BLS model
    information_extraction that walks the schema."""
    checkpoint = resolve_checkpoint(req)
    _, encoder_names = export_encoder(req, checkpoint, opts, "uie-encoder")
    _, cross_names = export_encoder(req, checkpoint, opts, "uie-cross")
    encoder_spec, cross_spec = spec_for("uie-encoder"), spec_for("uie-cross")
    params = UieParams(encoder_model=encoder_spec.triton_name, cross_model=cross_spec.triton_name,
                       encoder_max_batch_size=min(encoder_max_batch_size(encoder_spec, opts),
                                                  encoder_max_batch_size(cross_spec, opts)),
                       encoder_tensor_names={**encoder_names, **cross_names}, max_chars=opts.max_chars)
    return [encoder_spec.triton_name, cross_spec.triton_name,
            *public_model(req, checkpoint, api.INFORMATION_EXTRACTION, {}, opts, params)]


TORCHSCRIPT_NATIVE = (
    "--flavour native --format torchscript is refused: TorchScript is not forward-compatible, and this export's "
    "torch {torch} would write a file that the {release} container's libtorch {libtorch} must load. Use "
    "--format onnx (native encoders run in Triton's onnxruntime backend), or --flavour embedded for TorchScript")


def check_options(req: ExportRequest, opts: ServingOptions) -> ServingOptions:
    """Refuse option combinations that cannot give a working repository, before anything is written;
    return the options with the serving device resolved."""
    if req.task not in FAMILIES:
        raise OptionError(f"unknown task {req.task!r}; choose one of {', '.join(FAMILIES)}")
    if req.precision == "int8" and req.format == "torchscript":
        raise OptionError("INT8 is an ONNX Runtime CPU artifact; use --format onnx for --precision int8")
    if opts.flavour == "native":
        if req.format == "torchscript":
            import torch

            rel = release()
            raise OptionError(TORCHSCRIPT_NATIVE.format(torch=torch.__version__.split("+")[0], release=rel.release,
                                                        libtorch=rel.libtorch))
        return replace(opts, device=native_device(req.precision, opts.device))
    if req.format == "torchscript":  # the trace's device is the serving device: size batches for it
        return replace(opts, device=export_device(req.format, opts.device))
    return opts


def swap_in(staging: Path, out: Path, models: list[str]) -> None:
    """Move each validated model from ``staging`` into ``out`` with one rename (same filesystem);
    the models they replace go to the staging folder, which the caller deletes. Should a rename
    fail, what was moved is put back."""
    out.mkdir(parents=True, exist_ok=True)
    retired = staging / ".retired"
    retired.mkdir()
    moved: list[str] = []
    try:
        for name in models:
            live = out / name
            if live.exists():
                live.rename(retired / name)
            moved.append(name)
            (staging / name).rename(live)
    except OSError:
        for name in reversed(moved):
            live = out / name
            if (retired / name).exists():
                if live.exists():
                    live.rename(staging / f".failed-{name}")
                (retired / name).rename(live)
            elif live.exists() and not (staging / name).exists():
                live.rename(staging / name)
        raise


def update_manifest(out: Path, req: ExportRequest, opts: ServingOptions, models: list[str]) -> None:
    manifest = out / "structbert_manifest.json"
    data = json.loads(manifest.read_text()) if manifest.is_file() else {}
    data[req.task] = {"models": models, "precision": req.precision, "format": req.format,
                      "flavour": opts.flavour, "device": opts.device,
                      # what the models serve: the gateway's /v1/models and /info mark synthetic ones
                      "checkpoint": checkpoint_label(req), "synthetic": is_synthetic(req),
                      **({"reuse_key": req.reuse_key} if req.reuse_key else {})}
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, manifest)


def run_export(req: ExportRequest, opts: ServingOptions | None = None) -> list[str]:
    """Export a task into ``req.out``. Everything is written and validated in a staging folder beside
    the repository first; only then does each model replace its predecessor (one rename each). A
    refused or failed export leaves the repository as it was: a serving repository stays loadable."""
    opts = check_options(req, opts or ServingOptions())
    req.out = Path(req.out).resolve()
    req.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{req.out.name}.staging-", dir=req.out.parent))
    try:
        models = FAMILIES[req.task].export(replace(req, out=staging), opts)
        swap_in(staging, req.out, models)
        update_manifest(req.out, req, opts, models)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s to %s", ", ".join(models), req.out)
    return models
