"""PyTorch modules that export traces: BERT from a checkpoint, plus each family's head."""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertModel

from .checkpoint import Checkpoint, CheckpointError


def build_bert(checkpoint: Checkpoint, *, add_pooling_layer: bool = False) -> BertModel:
    """A BertModel with eager attention (what ORT's fusions recognise), weights from the checkpoint."""
    config = checkpoint.config
    model = BertModel._from_config(config, attn_implementation="eager", add_pooling_layer=add_pooling_layer)
    state = checkpoint.submodule_state(checkpoint.encoder_prefix())
    if not add_pooling_layer:
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise CheckpointError(
            f"{checkpoint.path}: weights missing for {len(missing)} BERT parameters, e.g. {missing[:3]}"
        )
    unexpected = [k for k in unexpected if not k.startswith("pooler.")]
    if unexpected:
        raise CheckpointError(f"{checkpoint.path}: unexpected BERT weights, e.g. {unexpected[:3]}")
    return model.eval()


class MeanPooling(nn.Module):
    """Mean over tokens whose mask is 1, computed in float32, then L2-normalised."""

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden.float()
        mask = attention_mask.unsqueeze(-1).float()
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        mean = summed / counts
        return mean / mean.norm(p=2, dim=-1, keepdim=True).clamp(min=1e-12)


class MeanPooledEncoder(nn.Module):
    """INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS -> EMBEDDING (L2-normalised mean pooling)."""

    def __init__(self, bert: BertModel):
        super().__init__()
        self.bert = bert
        self.pooling = MeanPooling()

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        return self.pooling(hidden, attention_mask)


class SequenceClassifier(nn.Module):
    """INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS -> LOGITS = classifier(pooler(h[CLS]))."""

    def __init__(self, bert: BertModel, classifier: nn.Linear):
        super().__init__()
        self.bert = bert
        self.classifier = classifier

    def forward(self, input_ids, attention_mask, token_type_ids):
        pooled = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).pooler_output
        return self.classifier(pooled)


def build_classifier(checkpoint: Checkpoint) -> SequenceClassifier:
    head = checkpoint.submodule_state("classifier.")
    if "weight" not in head or "bias" not in head:
        raise CheckpointError(
            f"{checkpoint.path}: no classifier head (classifier.weight / classifier.bias); "
            "pair classification and zero-shot need a sequence-classification checkpoint"
        )
    num_labels, hidden = head["weight"].shape
    classifier = nn.Linear(hidden, num_labels)
    classifier.load_state_dict(head)
    return SequenceClassifier(build_bert(checkpoint, add_pooling_layer=True), classifier).eval()


# Node-name prefixes (module scopes in the ONNX graph) that must stay float32 in FP16 artifacts.
FP32_SCOPES: dict[str, tuple[str, ...]] = {"embedding": ("/pooling/",)}


def build_module(family: str, checkpoint: Checkpoint) -> nn.Module:
    if family == "embedding":
        return MeanPooledEncoder(build_bert(checkpoint)).eval()
    if family in ("pair-classification", "zero-shot"):
        return build_classifier(checkpoint)
    raise ValueError(f"no module for family {family!r}")
