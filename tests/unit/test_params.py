"""The export->serve parameter contract (structbert_serving/params.py): what export writes is what
each Python model parses at initialize; an unknown, missing or malformed key is a load error naming
the key (tests/export/test_params.py checks a real export against every adapter's declared type)."""

from __future__ import annotations

import pytest

from structbert_serving import params as P
from structbert_serving.params import ParamError


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
