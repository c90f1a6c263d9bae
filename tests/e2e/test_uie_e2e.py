"""End to end: information_extraction (SiameseUIE BLS) against an independent PyTorch reference."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from structbert_client import InvalidInputError, paths_to_records
from tests.conftest import export_repo, jsonl, make_client
from tests.reference import SiameseUieReference

pytestmark = pytest.mark.e2e

NER = {"人物": None, "地理位置": None, "组织机构": None}
NESTED = {"人物": {"任职": None, "地理位置": None}, "组织机构": {"地理位置": None}}


@pytest.fixture(scope="module")
def reference(uie_checkpoint):
    return SiameseUieReference(uie_checkpoint)


@pytest.fixture(scope="module")
def msra() -> list[str]:
    return jsonl("msra_ner.jsonl")


@pytest.fixture(scope="module")
def long_texts() -> list[str]:
    return jsonl("hotel_reviews_long.jsonl")  # 584-1323 characters: 2-4 windows each


@pytest.fixture(scope="module")
def msra_reference(reference, msra):
    return [reference.extract(text, NER) for text in msra]


def test_all_msra_texts_match_pytorch(tiny_server, protocol, msra, msra_reference):
    client = make_client(tiny_server, protocol, batch_size=50)

    def chunk(start):
        return make_client(tiny_server, protocol, batch_size=50).extract(msra[start:start + 50], NER)

    with ThreadPoolExecutor(4) as pool:
        got = [paths for part in pool.map(chunk, range(0, len(msra), 50)) for paths in part]
    assert len(got) == 1000
    mismatches = [i for i, (g, w) in enumerate(zip(got, msra_reference)) if g != w]
    assert not mismatches, (len(mismatches), mismatches[:5])
    assert sum(1 for w in msra_reference if w) > 100  # spans do appear: decoding is exercised
    client.close()


@pytest.fixture(scope="module")
def nested_reference(reference, msra, long_texts) -> tuple[list[str], dict[bool, list]]:
    """PyTorch's answers once for both protocols: the texts, and their paths by ``output_all_prefix``."""
    texts = long_texts + msra[:60]
    return texts, {prefix: [reference.extract(t, NESTED, prefix) for t in texts] for prefix in (False, True)}


def test_nested_schema_and_long_texts_match_pytorch(tiny_client, nested_reference, long_texts):
    texts, wanted = nested_reference
    for output_all_prefix, want in wanted.items():
        got = tiny_client.extract(texts, NESTED, output_all_prefix=output_all_prefix)
        assert got == want
    assert any(len(path) == 2 for paths in want for path in paths)  # the second level found spans
    assert any(paths for paths in want[: len(long_texts)])  # windows of long texts found spans


def test_offsets_are_spans(tiny_client, msra):
    for text, paths in zip(msra[:100], tiny_client.extract(msra[:100], NER)):
        for path in paths:
            for item in path:
                start, end = item["offset"]
                assert 0 <= start < end <= len(text) and text[start:end] == item["span"]


def test_concurrent_requests_merge_in_encoder_and_cross(tiny_server, protocol, msra):
    client = make_client(tiny_server, protocol)
    before = {m: client.model_statistics(m) for m in ("uie_encoder", "uie_cross")}

    def one(i):
        c = make_client(tiny_server, protocol)
        try:
            return c.extract(msra[i * 3:(i + 1) * 3], NER)
        finally:
            c.close()

    with ThreadPoolExecutor(8) as pool:
        assert len(list(pool.map(one, range(8)))) == 8
    for model, old in before.items():
        new = client.model_statistics(model)
        inferences = int(new["inference_count"]) - int(old.get("inference_count", 0))
        executions = int(new["execution_count"]) - int(old.get("execution_count", 0))
        assert 0 < executions < inferences, (model, executions, inferences)


@pytest.mark.parametrize("schema,match", [
    ("{not json", "not valid JSON"),
    ('["人物"]', "must be a JSON object"),
    ("{}", "empty object"),
    ('{"": null}', "non-empty string"),
    ('{"人物": 3}', "object or null, not int"),
    ('{"人物": ["任职"]}', "object or null, not list"),
    ('{"a": {"b": {"c": {"d": {"e": {"f": null}}}}}}', "deeper than 5"),
    ({f"类型{i}": None for i in range(65)}, "at most 64"),
    ({1: None}, "int key"),
])
def test_bad_schemas(tiny_client, schema, match):
    with pytest.raises(InvalidInputError, match=match):
        tiny_client.extract("谷口清太郎是名古屋铁道会长。", schema)


def test_bad_texts_and_others_unaffected(tiny_server, protocol, msra, msra_reference):
    def send(i):
        client = make_client(tiny_server, protocol, retries=0)
        try:
            if i % 3 == 0:
                with pytest.raises(InvalidInputError, match="empty"):
                    client.extract(" ", NER)
                return None
            if i % 3 == 1:
                with pytest.raises(InvalidInputError, match="at most 8192 tokens"):
                    client.extract("长" * 9000, NER)
                return None
            return client.extract(msra[i], NER)
        finally:
            client.close()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(send, range(18)))
    for i, result in enumerate(results):
        if i % 3 == 2:
            assert result == msra_reference[i]
    assert tiny_server.is_ready()


def test_fp16_spans_agree_with_fp32(tmp_path_factory, uie_checkpoint, msra, msra_reference, capsys):
    """End to end through a server on the FP16 export: report span agreement with FP32."""
    from structbert_serving.embedded_server import EmbeddedServer

    repo = export_repo(tmp_path_factory.mktemp("uie-fp16"), task="uie", model_dir=uie_checkpoint, precision="fp16")
    texts, want = msra[:300], msra_reference[:300]
    with EmbeddedServer(repo) as server:
        got = make_client(server, "grpc", batch_size=50).extract(texts, NER)
    same_texts = sum(g == w for g, w in zip(got, want)) / len(texts)
    spans = lambda paths: {(p[0]["type"], *p[0]["offset"]) for p in paths}  # noqa: E731
    found = sum(len(spans(g) & spans(w)) for g, w in zip(got, want))
    total = sum(len(spans(g) | spans(w)) for g, w in zip(got, want))
    with capsys.disabled():
        print(f"\nUIE FP16 vs FP32 (synthetic tiny, 300 MSRA texts): identical paths for {same_texts:.1%} of texts, "
              f"span Jaccard {found / max(total, 1):.4f}")
    assert same_texts >= 0.95


def test_paths_to_records():
    paths = [[{"type": "人物", "span": "谷口清太郎", "offset": [18, 23]}],
             [{"type": "人物", "span": "谷口清太郎", "offset": [18, 23]}, {"type": "任职", "span": "会长", "offset": [16, 18]}],
             [{"type": "组织机构", "span": "北大", "offset": [8, 10]}]]
    assert paths_to_records(paths) == [{"人物": "谷口清太郎", "任职": "会长"}, {"组织机构": "北大"}]
    assert len(paths_to_records(paths, leaves_only=False)) == 3
