"""PyTorch references computed independently of the export code: transformers' own loading
(``from_pretrained``) and tokenizer (``BertTokenizerFast`` / ``AutoTokenizer``)."""

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


def load_classifier(model_dir: Path):
    model_dir = Path(model_dir)
    model = BertForSequenceClassification.from_pretrained(str(model_dir), config=_config(model_dir)).eval()
    return model, _tokenizer(model_dir)


def pair_logits(model, tokenizer, pairs: list[tuple[str, str]], *, truncation: str, max_length: int = 512
                ) -> np.ndarray:
    out = []
    for a, b in pairs:
        enc = tokenizer(a, b, truncation=truncation, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            out.append(model(**enc).logits[0].float().numpy())
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


def load_reference(model_dir: Path):
    model_dir = Path(model_dir)
    model = BertModel.from_pretrained(str(model_dir), config=_config(model_dir), add_pooling_layer=False).eval()
    return model, _tokenizer(model_dir)


def mean_pooled(model, tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """Mean pooling over the attention mask (float32), L2-normalised; one text at a time."""
    out = []
    for text in texts:
        enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1)
        out.append(torch.nn.functional.normalize(mean, dim=-1)[0].numpy())
    return np.stack(out)
