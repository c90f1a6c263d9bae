"""Overload against the real server: every public model at 4x and 16x what it can hold.

Capacity is made small on purpose (a queue of 4 requests, 1 s queue timeout, 8 rows per batch, 2
instances: 20 requests in the server at most), so the 2-core machine can offer 16x that. Every
request must end answered: a result, or UNAVAILABLE within the queue timeout plus a margin. The
ensembles this project used to serve left requests unanswered forever at 16x, and the server
crashed (triton-inference-server/server#8631); this test would have caught it.
"""

from __future__ import annotations

import pytest

from structbert_bench.overload import overload_run
from structbert_bench.workloads import WORKLOADS, client_call, default_data_dir, payloads, sdk_worker
from structbert_export.repository import BLS_INSTANCES
from structbert_serving.embedded_server import EmbeddedServer
from tests.conftest import export_repo, make_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUEUE, TIMEOUT_S, ROWS = 4, 1.0, 8
CAPACITY = QUEUE + BLS_INSTANCES * ROWS  # requests the server holds: queued + executing
MARGIN_S = 4.0  # beyond the queue timeout: one batch's compute on a CPU shared with 320 client threads


@pytest.fixture(scope="module")
def small_capacity_server(tmp_path_factory, tiny_checkpoint, nli_checkpoint, pair_checkpoint, uie_checkpoint):
    out = tmp_path_factory.mktemp("overload")
    opts = {"max_queue_size": QUEUE, "queue_timeout_us": int(TIMEOUT_S * 1e6), "max_batch_size": ROWS}
    for task, checkpoint in (("embedding", tiny_checkpoint), ("zero-shot", nli_checkpoint),
                             ("pair-classification", pair_checkpoint), ("uie", uie_checkpoint)):
        export_repo(out, task=task, model_dir=checkpoint, opts=opts)
    with EmbeddedServer(out) as server:
        yield server


@pytest.mark.parametrize("workload", ["embedding", "similarity", "pair", "zero_shot", "uie"])
def test_overload_is_answered_every_time(small_capacity_server, workload):
    server = small_capacity_server
    items = payloads(workload, default_data_dir(), 500, seed=2)
    make = sdk_worker(server.grpc_url, "grpc", workload, timeout_s=30)
    for factor in (4, 16):
        run = overload_run(make, items, workload=workload, clients=factor * CAPACITY, duration_s=2, deadline_s=30)
        print(f"\n{WORKLOADS[workload].model} x{factor} ({run.clients} clients): {run.ok} ok "
              f"(p99 {run.ok_p99_ms:.0f} ms), {run.refused} refused (p50 {run.refused_p50_ms:.0f} ms), "
              f"{run.other} other, {run.unanswered} unanswered, slowest answer {run.max_answer_ms:.0f} ms")
        assert run.unanswered == 0  # no request without an answer
        assert run.other == 0, run.other_sample  # overload is UNAVAILABLE, nothing else
        assert run.ok > 0
        assert run.max_answer_ms <= (TIMEOUT_S + MARGIN_S) * 1000
        if factor == 16:
            assert run.refused > 0  # far past the queue: some requests were refused
        assert server.is_ready() and server.process.poll() is None
    for protocol in ("grpc", "http"):  # then normal traffic succeeds
        client = make_client(server, protocol, retries=0)
        assert client_call(workload, client)(items[0]) is not None
        client.close()
