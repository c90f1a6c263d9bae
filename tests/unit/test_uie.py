from __future__ import annotations

import numpy as np
import pytest

from structbert_serving.errors import InputError
from structbert_serving.uie import (
    EncodedText,
    decode_spans,
    hint_feeds,
    hint_text,
    merge_windows,
    parse_schema,
    window_starts,
)


def test_window_starts():
    assert window_starts(10) == [0] and window_starts(384) == [0]
    assert window_starts(385) == [0, 352]
    assert window_starts(736) == [0, 352]
    assert window_starts(737) == [0, 352, 704]


def test_merge_windows_averages_overlaps():
    values = np.array([np.full(384, 1.0), np.full(384, 3.0)], np.float32)
    merged = merge_windows(values, [0, 352], 400)
    assert merged.shape == (400,)
    assert merged[351] == 1.0 and merged[352] == 2.0 and merged[383] == 2.0 and merged[384] == 3.0


def test_encoded_text_windows_pad_the_last():
    text = EncodedText("x", np.arange(1, 401), [(i, i + 1) for i in range(400)], window_starts(400))
    ids, mask = text.windows()
    assert text.width == 384 and ids.shape == (2, 384)
    assert mask[1].sum() == 400 - 352 and ids[1, 48:].sum() == 0


def test_decode_spans():
    offsets = [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (0, 0)]
    head = np.array([0.0, 0.9, 0.0, 0.7, 0.0, 0.0])
    tail = np.array([0.0, 0.0, 0.6, 0.0, 0.8, 0.0])
    assert decode_spans(head, tail, offsets) == [(0, 2), (2, 4)]
    assert decode_spans(head, np.zeros(6), offsets) == []  # no tail: no span
    assert decode_spans(np.array([0.9, 0, 0, 0, 0, 0]), np.array([0.9, 0, 0, 0, 0, 0]), offsets) == []  # [CLS]


def test_hints():
    assert hint_text([], "人物") == "人物: "
    prefix = [{"type": "人物", "span": "谷口清太郎", "offset": [18, 23]}]
    assert hint_text(prefix, "任职") == "人物: 谷口清太郎, 任职: "
    feeds = hint_feeds([[101, 5, 102], [101, 102]], [40, 384])
    assert feeds["POSITION_IDS"].tolist() == [[40, 41, 42], [384, 385, 386]]
    assert feeds["TOKEN_TYPE_IDS"].min() == 1 and feeds["ATTENTION_MASK"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_parse_schema():
    assert parse_schema('{"人物": {"任职": null}, "组织机构": {}}') == {"人物": {"任职": None}, "组织机构": {}}
    for raw, match in [("[1]", "JSON object"), ("{", "not valid JSON"), ('{" ": null}', "non-empty"),
                       ('{"a": true}', "not bool"), ('{"a": "b"}', "not str")]:
        with pytest.raises(InputError, match=match):
            parse_schema(raw)
