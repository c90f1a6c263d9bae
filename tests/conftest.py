from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One OpenMP thread for torch in the test processes and what they start (references, exports, the
# bench's baseline): the suite runs two workers on two cores beside the servers they start, and
# torch's two threads per process spun waiting for each other (tests/e2e/test_uie_e2e.py alone:
# 110 CPU-s with two, 73 with one; its fixtures took 266 s in three workers). Tiny models gain
# nothing from a second thread. The servers' ONNX Runtime sessions never spin (runtime.OrtRunner).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def sample_texts(n: int | None = None, *, max_chars: int | None = None) -> list[str]:
    rows = [json.loads(line) for line in (DATA / "shopping_reviews_sample.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in rows if max_chars is None or len(r["text"]) <= max_chars]
    return texts[:n] if n else texts


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """``build(path)`` once for the whole run, whatever the number of xdist workers: they share the
    parent of their base temp directories, and the first to ask builds while the others wait on a
    lock. Every worker used to build every session artifact itself (the native repositories alone
    are ~40 s of CPU), on a suite the CPUs bound. What is built here is only read by the tests."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once" / name
    path.parent.mkdir(exist_ok=True)
    done = path.with_name(f"{name}.done")
    with FileLock(f"{path}.lock"):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)  # what a worker that failed halfway left
            build(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    os.environ["STRUCTBERT_TRITON_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from structbert_export.synthetic import make_bert_checkpoint

    return built_once(tmp_path_factory, "structbert-tiny", lambda out: make_bert_checkpoint(out, "tiny", seed=7))


def export_repo(out: Path, **kwargs) -> Path:
    from structbert_export.repository import ServingOptions
    from structbert_export.tasks import ExportRequest, run_export

    opts = ServingOptions(**kwargs.pop("opts", {}))
    run_export(ExportRequest(out=out, **kwargs), opts)
    return out


@pytest.fixture(scope="session")
def nli_checkpoint(tmp_path_factory) -> Path:
    from structbert_export.synthetic import make_task_checkpoint

    return built_once(tmp_path_factory, "nli-tiny", lambda out: make_task_checkpoint(out, "zero-shot", "tiny", seed=11))


@pytest.fixture(scope="session")
def pair_checkpoint(tmp_path_factory) -> Path:
    from structbert_export.synthetic import make_task_checkpoint

    return built_once(tmp_path_factory, "pair-tiny", lambda out: make_task_checkpoint(out, "pair-classification", "tiny", seed=13))


@pytest.fixture(scope="session")
def text_classification_checkpoint(tmp_path_factory) -> Path:
    """A sentiment-like classifier (labels 负面/正面, as ModelScope's StructBERT sentiment checkpoints)."""
    from structbert_export.synthetic import make_task_checkpoint

    return built_once(tmp_path_factory, "text-cls-tiny",
                      lambda out: make_task_checkpoint(out, "text-classification", "tiny", seed=19))


@pytest.fixture(scope="session")
def uie_checkpoint(tmp_path_factory) -> Path:
    from structbert_export.synthetic import make_task_checkpoint

    return built_once(tmp_path_factory, "uie-tiny", lambda out: make_task_checkpoint(out, "uie", "tiny", seed=5))


@pytest.fixture(scope="session")
def rerank_checkpoint(tmp_path_factory) -> Path:
    """A Hugging Face cross-encoder directory as ``BertForSequenceClassification.save_pretrained``
    writes it (model_type bert, safetensors, one logit), random tiny weights, the Chinese vocab."""
    import torch
    from transformers import BertForSequenceClassification

    from structbert_export.synthetic import chinese_vocab_path, synthetic_config

    def build(out: Path) -> None:
        torch.manual_seed(17)
        model = BertForSequenceClassification(synthetic_config("tiny", num_labels=1)).eval()
        with torch.no_grad():  # a wide head, so that relevance spreads over (0, 1)
            model.classifier.weight.mul_(40.0)
        model.save_pretrained(out)
        shutil.copyfile(chinese_vocab_path(), out / "vocab.txt")

    return built_once(tmp_path_factory, "cross-encoder-tiny", build)


def jsonl(name: str, key: str = "text") -> list[str]:
    return [json.loads(line)[key] for line in (DATA / name).read_text().splitlines()]


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory, tiny_checkpoint, nli_checkpoint, pair_checkpoint, uie_checkpoint,
              rerank_checkpoint, text_classification_checkpoint) -> Path:
    """One repository with every task (FP32 ONNX, embedded flavour) from tiny synthetic checkpoints."""
    sources = task_checkpoints(tiny_checkpoint, nli_checkpoint, pair_checkpoint, uie_checkpoint, rerank_checkpoint,
                               text_classification_checkpoint)

    def build(out: Path) -> None:
        for task, checkpoint in sources.items():
            export_repo(out, task=task, model_dir=checkpoint)

    return built_once(tmp_path_factory, "repo-tiny", build)


def task_checkpoints(tiny, nli, pair, uie, rerank, text) -> dict[str, Path]:
    """The tiny checkpoint of every task family in the registry (a new family fails here until it has one)."""
    from structbert_registry.families import TASKS

    sources = {"embedding": tiny, "zero-shot": nli, "pair-classification": pair, "uie": uie, "reranking": rerank,
               "text-classification": text}
    assert set(sources) == set(TASKS), f"tests/conftest.py has no tiny checkpoint for {set(TASKS) - set(sources)}"
    return sources


# (serving device, precision) of every native repository a user can export for the container
NATIVE_VARIANTS = (("cpu", "fp32"), ("cpu", "int8"), ("cuda", "fp32"), ("cuda", "fp16"))


@pytest.fixture(scope="session")
def native_repos(tmp_path_factory, cache_root, tiny_checkpoint, nli_checkpoint, pair_checkpoint,
                 uie_checkpoint, rerank_checkpoint, text_classification_checkpoint) -> dict[tuple[str, str], Path]:
    """Every task exported natively for each (device, precision), from the tiny checkpoints, with
    ``--intra-op-threads 1`` (tests/export, tests/contract)."""
    sources = task_checkpoints(tiny_checkpoint, nli_checkpoint, pair_checkpoint, uie_checkpoint, rerank_checkpoint,
                               text_classification_checkpoint)

    def build(root: Path) -> None:
        for device, precision in NATIVE_VARIANTS:
            for task, checkpoint in sources.items():
                export_repo(root / f"{device}-{precision}", task=task, model_dir=checkpoint, precision=precision,
                            opts={"flavour": "native", "device": device, "intra_op_threads": 1})

    root = built_once(tmp_path_factory, "native", build)
    return {(device, precision): root / f"{device}-{precision}" for device, precision in NATIVE_VARIANTS}


@pytest.fixture(scope="session")
def tiny_server(tiny_repo):
    from structbert_serving.embedded_server import EmbeddedServer

    with EmbeddedServer(tiny_repo) as server:
        yield server


@pytest.fixture(params=["grpc", "http"])
def protocol(request) -> str:
    return request.param


def make_client(server, protocol: str, **kwargs):
    from structbert_client import StructBertClient

    url = server.grpc_url if protocol == "grpc" else server.http_url
    return StructBertClient(url, protocol=protocol, **kwargs)


@pytest.fixture(scope="module")
def sdk(tiny_server):
    """A gRPC SDK client of the tiny server, one per test module."""
    client = make_client(tiny_server, "grpc")
    yield client
    client.close()


@pytest.fixture
def tiny_client(tiny_server, protocol):
    client = make_client(tiny_server, protocol)
    yield client
    client.close()


@pytest.fixture(scope="session")
def tiny_gateway(tiny_server, tiny_repo):
    """The HTTP gateway (a real uvicorn process) in front of ``tiny_server``."""
    from structbert_gateway.process import GatewayProcess

    with GatewayProcess(tiny_server.grpc_url, tiny_repo, triton_http_url=tiny_server.http_url,
                        extra_args=["--max-client-batch", "64", "--max-body-bytes", "1000000"]) as gateway:
        yield gateway
