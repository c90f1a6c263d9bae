"""End to end: the real embedded tritonserver serving text_embedding and sentence_similarity."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from structbert_client import InvalidInputError
from tests.conftest import make_client, sample_texts
from tests.reference import load_reference, mean_pooled

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    return load_reference(tiny_checkpoint)


def test_embeddings_match_pytorch(tiny_client, reference):
    texts = sample_texts(20) + sample_texts()[-2:]  # includes texts over 512 tokens (truncated)
    got = tiny_client.embed(texts)
    want = mean_pooled(*reference, texts, max_length=512)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_single_string_gives_single_result(tiny_client):
    vector = tiny_client.embed("这家酒店的早餐很好吃")
    assert vector.ndim == 1
    score = tiny_client.similarity("今天天气很好", "今天天气很好")
    assert isinstance(score, float) and score == pytest.approx(1.0, abs=1e-5)


def test_similarity_is_cosine_of_embeddings(tiny_client):
    a, b = sample_texts(6)[:3], sample_texts(6)[3:]
    scores = tiny_client.similarity(a, b)
    ea, eb = tiny_client.embed(a), tiny_client.embed(b)
    assert scores == pytest.approx(list((ea * eb).sum(1)), abs=1e-5)


def test_batch_invariance_under_concurrency(tiny_server, protocol):
    """embed([a, b, a])[0] == embed([a])[0] while texts of other lengths are in flight."""
    texts = sample_texts()
    a, b = texts[0], texts[-1]  # short and very long
    alone = make_client(tiny_server, protocol).embed([a])[0]

    def work(i: int):
        client = make_client(tiny_server, protocol)
        try:
            return client.embed([a, b, a] if i % 2 == 0 else texts[i % len(texts): i % len(texts) + 3])
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(16)))
    for result in results[::2]:
        assert np.abs(result[0] - alone).max() < 1e-5
        assert np.abs(result[2] - alone).max() < 1e-5
    stats = make_client(tiny_server, protocol).model_statistics("text_embedding")  # encodes in process
    assert int(stats["execution_count"]) <= int(stats["inference_count"])


def test_list_longer_than_batch_limit_is_chunked(tiny_server, protocol):
    client = make_client(tiny_server, protocol, batch_size=64)
    texts = [f"第{i}条评论：质量不错" for i in range(150)]
    assert client.embed(texts).shape[0] == 150


# --- bad input: INVALID_ARG with a message; other requests unaffected; server stays ready ----------

def raw_client(server, protocol):
    if protocol == "grpc":
        return grpcclient, grpcclient.InferenceServerClient(server.grpc_url)
    return httpclient, httpclient.InferenceServerClient(server.http_url)


def infer_raw(server, protocol, model, inputs: dict[str, tuple[np.ndarray, str]]):
    module, client = raw_client(server, protocol)
    tensors = []
    for name, (array, dtype) in inputs.items():
        t = module.InferInput(name, list(array.shape), dtype)
        t.set_data_from_numpy(array)
        tensors.append(t)
    return client.infer(model, tensors)


def assert_invalid(exc_info, *words):
    exc = exc_info.value
    assert str(exc.status()) in ("StatusCode.INVALID_ARGUMENT", "400"), exc
    for word in words:
        assert word in exc.message(), exc.message()


@pytest.mark.parametrize("text,words", [
    ("", ["empty"]), ("   \n\t ", ["whitespace"]), ("\u200b\u200b", ["no tokens"]),
])
def test_empty_texts_are_invalid(tiny_server, protocol, text, words):
    with pytest.raises(InferenceServerException) as info:
        infer_raw(tiny_server, protocol, "text_embedding",
                  {"TEXT": (np.array([[text.encode()]], dtype=object), "BYTES")})
    assert_invalid(info, *words)


def test_invalid_utf8(tiny_server, protocol):
    with pytest.raises(InferenceServerException) as info:
        infer_raw(tiny_server, protocol, "text_embedding",
                  {"TEXT": (np.array([[b"ok"], [b"\xff\xfebad"]], dtype=object), "BYTES")})
    assert_invalid(info, "UTF-8", "TEXT[1]")


def test_wrong_dtype_and_shape(tiny_server, protocol):
    with pytest.raises(InferenceServerException) as info:
        infer_raw(tiny_server, protocol, "text_embedding", {"TEXT": (np.ones((1, 1), np.int32), "INT32")})
    assert_invalid(info, "BYTES")
    with pytest.raises(InferenceServerException) as info:
        infer_raw(tiny_server, protocol, "text_embedding",
                  {"TEXT": (np.array([[b"a", b"b"]], dtype=object), "BYTES")})
    assert_invalid(info, "shape")


def test_batch_above_limit(tiny_server, protocol):
    texts = np.array([[b"text"]] * 65, dtype=object)
    with pytest.raises(InferenceServerException) as info:
        infer_raw(tiny_server, protocol, "text_embedding", {"TEXT": (texts, "BYTES")})
    assert_invalid(info, "batch")


def test_missing_input(tiny_server, protocol):
    with pytest.raises(InferenceServerException) as info:
        infer_raw(tiny_server, protocol, "sentence_similarity",
                  {"TEXT_A": (np.array([[b"a"]], dtype=object), "BYTES")})
    assert_invalid(info, "TEXT_B")


def test_huge_text_is_truncated(tiny_client, reference):
    text = ("房间干净，服务周到。" * 2000)[:20000]
    got = tiny_client.embed(text)
    want = mean_pooled(*reference, [text], max_length=512)[0]
    assert np.abs(got - want).max() < 1e-4


def test_client_maps_errors(tiny_client):
    with pytest.raises(InvalidInputError, match="empty"):
        tiny_client.embed(["好", " "])
    with pytest.raises(InvalidInputError, match="pair them"):
        tiny_client.similarity(["a", "b"], ["c"])
    with pytest.raises(InvalidInputError):
        tiny_client.embed([])


def test_bad_requests_do_not_hurt_good_ones_in_the_same_batch(tiny_server, protocol, reference):
    good = sample_texts(12)
    want = mean_pooled(*reference, good, max_length=512)
    bad = ["", "  ", "\u200b\u200b"]  # empty, whitespace, nothing left after normalisation

    def send(i: int):
        client = make_client(tiny_server, protocol, retries=0)
        try:
            if i % 3 == 2:
                try:
                    client.embed(bad[(i // 3) % len(bad)])
                except InvalidInputError:
                    return "invalid"
                return "accepted"
            return client.embed(good[i % len(good)])
        finally:
            client.close()

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(send, range(36)))
    for i, result in enumerate(results):
        if i % 3 == 2:
            assert result == "invalid", (i, bad[(i // 3) % len(bad)])
        else:
            assert np.abs(result - want[i % len(good)]).max() < 1e-4
    assert tiny_server.is_ready()
    assert tiny_server.process.poll() is None


def _weights_mappings(pid: int, weights) -> list[dict[str, int]]:
    """The kB figures (Rss, Pss, Private_Dirty, ...) of each mapping of ``weights`` in ``pid``."""
    out, current = [], None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            current = {} if len(head) >= 6 and head[5] == str(weights) else None
            if current is not None:
                out.append(current)
        elif current is not None and head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
            current[head[0][:-1]] = int(head[1])
    return out


def test_the_pipelines_on_one_artifact_hold_its_weights_once(tiny_server, tiny_repo):
    """text_embedding and sentence_similarity run one artifact in four stubs (two instances each):
    every stub maps the artifact's weights file whole and shares it (no private copy, no prepacked
    one), so the host holds the weights once: the four stubs' PSS over the file adds up to its size."""
    import psutil

    from structbert_serving.runtime import weights_file

    weights = weights_file(tiny_repo / "embedding_encoder" / "1" / "model.onnx")
    size_kb = weights.stat().st_size / 1024
    stubs = [p for p in psutil.Process(tiny_server.process.pid).children(recursive=True)
             if any(f"/{m}/1/model.py" in " ".join(p.cmdline()) for m in ("text_embedding", "sentence_similarity"))]
    assert len(stubs) == 4, [p.cmdline() for p in stubs]
    total_pss = 0.0
    for stub in stubs:
        maps = _weights_mappings(stub.pid, weights)
        assert maps, f"stub {stub.pid} does not map {weights.name}: its weights are a private copy"
        assert sum(m["Rss"] for m in maps) >= 0.9 * size_kb, "the weights file is not mapped whole"
        assert sum(m.get("Private_Dirty", 0) + m.get("Anonymous", 0) for m in maps) == 0
        total_pss += sum(m["Pss"] for m in maps)
    assert total_pss <= 1.1 * size_kb, f"{total_pss:.0f} kB of PSS over a {size_kb:.0f} kB weights file"
