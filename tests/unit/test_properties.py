"""Property-based tests: the pure pieces raise nothing but InputError, and their invariants hold."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structbert_export.checkpoint import load_checkpoint
from structbert_export.tokenizer_files import write_tokenizer_json
from structbert_serving.batching import plan_chunks
from structbert_serving.errors import InputError
from structbert_serving.texts import check_texts, decode_texts
from structbert_serving.tokenization import TextTokenizer
from structbert_serving.uie import (
    MAX_SCHEMA_TYPES,
    decode_spans,
    merge_windows,
    parse_schema,
    window_starts,
)
from structbert_serving.zero_shot import MAX_LABELS, check_template, parse_labels

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=6), children, max_size=4), max_leaves=12)


@FAST
@given(st.lists(st.binary(max_size=30), min_size=1, max_size=4))
def test_decode_texts_only_input_errors(items):
    try:
        texts = decode_texts(np.array(items, dtype=object), "TEXT")
        check_texts(texts, "TEXT", max_chars=20)
    except InputError:
        return
    assert all(isinstance(t, str) and t.strip() and len(t) <= 20 for t in texts)


@FAST
@given(st.one_of(st.text(max_size=200), st.lists(st.text(max_size=10), max_size=80)))
def test_parse_labels(raw):
    try:
        labels = parse_labels(raw)
    except InputError:
        return
    assert 1 <= len(labels) <= MAX_LABELS and len(set(labels)) == len(labels)
    assert all(label == label.strip() and label for label in labels)


@FAST
@given(st.text(max_size=40))
def test_check_template(template):
    try:
        check_template(template)
    except InputError:
        return
    assert "{}" in template and isinstance(template.format("x"), str)


@FAST
@given(st.one_of(json_values, st.text(max_size=40)))
def test_parse_schema(value):
    raw = value if isinstance(value, str) else json.dumps(value)
    try:
        schema = parse_schema(raw)
    except InputError:
        return

    def walk(level, depth):
        assert isinstance(level, dict) and level and depth <= 5
        count = 0
        for key, child in level.items():
            assert isinstance(key, str) and key.strip()
            count += 1
            if child:
                count += walk(child, depth + 1)
        return count

    assert walk(schema, 1) <= MAX_SCHEMA_TYPES


@FAST
@given(st.integers(1, 3000))
def test_windows_cover_the_text(n):
    starts = window_starts(n)
    covered = np.zeros(n, bool)
    width = n if len(starts) == 1 else 384
    for s in starts:
        covered[s:s + width] = True
    assert covered.all() and starts[0] == 0 and all(b - a == 352 for a, b in itertools.pairwise(starts))
    merged = merge_windows(np.full((len(starts), width), 2.5, np.float32), starts, n)
    assert np.allclose(merged, 2.5)


@FAST
@given(st.data())
def test_decoded_spans_are_in_the_text(data):
    text = data.draw(st.text(min_size=1, max_size=40))
    n = len(text) + 2  # [CLS] one token per character [SEP]
    offsets = [(0, 0)] + [(i, i + 1) for i in range(len(text))] + [(0, 0)]
    logits = st.lists(st.floats(-3, 3, allow_nan=False), min_size=n, max_size=n)
    head, tail = np.array(data.draw(logits)), np.array(data.draw(logits))
    spans = decode_spans(head, tail, offsets)
    assert spans == sorted(set(spans))
    for start, end in spans:
        assert 0 <= start < end <= len(text)


@FAST
@given(st.lists(st.integers(1, 512), min_size=1, max_size=80), st.integers(64, 4096), st.integers(1, 64),
       st.floats(0, 2))
def test_plan_chunks_partition(lengths, budget, rows, padding):
    chunks = plan_chunks(lengths, max_tokens=budget, max_rows=rows, max_padding=padding)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(lengths)))
    assert all(len(c) <= rows for c in chunks)


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint, tmp_path_factory):
    path = write_tokenizer_json(load_checkpoint(tiny_checkpoint), tmp_path_factory.mktemp("tok") / "tokenizer.json")
    return TextTokenizer(path, max_length=32, overlength="reject", pair_truncation="only_first")


@FAST
@given(st.lists(st.lists(st.text(max_size=60), min_size=1, max_size=3), min_size=1, max_size=4))
def test_tokenizer_isolates_errors(tokenizer, groups):
    results = tokenizer.encode_many(groups)
    assert len(results) == len(groups)
    for group, result in zip(groups, results):
        if isinstance(result, InputError):
            continue
        assert result.input_ids.shape[0] == len(group) and result.input_ids.shape[1] <= 32
        assert (result.lengths >= 3).all()
