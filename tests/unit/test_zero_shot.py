from __future__ import annotations

import numpy as np
import pytest
from transformers import BertTokenizerFast

from structbert_export.checkpoint import load_checkpoint
from structbert_export.tokenizer_files import write_tokenizer_json
from structbert_serving.classification import id2label_list, softmax
from structbert_serving.errors import InputError
from structbert_serving.tokenization import TextTokenizer
from structbert_serving.zero_shot import NliIndices, check_template, hypotheses, parse_labels, score
from tests.conftest import sample_texts


def test_parse_labels_forms():
    assert parse_labels("手机,水果，书籍") == ["手机", "水果", "书籍"]
    assert parse_labels(' 手机 , ,水果,手机 ') == ["手机", "水果"]
    assert parse_labels('["手机", "水 果", "手机"]') == ["手机", "水 果"]
    assert parse_labels(["a", " b "]) == ["a", "b"]


@pytest.mark.parametrize("raw,match", [
    ("", "no label"), (" ,，, ", "no label"), ('["a", 1]', "list of strings"), ('[ "a"', "not valid JSON"),
    (",".join(f"l{i}" for i in range(65)), "at most 64"), ("x" * 201, "characters"),
])
def test_parse_labels_errors(raw, match):
    with pytest.raises(InputError, match=match):
        parse_labels(raw)


def test_templates():
    assert hypotheses(["手机"], check_template("这篇文章的标题是{}")) == ["这篇文章的标题是手机"]
    for bad in ["no placeholder", "{0} {1}", "{name}"]:
        with pytest.raises(InputError):
            check_template(bad)


def test_score_single_and_multi_label():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.0, 0.5], [-1.0, 0.0, 3.0]], np.float32)
    single = score(logits, ["a", "b", "c"], multi_label=False)
    want = softmax(logits[:, 0], axis=0)
    assert single["labels"] == ["a", "b", "c"] and single["scores"] == pytest.approx(sorted(want, reverse=True))
    multi = score(logits, ["a", "b", "c"], multi_label=True)
    ent = softmax(logits[:, [2, 0]], axis=-1)[:, 1]
    assert multi["scores"] == pytest.approx(sorted(ent, reverse=True))
    assert multi["scores"][1] == pytest.approx(0.5)
    assert score(logits[:1], ["a"], multi_label=False)["scores"] == pytest.approx([ent[0]])


def test_nli_indices():
    assert NliIndices.from_label2id({"entailment": 0, "neutral": 1, "contradiction": 2}) == NliIndices(0, 2)
    assert NliIndices.from_label2id({"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2}) == NliIndices(2, 0)
    assert NliIndices.from_label2id({"LABEL_0": 0}) == NliIndices(0, 2)
    assert NliIndices.from_label2id({"entailment": 1}, entailment=2, contradiction=1) == NliIndices(2, 1)
    assert id2label_list({"0": "x", 1: "y"}, 3) == ["x", "y", "2"]


@pytest.mark.parametrize("strategy", ["only_first", "longest_first"])
def test_pair_tokenization_matches_transformers(tiny_checkpoint, tmp_path, strategy):
    path = write_tokenizer_json(load_checkpoint(tiny_checkpoint), tmp_path / "tokenizer.json")
    ours = TextTokenizer(path, max_length=64, pair_truncation=strategy)
    ref = BertTokenizerFast.from_pretrained(str(tiny_checkpoint))
    texts = sample_texts()
    pairs = [(texts[-1], "这篇文章的标题是手机"), (texts[0], texts[1])]
    if strategy == "longest_first":  # both long: both get cut
        pairs.append((texts[-2], texts[-3]))
    batch = ours.encode(pairs)
    for row, (a, b) in enumerate(pairs):
        want = ref(a, b, truncation=strategy, max_length=64)
        n = int(batch.lengths[row])
        assert batch.input_ids[row, :n].tolist() == want["input_ids"]
        assert batch.token_type_ids[row, :n].tolist() == want["token_type_ids"]


def test_hypothesis_longer_than_max_is_an_input_error(tiny_checkpoint, tmp_path):
    path = write_tokenizer_json(load_checkpoint(tiny_checkpoint), tmp_path / "tokenizer.json")
    tok = TextTokenizer(path, max_length=16, pair_truncation="only_first")
    results = tok.encode_many([[("短文本", "短假设")], [("文本", "一个非常非常非常非常非常非常非常长的假设句子")]])
    assert type(results[0]).__name__ == "Batch"
    assert isinstance(results[1], InputError) and "only the first text may be truncated" in str(results[1])


def test_query_longer_than_max_is_an_input_error_and_passages_are_cut(tiny_checkpoint, tmp_path):
    """Reranking (only_second): the passage is cut, never the query."""
    path = write_tokenizer_json(load_checkpoint(tiny_checkpoint), tmp_path / "tokenizer.json")
    tok = TextTokenizer(path, max_length=16, pair_truncation="only_second")
    query = "酒店怎么样"
    ok, bad = tok.encode_many([[(query, "一个非常非常非常非常非常非常非常长的段落")], [("一个非常非常非常非常非常非常长的查询", "短")]])
    assert ok.lengths.tolist() == [16] and ok.token_type_ids[0].tolist().count(0) == len(query) + 2
    assert isinstance(bad, InputError) and "only the second text may be truncated" in str(bad)
