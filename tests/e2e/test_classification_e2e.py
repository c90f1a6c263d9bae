"""End to end: zero_shot_classification (BLS over an NLI classifier) and pair_classification."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from structbert_client import InvalidInputError
from tests.conftest import DATA, make_client, sample_texts
from tests.reference import load_classifier, np_softmax, pair_logits, zero_shot_reference

pytestmark = pytest.mark.e2e

CATEGORIES = ["书籍", "平板", "手机", "水果", "洗发水", "热水器", "蒙牛", "衣服", "计算机", "酒店"]


@pytest.fixture(scope="module")
def nli(nli_checkpoint):
    return load_classifier(nli_checkpoint)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rows = [json.loads(x) for x in (DATA / "shopping_reviews_sample.jsonl").read_text().splitlines()]
    picked = [r["text"] for r in rows[::6][:8]]
    return picked + [r["text"] for r in rows[-2:]]  # two reviews far over 512 tokens


def assert_same(got: dict, want: dict):
    assert got["labels"] == want["labels"]
    assert np.abs(np.array(got["scores"]) - np.array(want["scores"])).max() < 1e-4


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_matches_pytorch(tiny_client, nli, texts, multi_label):
    got = tiny_client.classify(texts, CATEGORIES, multi_label=multi_label)
    assert len(got) == len(texts)
    for text, result in zip(texts, got):
        assert_same(result, zero_shot_reference(*nli, text, CATEGORIES, multi_label=multi_label))
    if not multi_label:
        assert sum(got[0]["scores"]) == pytest.approx(1.0, abs=1e-5)


def test_zero_shot_template_string_labels_and_single_candidate(tiny_client, nli):
    text = sample_texts(1)[0]
    template = "这篇文章的标题是{}"
    got = tiny_client.classify(text, "手机， 水果,书籍,,手机", hypothesis_template=template)
    assert_same(got, zero_shot_reference(*nli, text, ["手机", "水果", "书籍"], multi_label=False, template=template))
    single = tiny_client.classify(text, ["酒店"])  # one candidate: entailment vs contradiction
    assert_same(single, zero_shot_reference(*nli, text, ["酒店"], multi_label=True))


def test_pair_classification_matches_pytorch(tiny_client, pair_checkpoint):
    model, tokenizer = load_classifier(pair_checkpoint)
    a, b = sample_texts(8)[:4], sample_texts(8)[4:]
    a[0] = sample_texts()[-1]  # over the maximum length
    got = tiny_client.pair_classify(a, b)
    want = np_softmax(pair_logits(model, tokenizer, list(zip(a, b)), truncation="longest_first"))
    for probs, ref in zip(got, want):
        assert list(probs) == ["0", "1"]
        assert np.abs(np.array([probs["0"], probs["1"]]) - ref).max() < 1e-4
    similar = tiny_client.similarity(a, b, method="pair")
    assert similar == pytest.approx([p["1"] for p in got], abs=1e-6)
    assert isinstance(tiny_client.pair_classify("今天天气很好", "今天天气不错"), dict)


def test_text_classification_matches_pytorch_and_ignores_its_batch(tiny_client, text_classification_checkpoint):
    import torch

    model, tokenizer = load_classifier(text_classification_checkpoint)
    texts = [*sample_texts(5), sample_texts()[-1]]  # the last over the maximum length: truncated
    got = tiny_client.text_classify(texts)
    for text, probs in zip(texts, got):
        enc = tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
        with torch.inference_mode():
            ref = np_softmax(model(**enc).logits[0].numpy())
        assert list(probs) == ["负面", "正面"]  # the checkpoint's id2label, in logit order
        assert np.abs(np.array(list(probs.values())) - ref).max() < 1e-4
    alone = tiny_client.text_classify(texts[0])
    assert tiny_client.text_classify([texts[0], texts[3], texts[0]])[2] == pytest.approx(alone, abs=1e-6)
    with pytest.raises(InvalidInputError, match=r"TEXT\[1\] is empty"):
        tiny_client.text_classify(["好", " "])


def test_pairs_of_concurrent_requests_share_encoder_batches(tiny_server, protocol):
    """Concurrent requests meet in one dynamic batch of the public model, which encodes all their
    (text, hypothesis) pairs together in its own stub (embedded flavour: the encoder runs in process)."""
    texts = sample_texts(16)
    model = "zero_shot_classification"
    before = make_client(tiny_server, protocol).model_statistics(model)

    def one(text):
        client = make_client(tiny_server, protocol)
        try:
            return client.classify(text, CATEGORIES)
        finally:
            client.close()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, texts))
    assert all(len(r["labels"]) == 10 for r in results)
    after = make_client(tiny_server, protocol).model_statistics(model)
    inferences = int(after["inference_count"]) - int(before.get("inference_count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert inferences == 16  # 16 texts, one row each (their 160 pairs are encoded in the same executions)
    assert executions < inferences, (executions, inferences)  # fewer executions than requests
    assert int(make_client(tiny_server, protocol).model_statistics("zero_shot_classifier")
               .get("inference_count", 0)) == 0  # no BLS hop to the encoder model


@pytest.mark.parametrize("labels,template,match", [
    ([], "{}", "empty list|no label"),
    (" , ，", "{}", "no label"),
    (["手机"], "这篇文章的标题是", "placeholder"),
    ([f"类别{i}" for i in range(65)], "{}", "at most 64"),
    ('["手机", ', "{}", "not valid JSON"),
])
def test_zero_shot_bad_input(tiny_client, labels, template, match):
    with pytest.raises(InvalidInputError, match=match):
        tiny_client.classify("这款手机很好用", labels, hypothesis_template=template)


def test_zero_shot_empty_text_and_duplicates(tiny_client):
    with pytest.raises(InvalidInputError, match="empty"):
        tiny_client.classify(" ", ["手机"])
    result = tiny_client.classify("这款手机很好用", ["手机", "水果", "手机", " 水果 "])
    assert sorted(result["labels"]) == ["手机", "水果"]  # duplicates removed, first kept


def test_bad_zero_shot_requests_do_not_hurt_others(tiny_server, protocol, nli):
    text = sample_texts(1)[0]
    want = zero_shot_reference(*nli, text, CATEGORIES[:4], multi_label=False)

    def send(i):
        client = make_client(tiny_server, protocol, retries=0)
        try:
            if i % 2:
                with pytest.raises(InvalidInputError):
                    client.classify(text, ["手机"], hypothesis_template="no placeholder")
                return None
            return client.classify(text, CATEGORIES[:4])
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(16)))
    for result in results[::2]:
        assert_same(result, want)
    assert tiny_server.is_ready()
