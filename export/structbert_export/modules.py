"""PyTorch modules that export traces: BERT from a checkpoint, plus each family's head."""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertModel

from .checkpoint import Checkpoint, CheckpointError

ATTENTION = ("eager", "sdpa")


def build_bert(checkpoint: Checkpoint, *, add_pooling_layer: bool = False, attention: str = "eager") -> BertModel:
    """A BertModel with weights from the checkpoint. ``eager`` attention is what ONNX Runtime's BERT
    fusions recognise (ONNX export); ``sdpa`` traces PyTorch's fused attention kernels (TorchScript
    on GPU)."""
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, not {attention!r}")
    config = checkpoint.config
    model = BertModel._from_config(config, attn_implementation=attention, add_pooling_layer=add_pooling_layer)
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


class ClsPooling(nn.Module):
    """The last hidden state at [CLS] (no MLP pooler), in float32, L2-normalised: ModelScope's
    sentence-embedding ``emb_pooler_type="cls"`` (CoROM)."""

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        first = hidden[:, 0].float()
        return first / first.norm(p=2, dim=-1, keepdim=True).clamp(min=1e-12)


class MeanPooledEncoder(nn.Module):
    """INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS -> EMBEDDING (L2-normalised mean pooling, or the
    [CLS] state for checkpoints that pool that way: ``Checkpoint.pooling``)."""

    def __init__(self, bert: BertModel, pooling: str = "mean"):
        super().__init__()
        self.bert = bert
        self.pooling = ClsPooling() if pooling == "cls" else MeanPooling()

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


def build_classifier(checkpoint: Checkpoint, attention: str = "eager") -> SequenceClassifier:
    head = checkpoint.submodule_state("classifier.")
    if "weight" not in head or "bias" not in head:
        raise CheckpointError(
            f"{checkpoint.path}: no classifier head (classifier.weight / classifier.bias); "
            "pair classification, zero-shot and reranking need a sequence-classification checkpoint"
        )
    num_labels, hidden = head["weight"].shape
    classifier = nn.Linear(hidden, num_labels)
    classifier.load_state_dict(head)
    return SequenceClassifier(build_bert(checkpoint, add_pooling_layer=True, attention=attention), classifier).eval()


UIE_CROSS_LAYERS = 6
MASK_PENALTY = -10000.0  # added to masked attention scores and to logits at masked positions


class UieEncoder(nn.Module):
    """SiameseUIE's encoder: embeddings + the first L-6 layers, explicit token types and positions
    (hints use token type 1 and positions W, W+1, ... after the text window they meet)."""

    def __init__(self, plm: BertModel):
        super().__init__()
        self.plm = plm

    def forward(self, input_ids, attention_mask, token_type_ids, position_ids):
        return self.plm(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids).last_hidden_state


class UieCross(nn.Module):
    """The last 6 layers over [window ; hint] with the joint mask, then the head/tail pointers on the
    window positions; masked positions get ``+ (1 - mask) * -10000``."""

    def __init__(self, cross: nn.Module, head: nn.Linear, tail: nn.Linear):
        super().__init__()
        self.cross = cross
        self.head_clsf = head
        self.tail_clsf = tail

    def forward(self, text_hidden, text_mask, hint_hidden, hint_mask):
        hidden = torch.cat([text_hidden, hint_hidden], dim=1)
        mask = torch.cat([text_mask, hint_mask], dim=1).to(hidden.dtype)
        additive = (1.0 - mask)[:, None, None, :] * MASK_PENALTY
        out = self.cross(hidden, attention_mask=additive)[0][:, : text_hidden.size(1)]
        penalty = (1.0 - text_mask.to(out.dtype)) * MASK_PENALTY
        head = self.head_clsf(out).squeeze(-1) + penalty
        tail = self.tail_clsf(out).squeeze(-1) + penalty
        return head.float(), tail.float()


def _uie_configs(checkpoint: Checkpoint, attention: str = "eager"):
    import copy

    total = checkpoint.config.num_hidden_layers
    cross_layers = sum(1 for k in checkpoint.state_dict if k.startswith("crossattention.layer.")
                       and k.endswith(".attention.self.query.weight"))
    plm_layers = sum(1 for k in checkpoint.state_dict if k.startswith("plm.encoder.layer.")
                     and k.endswith(".attention.self.query.weight"))
    if cross_layers != UIE_CROSS_LAYERS or plm_layers + cross_layers != total:
        raise CheckpointError(
            f"{checkpoint.path}: not a SiameseUIE checkpoint: expected plm.encoder.layer.0..{total - 7} and "
            f"crossattention.layer.0..5, found {plm_layers} plm and {cross_layers} cross layers")
    plm_config = copy.deepcopy(checkpoint.config)
    plm_config.num_hidden_layers = plm_layers
    cross_config = copy.deepcopy(checkpoint.config)
    cross_config.num_hidden_layers = cross_layers
    cross_config._attn_implementation = attention
    return plm_config, cross_config


def build_uie_encoder(checkpoint: Checkpoint, attention: str = "eager") -> UieEncoder:
    plm_config, _ = _uie_configs(checkpoint, attention)
    view = Checkpoint(checkpoint.path, plm_config, checkpoint.state_dict, checkpoint.vocab_file,
                      checkpoint.tokenizer_file, checkpoint.model_type, checkpoint.raw_config)
    return UieEncoder(build_bert(view, attention=attention)).eval()


def build_uie_cross(checkpoint: Checkpoint, attention: str = "eager") -> UieCross:
    from transformers.models.bert.modeling_bert import BertEncoder

    _, cross_config = _uie_configs(checkpoint, attention)
    cross = BertEncoder(cross_config)
    cross.load_state_dict({"layer." + k: v for k, v in checkpoint.submodule_state("crossattention.layer.").items()})
    hidden = checkpoint.config.hidden_size
    head, tail = nn.Linear(hidden, 1), nn.Linear(hidden, 1)
    head.load_state_dict(checkpoint.submodule_state("head_clsf."))
    tail.load_state_dict(checkpoint.submodule_state("tail_clsf."))
    return UieCross(cross, head, tail).eval()


# Node-name prefixes (module scopes in the ONNX graph) that must stay float32 in FP16 artifacts.
FP32_SCOPES: dict[str, tuple[str, ...]] = {"embedding": ("/pooling/",)}


def _mean_pooled(checkpoint: Checkpoint, attention: str = "eager") -> nn.Module:
    return MeanPooledEncoder(build_bert(checkpoint, attention=attention), checkpoint.pooling).eval()


# EncoderSpec.module -> the module export traces
BUILDERS = {"mean-pooled": _mean_pooled, "classifier": build_classifier, "uie-encoder": build_uie_encoder,
            "uie-cross": build_uie_cross}


def build_module(family: str, checkpoint: Checkpoint, attention: str = "eager") -> nn.Module:
    from .specs import spec_for

    return BUILDERS[spec_for(family).module](checkpoint, attention)
