"""The Python-backend adapters (``structbert_serving/triton_models``) against a fake
``triton_python_backend_utils`` and fake encoders: per-request error isolation, chunked BLS
fan-out, length buckets, error codes passed through. No server."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json

import numpy as np
import pytest
from google.protobuf import json_format

from structbert_export import pbtxt
from structbert_export.checkpoint import load_checkpoint
from structbert_export.repository import ServingOptions, encoder_params, python_model, tokenizer_params
from structbert_export.specs import spec_for
from structbert_export.tokenizer_files import write_tokenizer_json
from tests import fake_pb_utils as fake
from tests.fake_pb_utils import request, texts

HIDDEN = 4


@pytest.fixture
def pb():
    return fake.install()


def adapter(name: str):
    return importlib.import_module(f"structbert_serving.triton_models.{name}").TritonPythonModel()


def write_model(tmp_path, checkpoint_dir, public: str, family: str, *, opts: ServingOptions | None = None,
                extra: dict | None = None, pair_truncation: str = "longest_first", outputs=None):
    """Write a public model as export does and return ``initialize``'s args for it."""
    opts = opts or ServingOptions()
    checkpoint = load_checkpoint(checkpoint_dir)
    spec = spec_for(family)
    names = {t: t for t in (*spec.input_names, *spec.output_names)}
    fields = {**tokenizer_params(checkpoint.max_seq_length, opts, pair_truncation),
              **encoder_params(spec, names, opts), **(extra or {})}
    kind = importlib.import_module(f"structbert_serving.triton_models.{public}").TritonPythonModel.params_type
    declared = {f.name for f in dataclasses.fields(kind)}
    params = kind(**{k: v for k, v in fields.items() if k in declared})
    python_model(tmp_path, public, inputs=[pbtxt.tensor("TEXT", "bytes", [1])],
                 outputs=outputs or [pbtxt.tensor("EMBEDDING", "float32", [HIDDEN])], opts=opts, params=params,
                 tokenizer=lambda path: write_tokenizer_json(checkpoint, path))
    config = json_format.MessageToDict(pbtxt.parse((tmp_path / public / "config.pbtxt").read_text()),
                                       preserving_proto_field_name=True)
    return fake.model_args(tmp_path / public, config)


def run(model, requests):
    result = model.execute(requests)  # like the stub: a coroutine runs on an event loop, a list is the answer
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


def output(response, name):
    assert not response.has_error(), response.error().message()
    return fake.get_output_tensor_by_name(response, name).as_numpy()


def length_embedding(feeds):
    """A fake embedding encoder: [real length, 1, 0, 0] per row."""
    lengths = feeds["ATTENTION_MASK"].sum(1)
    ones = np.ones_like(lengths)
    return {"EMBEDDING": np.stack([lengths, ones, 0 * ones, 0 * ones], axis=1).astype(np.float32)}


def test_text_embedding_isolates_bad_requests_and_chunks_rows(pb, tmp_path, tiny_checkpoint):
    args = write_model(tmp_path, tiny_checkpoint, "text_embedding", "embedding",
                       opts=ServingOptions(max_batch_size=64), extra={"encoder_max_batch_size": 2})
    fake.MODELS["embedding_encoder"] = length_embedding
    model = adapter("text_embedding")
    model.initialize(args)
    responses = run(model, [request(TEXT=texts("今天天气很好", "好")), request(TEXT=texts("  ")),
                            request(TEXT=texts(b"\xff")), request(TEXT=texts("酒店"))])
    assert output(responses[0], "EMBEDDING")[:, 0].tolist() == [8, 3]  # [CLS] + chars + [SEP]
    assert output(responses[3], "EMBEDDING")[:, 0].tolist() == [4]
    for bad, words in ((responses[1], "empty or only whitespace"), (responses[2], "not valid UTF-8")):
        assert bad.has_error() and words in bad.error().message()
        assert bad.error().code() == fake.TritonError.INVALID_ARG
    assert [shape["INPUT_IDS"][0] for _, shape in fake.CALLS] == [2, 1]  # 3 good rows, chunks of 2


def test_sentence_similarity_is_the_cosine_of_both_columns(pb, tmp_path, tiny_checkpoint):
    args = write_model(tmp_path, tiny_checkpoint, "sentence_similarity", "embedding",
                       outputs=[pbtxt.tensor("SCORE", "float32", [1])])
    fake.MODELS["embedding_encoder"] = length_embedding
    model = adapter("sentence_similarity")
    model.initialize(args)
    same = request(TEXT_A=texts("今天天气很好"), TEXT_B=texts("今天天气很好"))
    other = request(TEXT_A=texts("好"), TEXT_B=texts("今天天气很好很好很好"))
    mismatched = request(TEXT_A=texts("a", "b"), TEXT_B=texts("c"))
    responses = run(model, [same, other, mismatched])
    assert output(responses[0], "SCORE")[0, 0] == pytest.approx(1.0)
    assert output(responses[1], "SCORE")[0, 0] < 0.99
    assert responses[2].has_error() and "send them paired one to one" in responses[2].error().message()
    assert len(fake.CALLS) == 1  # both columns of both good requests: one encoder call


def test_pair_classification_tokenises_pairs_and_names_labels(pb, tmp_path, pair_checkpoint):
    args = write_model(tmp_path, pair_checkpoint, "pair_classification", "pair-classification",
                       extra={"labels": ["0", "1"]},
                       outputs=[pbtxt.tensor("PROBS", "float32", [2]), pbtxt.tensor("LABELS", "bytes", [2])])
    seen = {}

    def classifier(feeds):
        seen.update(feeds)
        return {"LOGITS": np.tile(np.array([[0.0, np.log(3.0)]], np.float32), (len(feeds["INPUT_IDS"]), 1))}

    fake.MODELS["pair_classifier"] = classifier
    model = adapter("pair_classification")
    model.initialize(args)
    [response] = run(model, [request(TEXT_A=texts("今天天气很好"), TEXT_B=texts("不错"))])
    assert output(response, "PROBS")[0].tolist() == pytest.approx([0.25, 0.75])
    assert output(response, "LABELS")[0].tolist() == [b"0", b"1"]
    assert seen["TOKEN_TYPE_IDS"][0].tolist() == [0] * 8 + [1] * 3  # [CLS] a [SEP] | b [SEP]


def test_an_overloaded_encoder_is_passed_on_as_unavailable(pb, tmp_path, tiny_checkpoint):
    args = write_model(tmp_path, tiny_checkpoint, "text_embedding", "embedding")

    def refuse(_):
        raise fake.TritonError("Exceeds maximum queue size", fake.TritonError.UNAVAILABLE)

    fake.MODELS["embedding_encoder"] = refuse
    model = adapter("text_embedding")
    model.initialize(args)
    responses = run(model, [request(TEXT=texts("一")), request(TEXT=texts("")), request(TEXT=texts("二"))])
    assert [r.error().code() for r in responses] == [fake.TritonError.UNAVAILABLE, fake.TritonError.INVALID_ARG,
                                                     fake.TritonError.UNAVAILABLE]
    assert "maximum queue size" in responses[0].error().message()


def test_bls_takes_its_encoder_outputs_in_cpu_memory(pb, tmp_path, tiny_checkpoint):
    """A KIND_GPU encoder (native onnxruntime on a GPU) answers in GPU memory unless the BLS request
    asks for CPU outputs; as_numpy() on a GPU tensor raises, which failed every request on a GPU."""
    args = write_model(tmp_path, tiny_checkpoint, "text_embedding", "embedding",
                       opts=ServingOptions(flavour="native"))
    fake.MODELS["embedding_encoder"] = length_embedding
    fake.GPU_MODELS.add("embedding_encoder")
    model = adapter("text_embedding")
    model.initialize(args)
    [response] = run(model, [request(TEXT=texts("今天天气很好"))])
    assert output(response, "EMBEDDING")[:, 0].tolist() == [8]


def test_bls_copes_with_a_gpu_tensor_it_did_not_ask_for(pb, monkeypatch):
    """Should a backend answer in GPU memory anyway, the BLS helper takes the tensor through DLPack."""
    from structbert_serving import triton_io as bls

    monkeypatch.setattr(fake.InferenceRequest, "__init__", _ignore_preferred_memory)
    fake.MODELS["enc"] = lambda feeds: {"OUT": feeds["X"] * 2}
    fake.GPU_MODELS.add("enc")
    out = asyncio.run(bls.infer_rows("enc", {"X": np.arange(6, dtype=np.float32).reshape(3, 2)}, ["OUT"],
                                     names={}, max_rows=2))
    assert out["OUT"].tolist() == [[0, 2], [4, 6], [8, 10]]


_original_init = fake.InferenceRequest.__init__


def _ignore_preferred_memory(self, model_name, inputs, requested_output_names, **kwargs):
    _original_init(self, model_name, inputs, requested_output_names)


def test_native_length_buckets_send_one_request_per_bucket(pb, tmp_path, tiny_checkpoint):
    args = write_model(tmp_path, tiny_checkpoint, "text_embedding", "embedding",
                       opts=ServingOptions(flavour="native"))
    fake.MODELS["embedding_encoder"] = length_embedding
    model = adapter("text_embedding")
    model.initialize(args)
    long_text = "评" * 40
    responses = run(model, [request(TEXT=texts("好", long_text)), request(TEXT=texts("很好"))])
    assert sorted(shape["INPUT_IDS"] for _, shape in fake.CALLS) == [(1, 64), (2, 16)]
    assert output(responses[0], "EMBEDDING")[:, 0].tolist() == [3, 42]  # real lengths, whatever the bucket


def test_zero_shot_scores_every_label_of_every_request(pb, tmp_path, nli_checkpoint):
    args = write_model(tmp_path, nli_checkpoint, "zero_shot_classification", "zero-shot",
                       pair_truncation="only_first", outputs=[pbtxt.tensor("RESULT", "bytes", [1])],
                       extra={"max_labels": 64, "entailment_index": 0, "contradiction_index": 2})

    def nli(feeds):  # entailment logit = number of hypothesis tokens: longer labels win
        hypothesis = (feeds["TOKEN_TYPE_IDS"] * feeds["ATTENTION_MASK"]).sum(1).astype(np.float32)
        return {"LOGITS": np.stack([hypothesis, np.zeros_like(hypothesis), -hypothesis], axis=1)}

    fake.MODELS["zero_shot_classifier"] = nli
    model = adapter("zero_shot_classification")
    model.initialize(args)
    good = request(TEXT=texts("这款手机很好"), LABELS=texts("手机,水果摊"))
    responses = run(model, [good, request(TEXT=texts("x"), LABELS=texts(" , "))])
    result = json.loads(output(responses[0], "RESULT")[0, 0])
    assert result["labels"] == ["水果摊", "手机"] and sum(result["scores"]) == pytest.approx(1.0)
    assert "holds no label" in responses[1].error().message()


def test_uie_walks_the_schema_through_both_models(pb, tmp_path, uie_checkpoint):
    args = write_model(tmp_path, uie_checkpoint, "information_extraction", "uie-encoder",
                       outputs=[pbtxt.tensor("RESULT", "bytes", [1])],
                       extra={"cross_model": "uie_cross", "max_text_tokens": 8192})
    fake.MODELS["uie_encoder"] = lambda f: {"HIDDEN": np.zeros((*f["INPUT_IDS"].shape, HIDDEN), np.float32)}

    def cross(feeds):  # a span on text tokens 1-2 for every hint
        logits = np.full(feeds["TEXT_MASK"].shape, -5.0, np.float32)
        head, tail = logits.copy(), logits.copy()
        head[:, 1], tail[:, 2] = 5.0, 5.0
        return {"HEAD_LOGITS": head, "TAIL_LOGITS": tail}

    fake.MODELS["uie_cross"] = cross
    model = adapter("information_extraction")
    model.initialize(args)
    responses = run(model, [request(TEXT=texts("张三在北京"), SCHEMA=texts(json.dumps({"人物": None}))),
                            request(TEXT=texts("x"), SCHEMA=texts("[1]"))])
    paths = json.loads(output(responses[0], "RESULT")[0, 0])
    assert paths == [[{"type": "人物", "span": "张三", "offset": [0, 2]}]]
    assert "must be a JSON object" in responses[1].error().message()
    assert {model for model, _ in fake.CALLS} == {"uie_encoder", "uie_cross"}


def test_encoder_adapter_batches_ragged_requests_of_a_real_artifact(pb, tmp_path, tiny_checkpoint):
    from structbert_export.artifacts import export_artifact
    from structbert_export.modules import build_module
    from structbert_export.repository import encoder_config
    from structbert_serving.runtime import load_runner

    checkpoint = load_checkpoint(tiny_checkpoint)
    spec = spec_for("embedding")
    model_dir = tmp_path / spec.triton_name
    artifact = export_artifact(build_module("embedding", checkpoint), spec, checkpoint, model_dir / "1", "fp32", "onnx")
    config, _ = encoder_config(spec, {"hidden": checkpoint.config.hidden_size, "max_length": 512, "labels": 0},
                               artifact, "fp32", ServingOptions())
    pbtxt.write(model_dir, config)
    args = fake.model_args(model_dir, json_format.MessageToDict(pbtxt.parse((model_dir / "config.pbtxt").read_text()),
                                                                preserving_proto_field_name=True))
    model = adapter("encoder")
    model.initialize(args)  # warms up: three shapes through the artifact

    def tokens(rows, width):
        ids = np.zeros((len(rows), width), np.int64)
        for i, n in enumerate(rows):
            ids[i, :n] = [101, *range(1000, 1000 + n - 2), 102]
        return {"INPUT_IDS": ids, "ATTENTION_MASK": (ids > 0).astype(np.int64), "TOKEN_TYPE_IDS": 0 * ids}

    short, long = tokens([3, 5], 5), tokens([40], 40)
    broken = {**tokens([4], 4), "ATTENTION_MASK": np.ones((1, 6), np.int64)}
    responses = model.execute([request(**short), request(**broken), request(**long)])
    runner = load_runner(artifact, input_names=spec.input_names, output_names=spec.output_names, device="cpu")
    for response, feeds in ((responses[0], short), (responses[2], long)):
        np.testing.assert_allclose(output(response, "EMBEDDING"), runner.run(feeds)["EMBEDDING"], atol=1e-5)
    assert responses[1].error().code() == fake.TritonError.INVALID_ARG
    assert "must match ATTENTION_MASK" in responses[1].error().message()


def test_embedded_public_models_run_their_encoder_in_process(pb, tmp_path, tiny_checkpoint):
    """Embedded flavour: text_embedding and sentence_similarity run the encoder artifact in their own
    stub (no BLS call), answer like the artifact run on each text alone, and still fail a bad request
    alone; the encoder model itself is lazy (loads on its first direct call)."""
    from structbert_export.tasks import ExportRequest, run_export
    from structbert_serving.runtime import ExclusiveRunner, load_runner
    from structbert_serving.tokenization import TextTokenizer

    repo = tmp_path / "repo"
    run_export(ExportRequest(task="embedding", out=repo, model_dir=tiny_checkpoint), ServingOptions())

    def args_of(name):
        config = json_format.MessageToDict(pbtxt.parse((repo / name / "config.pbtxt").read_text()),
                                           preserving_proto_field_name=True)
        return fake.model_args(repo / name, config), config

    embed_args, embed_config = args_of("text_embedding")
    # two instances: one stays idle for Triton 2.51's batcher (it is not woken when a busy instance
    # frees up); they take turns on the runtime through a lock on the model's directory
    assert embed_config["instance_group"][0]["count"] == 2
    assert embed_config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 256
    model = adapter("text_embedding")
    model.initialize(embed_args)
    assert isinstance(model.local.runner, ExclusiveRunner)
    # small CPU batches of the two instances may overlap (runtime.ExclusiveRunner.shared)
    assert model.local.runner.overlap_below_tokens == int(embed_config["parameters"]["encoder_overlap_below_tokens"]
                                                              ["string_value"]) == 512
    # no coroutine: the stub would hand it to its event loop's thread and wait for it, every batch
    assert isinstance(model.execute([request(TEXT=texts("好"))]), list)
    sentences = ["今天天气很好", "好", "这家酒店的早餐很好吃，服务也周到"]
    responses = run(model, [request(TEXT=texts(sentences[0], sentences[1])), request(TEXT=texts("  ")),
                            request(TEXT=texts(sentences[2]))])
    assert fake.CALLS == []  # no BLS request: the artifact ran here
    tokenizer = TextTokenizer(repo / "text_embedding" / "1" / "tokenizer.json", max_length=512)
    runner = load_runner(repo / "embedding_encoder" / "1" / "model.onnx", input_names=["INPUT_IDS", "ATTENTION_MASK",
                         "TOKEN_TYPE_IDS"], output_names=["EMBEDDING"], device="cpu")

    def alone(text):
        b = tokenizer.encode([text])
        return runner.run({"INPUT_IDS": b.input_ids, "ATTENTION_MASK": b.attention_mask,
                           "TOKEN_TYPE_IDS": b.token_type_ids})["EMBEDDING"][0]

    got = [*output(responses[0], "EMBEDDING"), *output(responses[2], "EMBEDDING")]
    for text, vector in zip(sentences, got):
        np.testing.assert_allclose(vector, alone(text), atol=1e-5)
    assert responses[1].error().code() == fake.TritonError.INVALID_ARG

    similarity = adapter("sentence_similarity")
    similarity.initialize(args_of("sentence_similarity")[0])
    [score] = run(similarity, [request(TEXT_A=texts(sentences[0]), TEXT_B=texts(sentences[2]))])
    want = float(alone(sentences[0]) @ alone(sentences[2]))
    assert output(score, "SCORE")[0, 0] == pytest.approx(want, abs=1e-5)
    assert fake.CALLS == []

    encoder_args, encoder_config = args_of("embedding_encoder")
    assert encoder_config["parameters"]["lazy"]["string_value"] == "true"
    encoder = adapter("encoder")
    encoder.initialize(encoder_args)
    assert encoder.encoder is None  # nothing loaded until someone calls it directly
    b = tokenizer.encode([sentences[0]])
    [direct] = encoder.execute([request(INPUT_IDS=b.input_ids, ATTENTION_MASK=b.attention_mask,
                                        TOKEN_TYPE_IDS=b.token_type_ids)])
    np.testing.assert_allclose(output(direct, "EMBEDDING")[0], alone(sentences[0]), atol=1e-5)


def test_reranking_scores_every_passage_of_every_request_in_one_call(pb, tmp_path, pair_checkpoint):
    """A two-label pair classifier as a reranker (relevance = softmax, label 1): each passage's score
    and the order; bad requests (empty passage, too many, TOP_N 0) fail alone; one encoder call."""
    from structbert_client import api
    from structbert_export.repository import public_tensors

    outputs = public_tensors(api.RERANKING)[1]
    args = write_model(tmp_path, pair_checkpoint, "reranking", "reranking", pair_truncation="only_second",
                       extra={"relevance_index": 1, "max_passages": 3}, outputs=outputs)
    fake.MODELS["reranker"] = lambda f: {"LOGITS": np.stack(
        [np.zeros(len(f["INPUT_IDS"])), np.log(f["ATTENTION_MASK"].sum(1) - 6.0)], axis=1).astype(np.float32)}
    model = adapter("reranking")
    model.initialize(args)

    def rerank(query, *passages, top_n=None):
        inputs = {api.QUERY: texts(query), api.PASSAGES: np.array([[p.encode() for p in passages]], dtype=object)}
        if top_n is not None:
            inputs[api.TOP_N] = np.array([[top_n]], np.int32)
        return request(**inputs)

    responses = run(model, [rerank("酒店", "好", "很好很好", "很好"), rerank("酒店", "好", " "),
                            rerank("酒店", "好", "好", "好", "好"), rerank("酒店", "好", top_n=0),
                            rerank("手机", "一二三", "一", top_n=1)])
    # [CLS] 酒店 [SEP] passage [SEP]: 5 + len(passage) tokens; logit_1 = log(len - 6), logit_0 = 0
    lengths = np.array([1, 4, 2]) + 5
    want = (lengths - 6) / (lengths - 6 + 1.0)  # softmax [0, log(x)] -> x / (1 + x)
    np.testing.assert_allclose(output(responses[0], api.SCORES)[0], want, atol=1e-6)
    np.testing.assert_allclose(output(responses[0], api.RAW_SCORES)[0], np.log(lengths - 6), atol=1e-6)
    assert output(responses[0], api.ORDER)[0].tolist() == [1, 2, 0]
    assert output(responses[4], api.ORDER)[0].tolist() == [0]
    for bad, words in ((responses[1], "PASSAGES[1] is empty"), (responses[2], "at most 3"),
                       (responses[3], "TOP_N is 0")):
        assert bad.has_error() and words in bad.error().message(), bad.error().message()
        assert bad.error().code() == fake.TritonError.INVALID_ARG
    assert len(fake.CALLS) == 1 and fake.CALLS[0][1]["INPUT_IDS"][0] == 5  # 3 + 2 passages, one BLS request


def test_a_parameter_export_did_not_write_fails_initialize_naming_it(pb, tmp_path, tiny_checkpoint):
    """What Triton shows as the model's load error: an unknown (or malformed) key, named."""
    from structbert_serving.params import ParamError

    args = write_model(tmp_path, tiny_checkpoint, "text_embedding", "embedding")
    config = json.loads(args["model_config"])
    for key, value in (("max_padding", "0.5"), ("max_length", "five hundred")):
        bad = {**config, "parameters": {**config["parameters"], key: {"string_value": value}}}
        with pytest.raises(ParamError, match=f"model text_embedding: .*'{key}'"):
            adapter("text_embedding").initialize({**args, "model_config": json.dumps(bad)})
