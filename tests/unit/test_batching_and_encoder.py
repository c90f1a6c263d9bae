from __future__ import annotations

import numpy as np
import pytest

from structbert_serving.batching import gather_padded, plan_chunks
from structbert_serving.encoder import EncoderSettings, RaggedEncoder
from structbert_serving.errors import InputError
from structbert_serving.similarity import cosine

NAMES = ["INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS"]


def test_plan_chunks_covers_every_row_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=300)
    chunks = plan_chunks(lengths, max_tokens=1024, max_rows=16)
    flat = np.concatenate(chunks)
    assert sorted(flat.tolist()) == list(range(300))
    for chunk in chunks:
        assert len(chunk) <= 16
        assert len(chunk) == 1 or len(chunk) * lengths[chunk].max() <= 1024
    maxima = [lengths[c].max() for c in chunks]
    assert maxima == sorted(maxima)


def test_gather_padded():
    out = gather_padded([np.array([1, 2, 3]), np.array([4])], 4, pad=9)
    assert out.tolist() == [[1, 2, 3, 9], [4, 9, 9, 9]]


class FakeRunner:
    """Pooled output = sum of ids under the mask; per-token output = ids * 2. Records call widths."""

    device = "cpu"
    output_names = ["POOLED", "TOKENS"]

    def __init__(self):
        self.widths = []

    def run(self, feeds):
        ids, mask = feeds["INPUT_IDS"], feeds["ATTENTION_MASK"]
        self.widths.append(ids.shape)
        return {"POOLED": (ids * mask).sum(1, keepdims=True).astype(np.float32),
                "TOKENS": (ids * 2)[..., None].astype(np.float32)}


def request(rows):
    width = max(len(r) for r in rows)
    ids = gather_padded([np.array(r, dtype=np.int64) for r in rows], width)
    mask = (ids != 0).astype(np.int64)
    return {"INPUT_IDS": ids, "ATTENTION_MASK": mask, "TOKEN_TYPE_IDS": np.zeros_like(ids)}


def test_ragged_encoder_splits_results_back():
    runner = FakeRunner()
    groups = {n: "ATTENTION_MASK" for n in [*NAMES, "TOKENS"]}
    encoder = RaggedEncoder(runner, NAMES, EncoderSettings(max_tokens=8, max_rows=4, mask_groups=groups))
    reqs = [request([[1, 2, 3]]), request([[5], [6, 7, 8, 9, 10]]), request([[4, 4]])]
    bad = {"INPUT_IDS": np.zeros((1, 3), np.int64), "ATTENTION_MASK": np.zeros((1, 2), np.int64),
           "TOKEN_TYPE_IDS": np.zeros((1, 3), np.int64)}
    results = encoder.run([reqs[0], bad, reqs[1], reqs[2]])
    assert isinstance(results[1], InputError)
    assert results[0]["POOLED"].ravel().tolist() == [6]
    assert results[2]["POOLED"].ravel().tolist() == [5, 40]
    assert results[3]["POOLED"].ravel().tolist() == [8]
    assert results[2]["TOKENS"].shape == (2, 5, 1)  # cut back to the request's own length
    assert results[2]["TOKENS"][0, :, 0].tolist() == [10, 0, 0, 0, 0]
    assert all(rows * width <= 8 or rows == 1 for rows, width in runner.widths)


def test_cosine():
    a = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)
    assert cosine(a, a * 3) == pytest.approx([1.0, 1.0])


def test_two_mask_groups_pad_independently():
    """SiameseUIE's cross part: text and hint sequences padded separately, outputs cut to the text."""

    class CrossRunner:
        output_names = ["HEAD"]
        device = "cpu"

        def run(self, feeds):
            assert feeds["TEXT_MASK"].shape[1] == feeds["TEXT_HIDDEN"].shape[1]
            assert feeds["HINT_MASK"].shape[1] == feeds["HINT_HIDDEN"].shape[1]
            head = feeds["TEXT_HIDDEN"][..., 0] + feeds["HINT_HIDDEN"][..., 0].sum(1, keepdims=True)
            return {"HEAD": head}

    groups = {"TEXT_HIDDEN": "TEXT_MASK", "TEXT_MASK": "TEXT_MASK", "HINT_HIDDEN": "HINT_MASK",
              "HINT_MASK": "HINT_MASK", "HEAD": "TEXT_MASK"}
    names = ["TEXT_HIDDEN", "TEXT_MASK", "HINT_HIDDEN", "HINT_MASK"]

    def req(text_len, hint_len, pad_text=0):
        t = np.ones((1, text_len + pad_text, 2), np.float32)
        tm = np.zeros((1, text_len + pad_text), np.int64)
        tm[:, :text_len] = 1
        return {"TEXT_HIDDEN": t, "TEXT_MASK": tm, "HINT_HIDDEN": np.ones((1, hint_len, 2), np.float32),
                "HINT_MASK": np.ones((1, hint_len), np.int64)}

    encoder = RaggedEncoder(CrossRunner(), names, EncoderSettings(max_tokens=100, max_rows=8, mask_groups=groups))
    out = encoder.run([req(5, 3), req(2, 7, pad_text=3)])
    assert out[0]["HEAD"].tolist() == [[4.0] * 5]
    assert out[1]["HEAD"].shape == (1, 5) and out[1]["HEAD"][0, :2].tolist() == [8.0, 8.0]


def test_padding_bound_keeps_chunks_tight():
    lengths = [15, 18, 20, 22, 23, 32, 33, 35, 49, 50, 63, 69, 93, 97, 112, 129, 153, 169]
    tight = plan_chunks(lengths, max_tokens=16384, max_rows=64, max_padding=0.1)
    for chunk in tight:
        padded = len(chunk) * max(lengths[i] for i in chunk)
        assert len(chunk) == 1 or padded <= 1.1 * sum(lengths[i] for i in chunk)
    assert len(plan_chunks(lengths, max_tokens=16384, max_rows=64)) == 1  # unbounded: one chunk


def test_warm_up_runs_every_shape_through_the_encoder_from_the_model_config():
    from structbert_serving.encoder import warm_up, warmup_feeds

    # as Triton hands the config to the model: int64 dims come as strings in protobuf JSON
    inputs = [{"name": n, "data_type": "TYPE_INT64", "dims": ["-1"]} for n in NAMES]
    feeds = warmup_feeds(inputs, 3, 20)
    assert {k: v.shape for k, v in feeds.items()} == {n: (3, 20) for n in NAMES}
    assert feeds["ATTENTION_MASK"].min() == 1
    hidden = warmup_feeds([{"name": "TEXT_HIDDEN", "data_type": "TYPE_FP32", "dims": ["-1", "8"]}], 2, 5)
    assert hidden["TEXT_HIDDEN"].shape == (2, 5, 8) and hidden["TEXT_HIDDEN"].dtype == np.float32
    runner = FakeRunner()
    warm_up(RaggedEncoder(runner, NAMES, EncoderSettings(max_rows=4)), inputs, shapes=[(1, 16), (8, 64)])
    assert runner.widths == [(1, 16), (1, 16), (4, 64), (4, 64)]  # each shape twice; rows capped by max_rows


def test_onnx_sessions_share_their_weights_and_give_back_activations():
    """What holds an artifact's weights once per host (runtime.OrtRunner): no prepacked private copy,
    no CPU arena keeping the largest batch's high-water mark, glibc returning freed blocks, the
    weights file mapped whole; ``prepack_weights``/``memory_arena`` bring ONNX Runtime's defaults back."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from structbert_serving.runtime import OrtRunner, return_freed_memory, weights_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        w = numpy_helper.from_array(np.ones((64, 64), np.float32), "W")
        graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g",
                                  [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 64])],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 64])], [w])
        onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path),
                        save_as_external_data=True, location="model.onnx.data", size_threshold=0)
        lean = OrtRunner(path, device="cpu")
        options = lean.session.get_session_options()
        assert options.get_session_config_entry("session.disable_prepacking") == "1"
        assert not options.enable_cpu_mem_arena
        assert return_freed_memory()
        assert lean.weights is not None and len(lean.weights) == weights_file(path).stat().st_size
        out = lean.run({"X": np.ones((2, 64), np.float32)})["Y"]
        np.testing.assert_allclose(out, 64.0)
        default = OrtRunner(path, device="cpu", prepack_weights=True, memory_arena=True)
        options = default.session.get_session_options()
        with pytest.raises(RuntimeError, match="disable_prepacking"):  # not set: ORT prepacks
            options.get_session_config_entry("session.disable_prepacking")
        assert options.enable_cpu_mem_arena and default.weights is None


def test_warm_up_at_the_budget_runs_the_largest_batch_a_call_can_get():
    from structbert_serving.encoder import budget_shape, warm_up

    inputs = [{"name": n, "data_type": "TYPE_INT64", "dims": ["-1"]} for n in NAMES]
    settings = EncoderSettings(max_tokens=256, max_rows=64)
    assert budget_shape(settings, 64) == (4, 64)  # 4 rows x 64 tokens = the 256-token budget
    assert budget_shape(EncoderSettings(max_tokens=100, max_rows=64), 512) == (1, 512)  # at least one row
    runner = FakeRunner()
    warm_up(RaggedEncoder(runner, NAMES, settings), inputs, shapes=[(1, 16)], budget_length=64)
    assert runner.widths == [(1, 16), (1, 16), (4, 64)]  # the budget batch once, after the usual shapes
