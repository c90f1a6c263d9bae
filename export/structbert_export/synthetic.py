"""Randomly initialised StructBERT checkpoints with the real architecture and Chinese vocabulary.

They let export, serving, tests and benchmarks run without network. Their outputs mean nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
from importlib import resources
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

log = logging.getLogger(__name__)

SIZES: dict[str, dict[str, int]] = {
    # real StructBERT Chinese sizes
    "base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096},
    # for tests: 8 layers so that SiameseUIE's split (L-6 encoder layers + 6 cross layers) is possible
    "tiny": {"num_hidden_layers": 8, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128},
}
VOCAB_SIZE = 21128

BANNER = (
    "\n" + "!" * 78 + "\n"
    "!! SYNTHETIC CHECKPOINT: random weights with the real StructBERT architecture and vocabulary.\n"
    "!! Its outputs carry NO meaning. Use --model-dir or --model-id for real answers.\n" + "!" * 78
)


def chinese_vocab_path() -> Path:
    """The 21,128-entry Chinese BERT vocabulary shipped with the package."""
    return Path(str(resources.files("structbert_export") / "zh_vocab.txt"))


def synthetic_config(size: str, **overrides) -> BertConfig:
    if size not in SIZES:
        raise ValueError(f"unknown synthetic size {size!r}; choose one of {', '.join(SIZES)}")
    fields = dict(
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        **SIZES[size],
    )
    fields.update(overrides)
    return BertConfig(**fields)


def _write_common(out: Path, config: BertConfig, task: str, extra_config: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    raw = config.to_dict()
    raw["model_type"] = "structbert"  # what ModelScope writes
    raw.update(extra_config or {})
    (out / "config.json").write_text(json.dumps(raw, indent=2, ensure_ascii=False))
    (out / "configuration.json").write_text(
        json.dumps({"framework": "pytorch", "task": task, "synthetic": True}, indent=2)
    )
    shutil.copyfile(chinese_vocab_path(), out / "vocab.txt")


def make_bert_checkpoint(
    out: str | Path,
    size: str = "tiny",
    *,
    seed: int = 0,
    task: str = "sentence-embedding",
    head: dict[str, torch.Tensor] | None = None,
    extra_config: dict | None = None,
) -> Path:
    """Write a ModelScope-layout checkpoint: ``bert.*`` keys (+ optional head keys) in pytorch_model.bin."""
    out = Path(out)
    config = synthetic_config(size)
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=True).eval()
    state = {f"bert.{k}": v.contiguous() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    state.update(head or {})
    _write_common(out, config, task, extra_config)
    torch.save(state, out / "pytorch_model.bin")
    log.warning(BANNER)
    return out


def make_uie_checkpoint(out: str | Path, size: str = "tiny", *, seed: int = 0) -> Path:
    """SiameseUIE layout: ``plm.*`` (L-6 layers), ``crossattention.layer.{0..5}``, ``head_clsf``,
    ``tail_clsf``. The pointer heads are scaled so that raw logits straddle the 0.5 threshold:
    spans do appear, and decoding is exercised."""
    out = Path(out)
    config = synthetic_config(size)
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=False).eval()
    plm_layers = config.num_hidden_layers - 6
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("position_ids"):
            continue
        if key.startswith("encoder.layer."):
            index = int(key.split(".")[2])
            rest = key.split(".", 3)[3]
            if index >= plm_layers:
                state[f"crossattention.layer.{index - plm_layers}.{rest}"] = value
                continue
        state[f"plm.{key}"] = value
    gen = torch.Generator().manual_seed(seed + 2)
    hidden = config.hidden_size
    for name, bias in (("head_clsf", -0.9), ("tail_clsf", -0.4)):
        state[f"{name}.weight"] = torch.randn(1, hidden, generator=gen) / hidden ** 0.5
        state[f"{name}.bias"] = torch.tensor([bias])
    _write_common(out, config, "siamese-uie")
    torch.save(state, out / "pytorch_model.bin")
    log.warning(BANNER)
    return out


def make_classifier_checkpoint(out: str | Path, labels: list[str] | tuple[str, ...], size: str = "tiny", *,
                               seed: int = 0, task: str = "text-classification") -> Path:
    """A sequence classifier (``classifier.*`` over the pooler) with these labels: a pair classifier,
    an NLI model, or a one-logit cross-encoder."""
    hidden = SIZES[size]["hidden_size"]
    gen = torch.Generator().manual_seed(seed + 1)
    # a wide random head so that labels are well separated and argmax checks mean something
    head = {"classifier.weight": torch.randn(len(labels), hidden, generator=gen) * 0.5,
            "classifier.bias": torch.zeros(len(labels))}
    extra = {"id2label": {str(i): name for i, name in enumerate(labels)},
             "label2id": {name: i for i, name in enumerate(labels)}}
    return make_bert_checkpoint(out, size, seed=seed, task=task, head=head, extra_config=extra)


def make_task_checkpoint(out: str | Path, task: str, size: str = "tiny", *, seed: int = 0) -> Path:
    """A synthetic checkpoint in the layout the task's real checkpoint has (the family's
    ``synthetic_head`` and ``synthetic_labels`` in the registry)."""
    from structbert_registry.families import FAMILIES

    family = FAMILIES.get(task)
    if family is not None and family.synthetic_head == "uie":
        return make_uie_checkpoint(out, size, seed=seed)
    if family is not None and family.synthetic_head == "classifier":
        return make_classifier_checkpoint(out, family.synthetic_labels, size, seed=seed, task=task)
    return make_bert_checkpoint(out, size, seed=seed, task=task)
