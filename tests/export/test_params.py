"""Export -> serve: every Python model of a real export parses with the parameter type its adapter
declares (structbert_serving/params.py; the key-level checks are in tests/unit/test_params.py)."""

from __future__ import annotations

import importlib

from google.protobuf import json_format

from structbert_export import pbtxt
from structbert_serving.params import model_parameters
from tests import fake_pb_utils as fake

ADAPTERS = ("encoder", "text_embedding", "sentence_similarity", "pair_classification", "zero_shot_classification",
            "information_extraction", "reranking", "text_classification")


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
