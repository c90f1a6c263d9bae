"""The export->serve parameter contract (structbert_serving/params.py): what export writes is what
each Python model parses at initialize; an unknown, missing or malformed key is a load error naming
the key. The repository-wide check parses every Python model's config of a real export with the
type its adapter declares."""

from __future__ import annotations

import importlib

import pytest
from google.protobuf import json_format

from structbert_export import pbtxt
from structbert_serving import params as P
from structbert_serving.params import ParamError, model_parameters
from tests import fake_pb_utils as fake

ADAPTERS = ("encoder", "text_embedding", "sentence_similarity", "pair_classification", "zero_shot_classification",
            "information_extraction", "reranking")


def test_round_trip_and_defaults_in_one_place():
    written = P.RerankingParams(encoder_model="reranker", length_buckets=(16, 32), relevance_index=1,
                                encoder_tensor_names={"LOGITS": "LOGITS"},
                                encoder=P.RuntimeParams(max_padding=-1.0, mask_groups={"A": "B"}))
    raw = written.to_parameters()
    assert P.RerankingParams.parse(raw) == written
    assert raw["encoder_max_padding"] == "-1.0" and raw["length_buckets"] == "16,32"
    assert P.EncoderModelParams.parse({"artifact": "model.onnx"}).runtime.max_batch_tokens == P.DEFAULT_MAX_BATCH_TOKENS


@pytest.mark.parametrize("change,words", [
    ({"warmup_rows": "4"}, "unknown parameter 'warmup_rows'"),
    ({"encoder_model": None}, "parameter 'encoder_model' is missing"),
    ({"max_length": "long"}, "parameter 'max_length' = 'long'"),
    ({"encoder_warmup": "yes"}, "parameter 'encoder_warmup' = 'yes'"),
    ({"encoder_tensor_names": "[1]"}, "parameter 'encoder_tensor_names'"),
    ({"encoder_in_process": "true"}, "'encoder_artifact' is missing"),
])
def test_unknown_missing_or_malformed_key_is_a_load_error_naming_it(change, words):
    raw = P.PipelineParams(encoder_model="embedding_encoder").to_parameters()
    for key, value in change.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    with pytest.raises(ParamError, match=words.replace("(", r"\(").replace("[", r"\[")):
        P.PipelineParams.parse(raw, model="text_embedding")


def _adapter_of(model_py: str) -> str:
    from structbert_export.repository import python_model_source

    for name in ADAPTERS:
        if python_model_source(name) == model_py:
            return name
    raise AssertionError("model.py is none of the adapters")


def test_every_exported_python_model_parses_with_its_adapters_declared_type(tiny_repo, native_repos):
    """Export -> serve: each Python model of the tiny embedded repository and of a native one is
    parsed by the type its adapter reads at initialize (strict: a key export writes that the adapter
    does not declare fails here, not in production)."""
    fake.install()
    seen = set()
    for repo in (tiny_repo, native_repos[("cpu", "fp32")]):
        for config_file in sorted(repo.glob("*/config.pbtxt")):
            config = pbtxt.parse(config_file.read_text())
            if config.backend != "python":
                continue
            adapter = _adapter_of((config_file.parent / "1" / "model.py").read_text())
            model = importlib.import_module(f"structbert_serving.triton_models.{adapter}").TritonPythonModel
            raw = model_parameters(json_format.MessageToDict(config, preserving_proto_field_name=True))
            model.params_type.parse(raw, model=config.name)
            seen.add(adapter)
    assert seen == set(ADAPTERS)
