"""Write the ``tokenizer.json`` the served tokenizer loads: the checkpoint's own vocabulary, run by the
Rust ``tokenizers`` fast WordPiece (BERT normalisation, lower-casing, one token per CJK character)."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from .checkpoint import Checkpoint


def load_fast_tokenizer(checkpoint: Checkpoint) -> Tokenizer:
    if checkpoint.tokenizer_file is not None:
        tokenizer = Tokenizer.from_file(str(checkpoint.tokenizer_file))
    else:
        tokenizer = BertWordPieceTokenizer(
            str(checkpoint.vocab_file), lowercase=checkpoint.do_lower_case, handle_chinese_chars=True,
            strip_accents=None, clean_text=True,
        )._tokenizer
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def write_tokenizer_json(checkpoint: Checkpoint, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    load_fast_tokenizer(checkpoint).save(str(out))
    return out
