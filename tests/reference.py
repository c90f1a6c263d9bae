"""PyTorch references computed independently of the export code: transformers' own loading
(``from_pretrained``) and tokenizer (``BertTokenizerFast`` / ``AutoTokenizer``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, BertTokenizerFast


def load_reference(model_dir: Path):
    model_dir = Path(model_dir)
    raw = json.loads((model_dir / "config.json").read_text())
    raw["model_type"] = "bert"
    config = BertConfig(**{k: v for k, v in raw.items() if k != "model_type"})
    model = BertModel.from_pretrained(str(model_dir), config=config, add_pooling_layer=False).eval()
    if (model_dir / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    else:
        # (transformers 5 ignores vocab_file= in the constructor; from_pretrained reads vocab.txt)
        tokenizer = BertTokenizerFast.from_pretrained(str(model_dir), do_lower_case=True)
    return model, tokenizer


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
