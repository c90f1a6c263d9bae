from __future__ import annotations

import numpy as np
import pytest
from transformers import BertTokenizerFast

from structbert_export.checkpoint import load_checkpoint
from structbert_export.tokenizer_files import write_tokenizer_json
from structbert_serving.errors import InputError
from structbert_serving.texts import check_texts, decode_texts
from structbert_serving.tokenization import TextTokenizer, bucket_length
from tests.conftest import sample_texts


@pytest.fixture(scope="module")
def tokenizer_json(tiny_checkpoint, tmp_path_factory):
    return write_tokenizer_json(load_checkpoint(tiny_checkpoint), tmp_path_factory.mktemp("tok") / "tokenizer.json")


def test_decode_texts():
    arr = np.array([["你好".encode()], [b"ok"]], dtype=object)
    assert decode_texts(arr, "TEXT") == ["你好", "ok"]
    with pytest.raises(InputError, match=r"TEXT\[1\] is not valid UTF-8 \(byte 0xff"):
        decode_texts(np.array([b"a", b"\xff"], dtype=object), "TEXT")
    with pytest.raises(InputError, match="shape"):
        decode_texts(np.array([[b"a", b"b"]], dtype=object), "TEXT")


def test_check_texts():
    check_texts(["好"], "TEXT")
    for bad in ["", " ", "\n\t"]:
        with pytest.raises(InputError, match="empty"):
            check_texts(["ok", bad], "TEXT")
    with pytest.raises(InputError, match="at most 10"):
        check_texts(["x" * 11], "TEXT", max_chars=10)


def test_tokenizer_matches_transformers(tiny_checkpoint, tokenizer_json):
    reference = BertTokenizerFast.from_pretrained(str(tiny_checkpoint))
    ours = TextTokenizer(tokenizer_json, max_length=512)
    texts = sample_texts()
    batch = ours.encode(texts)
    for row, text in enumerate(texts):
        want = reference(text, truncation=True, max_length=512)["input_ids"]
        n = int(batch.lengths[row])
        assert batch.input_ids[row, :n].tolist() == want
        assert (batch.input_ids[row, n:] == 0).all()
    assert batch.input_ids.shape[1] == 512  # the longest review is truncated to the maximum


def test_overlength_reject_and_buckets(tokenizer_json):
    strict = TextTokenizer(tokenizer_json, max_length=16, overlength="reject")
    with pytest.raises(InputError, match="at most 16"):
        strict.encode(["这是一个非常非常非常非常长的句子，超过了十六个字"])
    bucketed = TextTokenizer(tokenizer_json, max_length=64, length_buckets=[8, 16, 32, 64])
    assert bucketed.encode(["你好啊"]).input_ids.shape == (1, 8)
    assert bucket_length(9, [8, 16]) == 16 and bucket_length(40, [8, 16]) == 40


def test_encode_many_isolates_bad_requests(tokenizer_json):
    tok = TextTokenizer(tokenizer_json, max_length=8, overlength="reject")
    results = tok.encode_many([["短句"], ["这一句显然超过了八个词元的限制"], ["\u200b"], ["也短"]])
    assert [type(r).__name__ for r in results] == ["Batch", "InputError", "InputError", "Batch"]
    assert "no tokens" in str(results[2])
