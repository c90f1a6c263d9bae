"""The bench's own measurements that need no server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from structbert_bench.measure import cpu_times, steal_pct


def test_steal_is_the_share_of_cpu_time_the_hypervisor_gave_to_other_guests(tmp_path):
    """A shared VM (this project's CI: 40 % steal seen in one run) halves throughput in a window
    without any change in the code; the bench reports it next to its numbers."""
    stat = tmp_path / "stat"
    #                 user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 50 0 25 400 5 0 2 18 0 0\n")
    before = cpu_times(stat)
    stat.write_text("cpu  160 0 70 850 10 0 5 105 0 0\n")
    after = cpu_times(stat)
    assert steal_pct(before, after) == 35.0  # 70 of 200 jiffies
    assert steal_pct(after, after) is None  # no time passed
    assert cpu_times(tmp_path / "missing") is None and steal_pct(None, after) is None  # not Linux: unknown


def test_in_process_window_weighs_every_text_alike():
    """The in-process reference runs whole passes over the texts the server was sent: a window that
    always began at the first text and stopped after a few seconds measured a different mix of
    lengths than the served window (zero-shot texts take 30-600 ms each)."""
    from collections import Counter

    from structbert_bench.overhead import in_process_window

    rows = [{"TEXT": str(i)} for i in range(7)]
    seen = Counter()
    stats = in_process_window(lambda batch: seen.update(r["TEXT"] for r in batch), rows, batch=3, seconds=0.0)
    warm = Counter(r["TEXT"] for r in rows[:3])  # the warm-up batch, not timed
    timed = seen - warm
    assert len(set(timed.values())) == 1 and set(timed) == {r["TEXT"] for r in rows}, timed
    assert stats["batch"] == 3 and stats["rps"] > 0



def test_one_client_pairs_cover_every_text_and_say_how_sure_the_p50_is(monkeypatch):
    """The paired one-client window took 20 texts at least, always from the first: zero-shot (texts of
    30-600 ms) was judged on its first 20 texts, a p50 difference whose 95 % interval spans several
    ms. Now one whole pass at least, and the interval is reported."""
    from collections import Counter

    import tritonclient.grpc as grpcclient

    from structbert_bench.overhead import paired_one_client, paired_summary

    class Client:  # the server's side is not what this measures
        def __init__(self, url):
            pass

        def infer(self, model, inputs):
            pass

        def close(self):
            pass

    monkeypatch.setattr(grpcclient, "InferenceServerClient", Client)
    rows = [{"TEXT": str(i)} for i in range(45)]
    local = Counter()
    result = paired_one_client("unused", lambda batch: local.update(r["TEXT"] for r in batch), rows, "m", seconds=0.0)
    assert result["n"] >= len(rows) and set(local) == {r["TEXT"] for r in rows}

    rng = np.random.default_rng(1)
    few = paired_summary([(0.100 + d, 0.100) for d in rng.normal(0.002, 0.005, 20)])
    many = paired_summary([(0.100 + d, 0.100) for d in rng.normal(0.002, 0.005, 400)])
    for summary in (few, many):
        low, high = summary["delta_p50_ci95_ms"]
        assert low <= summary["delta_p50_ms"] <= high
    assert many["delta_p50_ci95_ms"][1] - many["delta_p50_ci95_ms"][0] < \
        (few["delta_p50_ci95_ms"][1] - few["delta_p50_ci95_ms"][0]) / 2


def test_one_client_pairs_are_measured_over_grpc_and_http(monkeypatch):
    """Triton's HTTP frontend answers a small request ~0.3 ms sooner than its gRPC one (measured on the
    CPU, loopback): the one-client figure depends on the protocol and the client, so the bench pairs each
    and says which one the target was judged on (the lean HTTP client)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from structbert_bench import overhead

    seen = []

    def fake(module):
        class Client:
            def __init__(self, url):
                seen.append((module.__name__, url))

            def infer(self, model, inputs):
                assert all(isinstance(i, module.InferInput) for i in inputs)

            def close(self):
                pass
        return Client

    monkeypatch.setattr(grpcclient, "InferenceServerClient", fake(grpcclient))
    monkeypatch.setattr(httpclient, "InferenceServerClient", fake(httpclient))
    rows = [{"TEXT": str(i)} for i in range(5)]
    result = overhead.paired_one_client("h:1", lambda batch: None, rows, "m", seconds=0.0, protocol="http")
    assert seen == [("tritonclient.http", "h:1")] and result["protocol"] == "http" and result["n"] >= 5
    assert overhead.paired_one_client("g:1", lambda batch: None, rows, "m", seconds=0.0)["protocol"] == "grpc"

    pair = {"n": 5, "served_p50_ms": 10.0, "in_process_p50_ms": 8.0, "delta_p50_ms": 2.0,
            "delta_p50_ci95_ms": [1.9, 2.1], "delta_mean_ms": 2.0}
    one = {"served": {"rps": 1, "p50_ms": 1, "p95_ms": 1, "p99_ms": 1}, "in_process": {"rps": 1, "p50_ms": 1},
           "server_batch": 1.0, "throughput_ratio": 1.0, "p50_delta_ms": 0.0,
           "paired_lean": {**pair, "delta_p50_ms": 0.9, "protocol": "lean-http", "answers_agree": True},
           "paired_perf_analyzer": {**pair, "delta_p50_ms": 1.2, "protocol": "perf_analyzer"},
           "paired": {**pair, "protocol": "grpc"}, "paired_http": {**pair, "delta_p50_ms": 1.7, "protocol": "http"}}
    text = overhead.markdown({"date": "d", "command": "c", "machine": {"summary": "m"}, "repository": "r",
                              "client": "pa", "seconds": 1, "rounds": 1, "server_peak_rss_mb": 1,
                              "server_rss_by_process_mb": {}, "workloads": {"embedding": {
                                  "model": "text_embedding", "unit": "texts", "description": "d", "in_process_rss_mb": 1,
                                  "levels": [{"concurrency": 1, "rounds": [one], "median_throughput_ratio": 1.0,
                                              "median_p50_delta_ms": 0.9, "median_p50_delta_http_ms": 1.7,
                                              "median_p50_delta_perf_analyzer_ms": 1.2,
                                              "median_p50_delta_python_grpc_ms": 2.0,
                                              "target": "t", "met": True}]}}})
    assert "| 1 | perf_analyzer (C++, gRPC) | 5 |" in text and "| 1 | Python SDK, gRPC | 5 |" in text
    assert "| 1 | lean HTTP client (judged) | 5 |" in text
    assert "| 1 | Python SDK, HTTP | 5 |" in text
    assert "+0.90 (perf_analyzer +1.20, Python gRPC +2.00, HTTP +1.70)" in text, text


def test_lean_client_answers_are_checked_against_the_in_process_ones():
    """The judged one-client figure comes from a hand-written client: its answer to the first text must
    be the in-process answer (a client that times error replies or empty bodies would look fast)."""
    import json

    from structbert_bench.overhead import answers_agree

    emb = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    assert answers_agree("text_embedding", {"EMBEDDING": emb}, {"EMBEDDING": emb + 1e-6})
    assert not answers_agree("text_embedding", {"EMBEDDING": emb}, {"EMBEDDING": -emb})
    assert answers_agree("sentence_similarity", {"SCORE": np.array([[0.5]], np.float32)},
                         {"SCORE": np.array([[0.50001]])})

    def result(ranked):
        return {"RESULT": np.array([[json.dumps(ranked, ensure_ascii=False).encode()]], dtype=object)}

    served = result({"labels": ["书籍", "酒店"], "scores": [0.7, 0.3]})
    assert answers_agree("zero_shot_classification", served, result({"labels": ["书籍", "酒店"], "scores": [0.7, 0.3]}))
    assert not answers_agree("zero_shot_classification", served,
                             result({"labels": ["酒店", "书籍"], "scores": [0.7, 0.3]}))


def test_gateway_client_reconnects_when_the_server_closed_an_idle_connection():
    """uvicorn closes a keep-alive connection after 5 idle seconds: the bench's next request on it
    failed with BrokenPipe/RemoteDisconnected and was counted as 'server unavailable'."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from structbert_bench.gateway_client import gateway_worker

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"data": [{"embedding": [1.0]}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True  # as after an idle timeout: closed without saying so

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        call = gateway_worker(f"http://127.0.0.1:{server.server_address[1]}", "embedding")()
        for _ in range(3):
            assert call(("你好",))["data"][0]["embedding"] == [1.0]
    finally:
        server.shutdown()


def _request(text: str, sent_ms: float, answered_ms: float) -> dict:
    return {"timestamp": int(sent_ms * 1e6), "response_timestamps": [int(answered_ms * 1e6)],
            "request_inputs": {"TEXT": text}}


def test_server_batches_are_told_apart_by_when_their_answers_arrived(tmp_path):
    """The batches the server formed, from perf_analyzer's profile export: the answers to one batch
    arrive within a few ms of each other (at most 3 ms apart), batches further apart; a request sent
    after another's answer arrived cannot have shared its batch (one client: every request alone)."""
    from structbert_bench.overhead import server_batches

    requests = [_request("a", 0, 100), _request("b", 1, 100.4), _request("c", 2, 101.0),  # one batch
                _request("d", 50, 300), _request("e", 120, 300.5),  # the next
                _request("f", 300.2, 302.0)]  # sent after d's answer: alone, though 1.5 ms later
    export = tmp_path / "pa.json"
    export.write_text(json.dumps({"experiments": [{"requests": requests[3:]}, {"requests": requests[:3]}]}))
    batches = server_batches(export)
    assert [[r["TEXT"] for r in b["rows"]] for b in batches] == [["a", "b", "c"], ["d", "e"], ["f"]]
    assert [b["done_s"] for b in batches] == [0.101, 0.3005, 0.302]
    assert batches[1]["latencies_s"] == [0.25, 0.1805]


def test_in_process_side_replays_the_batches_the_server_formed():
    """Zero-shot at 32 clients: the server formed batches of 1-32 texts (mean 12.6); the in-process side
    at the mean batch size measured a different workload, and perf_analyzer's window edges cut batches
    of ~1.3 s (rounds 0.87-1.08 of one build). Replaying the served batches after the first (same
    texts, same batches, in the order they were answered) against the served time from the first
    batch's answers to the last's compares the same work: 0.956 / 0.966 / 0.978 in three rounds."""
    from structbert_bench.overhead import replay_batches

    batches = [{"rows": [{"TEXT": t} for t in texts], "done_s": done, "latencies_s": [0.1] * len(texts)}
               for texts, done in ((["a"], 1.0), (["b", "c"], 2.0), (["d"], 2.5), (["e", "f", "g"], 4.0))]
    ran = []
    stats = replay_batches(lambda batch: ran.append([r["TEXT"] for r in batch]), batches)
    assert ran == [["a"], ["b", "c"], ["d"], ["e", "f", "g"]]  # the first batch warms up, untimed
    assert stats["served_rps"] == 2.0  # 6 texts from 1.0 s to 4.0 s
    assert stats["texts"] == 6 and stats["batches"] == 3 and stats["batch"] == 2.0 and stats["rps"] > 0
    assert len(stats["first_pass_s"]) == 3



def _fake_perf_analyzer(failures: list[tuple[int, str]], texts: list[str], intervals: list[int]):
    """``subprocess.run`` for perf_analyzer: the first calls fail with ``failures`` (exit code, what it
    printed), the next ones write a CSV at 10 texts/s and a profile export answering ``texts``; every
    call's measurement interval goes to ``intervals``."""
    import subprocess

    def fake_run(cmd, **kwargs):
        intervals.append(int(cmd[cmd.index("--measurement-interval") + 1]))
        if len(intervals) <= len(failures):
            code, said = failures[len(intervals) - 1]
            return subprocess.CompletedProcess(cmd, code, said, "")
        Path(cmd[cmd.index("-f") + 1]).write_text(
            "Concurrency,Inferences/Second,p50 latency,p95 latency,p99 latency,Server Queue,"
            "Server Compute Infer\n4,10.0,1000,2000,3000,500,400\n")
        requests = [_request(text, i, 100 + i / 2) for i, text in enumerate(texts)]
        Path(cmd[cmd.index("--profile-export-file") + 1]).write_text(
            json.dumps({"experiments": [{"requests": requests}]}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    return fake_run


def test_a_window_perf_analyzer_found_unsteady_is_doubled_and_measured_again(tmp_path, monkeypatch):
    """CI (a slower, busier machine): zero-shot at 4 clients in 300 ms windows. perf_analyzer judges
    three windows stable only when each completed a request and the fastest is within
    1 + stability-percentage/100 of the slowest (throughput and latency); a window holding one slow
    batch fails that at any percentage we ask for, and it exits 2 ("Failed to obtain stable
    measurement"). The bench stopped there. That window was too short for the machine, as a window with
    no request in it is: it is doubled and measured again."""
    from structbert_bench import overhead

    intervals = []
    unsteady = (2, "Request concurrency: 4\n\nFailed to obtain stable measurement within 3 measurement windows "
                   "for concurrency 4. Please try to increase the --measurement-interval.\n")
    monkeypatch.setattr(overhead.subprocess, "run", _fake_perf_analyzer([unsteady], ["a", "b"], intervals))
    window = overhead.served_window_perf_analyzer("127.0.0.1:1", "zero_shot_classification", 4, 0.3, tmp_path)
    assert intervals == [300, 600]
    assert window["window_s"] == 0.6 and window["rps"] == 10.0 and window["texts"] == 2


def test_a_window_whose_server_statistics_went_missing_is_measured_again(tmp_path, monkeypatch):
    """The suite (two workers, 8 ms windows of zero-shot at 1 client): perf_analyzer exited 99, "failed
    to find the requested model version": the server's statistics it read after a window held no
    version of the model. Not seen again in 30 runs under load; a window measured again answered.
    It is measured again, the same window, up to twice; a third miss in a row is an error."""
    from structbert_bench import overhead

    intervals = []
    missed = (99, "Request concurrency: 1\nfailed to find the requested model version\n")
    monkeypatch.setattr(overhead.subprocess, "run", _fake_perf_analyzer([missed] * 2, ["a"], intervals))
    window = overhead.served_window_perf_analyzer("127.0.0.1:1", "zero_shot_classification", 1, 0.008, tmp_path)
    assert intervals == [8, 8, 8] and window["window_s"] == 0.008 and window["texts"] == 1
    intervals.clear()
    monkeypatch.setattr(overhead.subprocess, "run", _fake_perf_analyzer([missed] * 3, ["a"], intervals))
    with pytest.raises(RuntimeError, match="requested model version"):
        overhead.served_window_perf_analyzer("127.0.0.1:1", "zero_shot_classification", 1, 0.008, tmp_path)
