"""PyTorch eager implementations of every task, one request at a time: the baseline users run
today (ModelScope-style pipelines) and the reference the end-to-end tests compare against.

Written from ModelScope's pipeline semantics (README, "Wire API") with transformers' own loading (``from_pretrained``)
and tokenizer, independently of the export and serving code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
)


def _config(model_dir: Path) -> BertConfig:
    raw = json.loads((model_dir / "config.json").read_text())
    return BertConfig(**{k: v for k, v in raw.items() if k != "model_type"})


def _tokenizer(model_dir: Path):
    if (model_dir / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(model_dir))
    # (transformers 5 ignores vocab_file= in the constructor; from_pretrained reads vocab.txt)
    return BertTokenizerFast.from_pretrained(str(model_dir), do_lower_case=True)


def load_classifier(model_dir: Path, device: str = "cpu"):
    model_dir = Path(model_dir)
    model = BertForSequenceClassification.from_pretrained(str(model_dir), config=_config(model_dir)).eval()
    return model.to(device), _tokenizer(model_dir)


def pair_logits(model, tokenizer, pairs: list[tuple[str, str]], *, truncation: str, max_length: int = 512
                ) -> np.ndarray:
    out = []
    for a, b in pairs:
        enc = tokenizer(a, b, truncation=truncation, max_length=max_length, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out.append(model(**enc).logits[0].float().cpu().numpy())
    return np.stack(out)


def np_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def zero_shot_reference(model, tokenizer, text: str, labels: list[str], *, multi_label: bool,
                        template: str = "{}", entailment: int = 0, contradiction: int = 2) -> dict:
    """ModelScope's zero-shot semantics, written out again independently of the serving code."""
    logits = pair_logits(model, tokenizer, [(text, template.format(lab)) for lab in labels], truncation="only_first")
    if multi_label or len(labels) == 1:
        scores = np_softmax(logits[:, [contradiction, entailment]], axis=1)[:, 1]
    else:
        scores = np_softmax(logits[:, entailment], axis=0)
    order = sorted(range(len(labels)), key=lambda i: -scores[i])
    return {"labels": [labels[i] for i in order], "scores": [float(scores[i]) for i in order]}


def rerank_reference(model, tokenizer, query: str, passages: list[str], *, relevant: int | None = None,
                     max_length: int = 512) -> np.ndarray:
    """Cross-encoder relevance of each passage (pipelines.md): one logit -> sigmoid; several labels ->
    softmax, the relevant label's probability (default: label "1", else index 1). Cut from the passage."""
    logits = pair_logits(model, tokenizer, [(query, p) for p in passages], truncation="only_second",
                         max_length=max_length)
    if logits.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64)))
    if relevant is None:
        labels = [str(model.config.id2label[i]) for i in range(logits.shape[1])]
        relevant = labels.index("1") if "1" in labels else 1
    return np_softmax(logits.astype(np.float64), axis=1)[:, relevant]


def load_reference(model_dir: Path, device: str = "cpu"):
    model_dir = Path(model_dir)
    model = BertModel.from_pretrained(str(model_dir), config=_config(model_dir), add_pooling_layer=False).eval()
    return model.to(device), _tokenizer(model_dir)


def mean_pooled(model, tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """Mean pooling over the attention mask (float32), L2-normalised; one text at a time."""
    out = []
    for text in texts:
        enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1)
        out.append(torch.nn.functional.normalize(mean, dim=-1)[0].cpu().numpy())
    return np.stack(out)


# ------------------------------------------------------------------------------------ SiameseUIE

class SiameseUieReference:
    """SiameseUIE as pipelines.md states it, one text and one hint at a time (ModelScope's loop)."""

    def __init__(self, model_dir: Path, device: str = "cpu"):
        import copy

        from transformers.models.bert.modeling_bert import BertEncoder

        model_dir = Path(model_dir)
        config = _config(model_dir)
        state = torch.load(model_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
        plm_config = copy.deepcopy(config)
        plm_config.num_hidden_layers = config.num_hidden_layers - 6
        self.plm = BertModel._from_config(plm_config, attn_implementation="eager", add_pooling_layer=False).eval()
        self.plm.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("plm.")}, strict=False)
        cross_config = copy.deepcopy(config)
        cross_config.num_hidden_layers = 6
        cross_config._attn_implementation = "eager"
        self.cross = BertEncoder(cross_config).eval()
        self.cross.load_state_dict({k[len("crossattention."):]: v for k, v in state.items()
                                    if k.startswith("crossattention.")})
        self.head = torch.nn.Linear(config.hidden_size, 1)
        self.head.load_state_dict({"weight": state["head_clsf.weight"], "bias": state["head_clsf.bias"]})
        self.tail = torch.nn.Linear(config.hidden_size, 1)
        self.tail.load_state_dict({"weight": state["tail_clsf.weight"], "bias": state["tail_clsf.bias"]})
        self.tokenizer = _tokenizer(model_dir)
        self.device = torch.device(device)
        for module in (self.plm, self.cross, self.head, self.tail):
            module.to(self.device)

    def _plm(self, ids, token_type: int, first_position: int):
        ids = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            return self.plm(input_ids=ids, attention_mask=(ids != -1).long(),
                            token_type_ids=torch.full_like(ids, token_type),
                            position_ids=torch.arange(ids.shape[1], device=self.device)[None] + first_position
                            ).last_hidden_state

    def _pointers(self, window_hidden, window_mask, hint_hidden):
        hidden = torch.cat([window_hidden, hint_hidden], dim=1)
        mask = torch.cat([window_mask, torch.ones(1, hint_hidden.shape[1], device=self.device)], dim=1)
        with torch.inference_mode():
            out = self.cross(hidden, attention_mask=(1.0 - mask)[:, None, None, :] * -10000.0)[0]
            out = out[:, : window_hidden.shape[1]]
            penalty = (1.0 - window_mask) * -10000.0
            head = (self.head(out).squeeze(-1) + penalty)[0].float().cpu().numpy()
            return head, (self.tail(out).squeeze(-1) + penalty)[0].float().cpu().numpy()

    def extract(self, text: str, schema: dict, output_all_prefix: bool = False) -> list[list[dict]]:
        enc = self.tokenizer(text, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        n = len(ids)
        starts = [0] if n <= 384 else [352 * j for j in range(1 + -(-(n - 384) // 352))]
        width = n if len(starts) == 1 else 384
        windows = []
        for start in starts:
            piece = ids[start:start + width]
            mask = torch.zeros(1, width, device=self.device)
            mask[0, : len(piece)] = 1
            padded = piece + [0] * (width - len(piece))
            ids_t = torch.tensor([padded], device=self.device)
            with torch.inference_mode():
                hidden = self.plm(input_ids=ids_t, attention_mask=mask.long(), token_type_ids=torch.zeros_like(ids_t),
                                  position_ids=torch.arange(width, device=self.device)[None]).last_hidden_state
            windows.append((start, hidden, mask))
        out: list[list[dict]] = []

        def level(prefix: list[dict], part: dict):
            for type_name, child in part.items():
                hint = "".join(f"{p['type']}: {p['span']}, " for p in prefix) + f"{type_name}: "
                hint_ids = self.tokenizer(hint, truncation=True, max_length=128)["input_ids"]
                hint_hidden = self._plm(hint_ids, 1, width)
                head_sum, tail_sum, count = np.zeros(n), np.zeros(n), np.zeros(n)
                for start, hidden, mask in windows:
                    head, tail = self._pointers(hidden, mask, hint_hidden)
                    length = min(width, n - start)
                    head_sum[start:start + length] += head[:length]
                    tail_sum[start:start + length] += tail[:length]
                    count[start:start + length] += 1
                head, tail = head_sum / count, tail_sum / count
                spans = set()
                for i in range(n):
                    if head[i] > 0.5:
                        j = next((j for j in range(i, n) if tail[j] > 0.5), None)
                        if j is not None and offsets[j][1] > offsets[i][0]:
                            spans.add((offsets[i][0], offsets[j][1]))
                for start, end in sorted(spans):
                    path = [*prefix, {"type": type_name, "span": text[start:end], "offset": [start, end]}]
                    if child is None or child == {}:
                        out.append(path)
                        continue
                    if output_all_prefix:
                        out.append(path)
                    level(path, child)

        level([], schema)
        return out


def zero_shot_batched(model, tokenizer, text: str, labels: list[str], *, template: str = "{}",
                      entailment: int = 0) -> list[float]:
    """Zero-shot as ModelScope's pipeline runs it: the n pairs of one text in one forward pass."""
    enc = tokenizer([text] * len(labels), [template.format(lab) for lab in labels], padding=True,
                    truncation="only_first", max_length=512, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        logits = model(**enc).logits.float().cpu().numpy()
    return np_softmax(logits[:, entailment], axis=0).tolist()


def cosine_pair(model, tokenizer, a: str, b: str) -> float:
    """Bi-encoder similarity of one pair: both sentences in one padded batch, mean pooling, cosine."""
    enc = tokenizer([a, b], padding=True, truncation=True, max_length=512, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state.float()
    mask = enc["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    return float(torch.nn.functional.cosine_similarity(mean[0:1], mean[1:2])[0])
