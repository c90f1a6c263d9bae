"""The wire API in one place: the public models and their tensors. The SDK, the exporter that writes
the models, the load tools and the tests all read it from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublicModel:
    name: str
    inputs: tuple[str, ...]  # BYTES inputs every request must send, [batch, 1] each
    outputs: tuple[str, ...]
    optional_inputs: tuple[tuple[str, str], ...] = ()  # (name, Triton datatype), [batch, 1] each


TEXT_EMBEDDING = PublicModel("text_embedding", ("TEXT",), ("EMBEDDING",))
SENTENCE_SIMILARITY = PublicModel("sentence_similarity", ("TEXT_A", "TEXT_B"), ("SCORE",))
PAIR_CLASSIFICATION = PublicModel("pair_classification", ("TEXT_A", "TEXT_B"), ("PROBS", "LABELS"))
ZERO_SHOT_CLASSIFICATION = PublicModel("zero_shot_classification", ("TEXT", "LABELS"), ("RESULT",),
                                       (("HYPOTHESIS_TEMPLATE", "BYTES"), ("MULTI_LABEL", "BOOL")))
INFORMATION_EXTRACTION = PublicModel("information_extraction", ("TEXT", "SCHEMA"), ("RESULT",),
                                     (("OUTPUT_ALL_PREFIX", "BOOL"),))

PUBLIC_MODELS: dict[str, PublicModel] = {m.name: m for m in (
    TEXT_EMBEDDING, SENTENCE_SIMILARITY, PAIR_CLASSIFICATION, ZERO_SHOT_CLASSIFICATION, INFORMATION_EXTRACTION)}
