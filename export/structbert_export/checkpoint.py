"""Read StructBERT (ModelScope) and BERT (Hugging Face) checkpoint directories.

Layouts handled (README, "Real checkpoints"):

* ModelScope StructBERT: ``config.json`` with ``model_type: structbert`` (BERT's fields),
  ``pytorch_model.bin`` or ``model.safetensors``, ``vocab.txt``; keys ``bert.*`` (+ ``classifier.*``).
* Hugging Face BERT: ``model_type: bert``; keys without prefix (``BertModel``) or ``bert.*``
  (``BertForSequenceClassification``); ``vocab.txt`` and/or ``tokenizer.json``.
* SiameseUIE: keys ``plm.*``, ``crossattention.layer.*``, ``head_clsf.*``, ``tail_clsf.*``.

Nothing here downloads; :func:`resolve_model_id` is the one network path (ModelScope hub,
:mod:`structbert_export.hub`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import BertConfig

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Keys that BERT checkpoints carry but that are buffers, not weights.
_IGNORED_KEYS = re.compile(r"(^|\.)position_ids$")


class CheckpointError(ValueError):
    """The directory is not a checkpoint this project can read; the message says what is missing."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: BERT config, raw state dict and the files the tokenizer needs."""

    path: Path
    config: BertConfig
    state_dict: dict[str, torch.Tensor]
    vocab_file: Path | None
    tokenizer_file: Path | None
    model_type: str
    raw_config: dict = field(default_factory=dict)

    @property
    def max_seq_length(self) -> int:
        """Maximum tokens per sequence: sentence-transformers' setting if present, else positions."""
        st_cfg = self.path / "sentence_bert_config.json"
        if st_cfg.is_file():
            value = json.loads(st_cfg.read_text()).get("max_seq_length")
            if value:
                return min(int(value), self.config.max_position_embeddings)
        return int(self.config.max_position_embeddings)

    @property
    def do_lower_case(self) -> bool:
        tok_cfg = self.path / "tokenizer_config.json"
        if tok_cfg.is_file():
            return bool(json.loads(tok_cfg.read_text()).get("do_lower_case", True))
        return True

    @property
    def pooling(self) -> str:
        """How this checkpoint pools a sentence embedding: ``"mean"`` or ``"cls"`` (the last hidden
        state at [CLS], no MLP pooler). A sentence-transformers directory says so in
        ``1_Pooling/config.json``; a ModelScope sentence-embedding checkpoint (``configuration.json``
        task ``sentence-embedding``) in ``model.emb_pooler_type``, ``cls`` when absent (the default of
        ModelScope's ``BertForSentenceEmbedding``, e.g. CoROM). Otherwise, and for the project's own
        synthetic checkpoints, mean."""
        st = self.path / "1_Pooling" / "config.json"
        if st.is_file():
            modes = {k for k, v in json.loads(st.read_text()).items() if k.startswith("pooling_mode_") and v}
            return _pooling_mode(self.path, "cls" if modes == {"pooling_mode_cls_token"} else
                                 "mean" if modes == {"pooling_mode_mean_tokens"} else ",".join(sorted(modes)))
        meta = self.path / "configuration.json"
        if meta.is_file():
            raw = json.loads(meta.read_text())
            if raw.get("task") == "sentence-embedding" and not raw.get("synthetic"):
                model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
                return _pooling_mode(self.path, str(model.get("emb_pooler_type", "cls")))
        return "mean"

    def submodule_state(self, prefix: str) -> dict[str, torch.Tensor]:
        """Keys under ``prefix`` with the prefix removed (``"bert."`` -> BertModel keys)."""
        return {k[len(prefix):]: v for k, v in self.state_dict.items() if k.startswith(prefix)}

    def encoder_prefix(self) -> str:
        """Where the BERT encoder's keys live in this checkpoint: ``bert.``, ``plm.`` or none."""
        for prefix in ("bert.", "plm.", "model.bert.", "encoder."):
            if any(k.startswith(prefix + "embeddings.") for k in self.state_dict):
                return prefix
        if any(k.startswith("embeddings.") for k in self.state_dict):
            return ""
        raise CheckpointError(
            f"{self.path}: no BERT embeddings found in the weights (looked for 'bert.embeddings.*', "
            "'plm.embeddings.*' and 'embeddings.*')"
        )


def _pooling_mode(path: Path, mode: str) -> str:
    mode = {"avg": "mean"}.get(mode, mode)
    if mode not in ("mean", "cls"):
        raise CheckpointError(f"{path}: sentence-embedding pooling {mode!r} is not supported (mean or cls)")
    return mode


def _normalise_key(key: str) -> str:
    # TF-era checkpoints name LayerNorm parameters gamma/beta.
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            raw = load_file(str(file))
        else:
            raw = torch.load(str(file), map_location="cpu", weights_only=True)
        return {_normalise_key(k): v for k, v in raw.items() if not _IGNORED_KEYS.search(k)}
    raise CheckpointError(f"{path}: no weights file (expected one of {', '.join(WEIGHT_FILES)})")


def bert_config_from_dict(raw: dict) -> BertConfig:
    """BertConfig from a ModelScope ``structbert`` or HF ``bert`` config.json (same fields)."""
    fields = dict(raw)
    model_type = fields.pop("model_type", "bert")
    if model_type not in ("bert", "structbert"):
        log.warning("config.json says model_type=%r; reading it as BERT", model_type)
    fields.pop("architectures", None)
    fields.pop("transformers_version", None)
    fields.pop("_name_or_path", None)
    return BertConfig(**fields)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a ModelScope StructBERT or Hugging Face BERT checkpoint directory."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: config.json is missing")
    raw_config = json.loads(config_file.read_text())
    vocab = path / "vocab.txt"
    tokenizer_json = path / "tokenizer.json"
    if not vocab.is_file() and not tokenizer_json.is_file():
        raise CheckpointError(f"{path}: neither vocab.txt nor tokenizer.json is present")
    state = _load_state_dict(path)
    return Checkpoint(
        path=path,
        config=bert_config_from_dict(raw_config),
        state_dict=state,
        vocab_file=vocab if vocab.is_file() else None,
        tokenizer_file=tokenizer_json if tokenizer_json.is_file() else None,
        model_type=str(raw_config.get("model_type", "bert")),
        raw_config=raw_config,
    )


def resolve_model_id(model_id: str, cache_dir: str | Path) -> Path:
    """A ModelScope hub checkpoint (``owner/name[@revision]``, default revision ``master``) in
    ``cache_dir``: downloaded once through the ``modelscope`` client, checked against the hub's sha256,
    reused after (:mod:`structbert_export.hub`)."""
    from . import hub

    ref, revision = hub.split_ref(model_id)
    return hub.download(ref, revision or "master", Path(cache_dir))
