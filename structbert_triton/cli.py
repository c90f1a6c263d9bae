"""``structbert-triton``: export checkpoints into a Triton repository and serve it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from structbert_client.client import PROTOCOLS
from structbert_export.choices import (
    ATTENTIONS,
    DEVICES,
    FLAVOURS,
    FORMATS,
    OVERLENGTH,
    PRECISIONS,
    SYNTHETIC_SIZES,
    TASKS,
)
from structbert_export.repository import GPU_BATCH_TOKENS, ServingOptions
from structbert_registry.families import WORKLOADS

log = logging.getLogger("structbert_triton")



def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a task's models into a Triton model repository")
    p.add_argument("--task", required=True, choices=TASKS)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", type=Path, help="ModelScope StructBERT or Hugging Face BERT checkpoint directory")
    src.add_argument("--model-id", help="ModelScope hub id (needs network and the [modelscope] extra)")
    src.add_argument("--synthetic", choices=SYNTHETIC_SIZES,
                     help="random weights with the real architecture (outputs carry no meaning)")
    p.add_argument("--out", type=Path, default=Path("model_repository"),
                   help="the Triton model repository to write into (default: model_repository/)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--flavour", choices=FLAVOURS, default="embedded",
                   help="embedded: Python-backend encoder (the pip-installed server); "
                        "native: Triton's onnxruntime backend in the nvcr.io container (ONNX only)")
    p.add_argument("--overlength", choices=OVERLENGTH, default="truncate",
                   help="texts longer than the model's maximum length: truncate (default) or reject")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--encoder-instances", type=int, default=1)
    p.add_argument("--intra-op-threads", type=int, default=0,
                   help="ONNX Runtime threads per encoder instance, both flavours (0 = ORT's default: all cores)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the encoders run. embedded: the Python-backend encoder's device (auto: the GPU "
                        "for a TorchScript trace when there is one, else cpu). native: cpu = KIND_CPU instances; "
                        "cuda = KIND_GPU, FP32 graphs through TensorRT FP16; auto = cuda (int8: cpu)")
    p.add_argument("--bls-encoders", dest="encoder_in_process", action="store_false",
                   help="embedded flavour: public models call their encoder model through BLS (as the native "
                        "flavour does) instead of running its artifact in their own stub")
    p.add_argument("--public-instances", type=int, default=ServingOptions.in_process_instances,
                   help="embedded flavour: instances of a public model that runs its encoder in process "
                        "(they take turns on the runtime; the second keeps one idle for Triton's batcher)")
    m = p.add_argument_group("memory (docs/memory.md)")
    m.add_argument("--max-batch-tokens", type=int, default=ServingOptions.max_batch_tokens,
                   help="padded tokens per runtime call on a CPU: bounds the activations a batch takes "
                        f"(a GPU takes at least {GPU_BATCH_TOKENS})")
    m.add_argument("--warmup-at-budget", action=argparse.BooleanOptionalAction, default=None,
                   help="warm up one batch at --max-batch-tokens when a model loads, so an out-of-memory "
                        "shows at start (default: on a GPU only; on a 2-core CPU it costs ~20 s per base model)")
    m.add_argument("--prepack-weights", action="store_true",
                   help="let ONNX Runtime prepack MatMul weights: a private copy of the weights in every "
                        "session instead of one memory-mapped copy per host")
    m.add_argument("--memory-arena", action="store_true",
                   help="keep ONNX Runtime's CPU arena: it holds the high-water mark of the largest batch")
    p.add_argument("--seed", type=int, default=0, help="seed for --synthetic weights")
    p.add_argument("--attention", choices=ATTENTIONS, default="eager",
                   help="eager (default; what ONNX Runtime's fusions need) or sdpa (PyTorch's fused attention, "
                        "for TorchScript on GPUs with large batches; see loadtest/RESULTS.md)")
    p.add_argument("--entailment-index", type=int, default=None,
                   help="zero-shot: logit index of 'entailment' (default: from label2id, else 0)")
    p.add_argument("--contradiction-index", type=int, default=None,
                   help="zero-shot: logit index of 'contradiction' (default: from label2id, else 2)")
    p.add_argument("--relevance-index", type=int, default=None,
                   help="reranking: logit index of the relevant label (default: 0 for one logit, else the label "
                        "named '1'/'relevant'/'similar'/'entailment', else 1 of two labels)")
    p.add_argument("--max-passages", type=int, default=None,
                   help="reranking: passages per query (default: structbert_serving.reranking.MAX_PASSAGES, 256); "
                        "more is INVALID_ARG")


def _tasks_parser(sub) -> None:
    sub.add_parser("tasks", help="list the task families (one line each: task, the variable naming a real "
                                 "checkpoint in scripts/serve.sh, public models, the ModelScope id@revision "
                                 "served by default, the real weights served offline, the head expected)")


def cmd_tasks(args) -> int:
    from structbert_registry.families import FAMILIES

    for family in FAMILIES.values():
        hub = family.checkpoint
        print(family.task, family.checkpoint_env, ",".join(m.name for m in family.public),
              f"{hub.model_id}@{hub.revision}" if hub else "-",
              f"offline:{family.offline.package}" if family.offline else "offline:synthetic",
              f"head: {hub.head}" if hub else "")
    return 0


def _prepare_parser(sub) -> None:
    p = sub.add_parser("prepare", help="choose the checkpoint of every task family (its variable, else the registry's "
                                      "ModelScope checkpoint, else real weights a package ships, else synthetic), "
                                      "print one line each, and export them (reused while unchanged)")
    p.add_argument("--out", type=Path, default=Path("model_repository"))
    p.add_argument("--tasks", default="", help="comma-separated (default: every family of `structbert-triton tasks`)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--synthetic", choices=SYNTHETIC_SIZES, default="base",
                   help="size of the random-weight checkpoint a family falls back to")
    p.add_argument("--offline", action="store_true", default=os.environ.get("STRUCTBERT_OFFLINE") == "1",
                   help="do not ask the hub (STRUCTBERT_OFFLINE=1); cached downloads are still served")


def cmd_prepare(args) -> int:
    from structbert_export.checkpoint import CheckpointError
    from structbert_export.validation import ValidationError
    from structbert_triton.prepare import PrepareError, prepare

    tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        print(f"error: --tasks {','.join(unknown)}: unknown; tasks: {', '.join(TASKS)}", file=sys.stderr)
        return 2
    try:
        prepare(args.out, tasks=tasks or None, precision=args.precision, synthetic=args.synthetic,
                offline=args.offline, emit=lambda line: print(line, flush=True))
    except (PrepareError, CheckpointError, ValidationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the embedded tritonserver on a model repository")
    p.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all interfaces)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--startup-timeout-s", type=float, default=300)
    p.add_argument("--log-file", type=Path, default=None)
    p.add_argument("--admin-key-env", default=None, metavar="VAR",
                   help="restrict the admin APIs (repository, config, statistics, ...) to requests carrying "
                        "the header 'admin-key: $VAR' (the key is read from that environment variable)")
    p.add_argument("--no-supervise", dest="supervise", action="store_false",
                   help="do not restart tritonserver when a Python-backend stub dies (it is still restarted "
                        "when it exits)")
    p.add_argument("--max-restarts", type=int, default=5,
                   help="give up (exit 1) after this many restarts within --restart-window-s")
    p.add_argument("--restart-window-s", type=float, default=300.0)
    g = p.add_argument_group("HTTP gateway (OpenAI/TEI-compatible routes; structbert_gateway)")
    g.add_argument("--no-gateway", dest="gateway", action="store_false", help="do not start the HTTP gateway")
    g.add_argument("--gateway-port", type=int, default=8080)
    g.add_argument("--gateway-api-key-env", default=None, metavar="VAR",
                   help="the gateway requires 'Authorization: Bearer $VAR' (off by default)")
    g.add_argument("--gateway-cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let browsers call the gateway from this origin (repeat)")
    g.add_argument("--gateway-max-client-batch", type=int, default=None, help="texts per HTTP request")
    g.add_argument("--gateway-max-body-bytes", type=int, default=None, help="HTTP request body limit")
    p.add_argument("server_args", nargs=argparse.REMAINDER, help="extra tritonserver flags after --")


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the pipelines on the embedded server against the PyTorch baseline")
    p.add_argument("--out", type=Path, default=Path("build/bench"), help="output folder (JSON, Markdown, PNG)")
    p.add_argument("--repository", type=Path, default=None,
                   help="the repository to measure (default: model_repository/ when it holds every workload's "
                        "task, else synthetic checkpoints of --size exported under --out)")
    p.add_argument("--size", choices=SYNTHETIC_SIZES, default="base")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--workloads", default="similarity,zero_shot,uie", help="comma-separated, of: " + ",".join(WORKLOADS))
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--duration-s", type=float, default=10.0, help="per concurrency level")
    p.add_argument("--baseline-duration-s", type=float, default=20.0)
    p.add_argument("--data-dir", type=Path, default=None, help="default: ../shared/data")
    p.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    p.add_argument("--encoder-instances", type=int, default=1)
    p.add_argument("--intra-op-threads", type=int, default=0)
    p.add_argument("--device", choices=DEVICES[1:], default="cpu",
                   help="cuda: TorchScript artifacts traced on the GPU (use --precision fp16), baseline PyTorch "
                        "eager FP16 on the same GPU; the report adds GPU utilisation and memory per process")
    p.add_argument("--attention", choices=ATTENTIONS, default="eager")
    p.add_argument("--gateway", action="store_true",
                   help="also measure every workload through the HTTP gateway, right after direct gRPC at each "
                        "concurrency (throughput ratio and p50 difference in the report)")
    p.add_argument("--gateway-protocol", choices=("http", "grpc"), default="http",
                   help="how the benchmarked gateway reaches Triton (its --triton-protocol)")
    p.add_argument("--client-processes", type=int, default=1,
                   help="spread the clients over this many processes (one Python client process tops out at a "
                        "few thousand requests/s: use 4-8 against a GPU)")


def cmd_bench(args) -> int:
    from structbert_bench.bench import BenchConfig, run_bench

    cfg = BenchConfig(out=args.out, repository=args.repository, size=args.size, precision=args.precision,
                      workloads=[w for w in args.workloads.split(",") if w],
                      concurrency=[int(c) for c in args.concurrency.split(",")], duration_s=args.duration_s,
                      baseline_duration_s=args.baseline_duration_s, data_dir=args.data_dir, protocol=args.protocol,
                      encoder_instances=args.encoder_instances, intra_op_threads=args.intra_op_threads,
                      device=args.device, attention=args.attention, client_processes=args.client_processes,
                      gateway=args.gateway, gateway_protocol=args.gateway_protocol)
    if cfg.device == "cuda" and cfg.precision == "int8":
        print("error: INT8 is an ONNX Runtime CPU artifact; use --precision fp16 on a GPU", file=sys.stderr)
        return 2
    run_bench(cfg)
    print(f"report: {args.out / 'results.md'}")
    return 0


def cmd_export(args) -> int:
    from structbert_export.checkpoint import CheckpointError
    from structbert_export.tasks import ExportRequest, run_export
    from structbert_export.validation import ValidationError

    opts = ServingOptions(flavour=args.flavour, overlength=args.overlength, max_batch_size=args.max_batch_size,
                          encoder_instances=args.encoder_instances, intra_op_threads=args.intra_op_threads,
                          device=args.device, encoder_in_process=args.encoder_in_process,
                          in_process_instances=args.public_instances, max_batch_tokens=args.max_batch_tokens,
                          warmup_at_budget=args.warmup_at_budget, prepack_weights=args.prepack_weights,
                          memory_arena=args.memory_arena)
    req = ExportRequest(task=args.task, out=args.out, model_dir=args.model_dir, model_id=args.model_id,
                        synthetic=args.synthetic, precision=args.precision, format=args.format, seed=args.seed,
                        attention=args.attention,
                        entailment_index=args.entailment_index, contradiction_index=args.contradiction_index,
                        relevance_index=args.relevance_index,
                        **({"max_passages": args.max_passages} if args.max_passages is not None else {}))
    try:
        models = run_export(req, opts)
    except (CheckpointError, ValidationError, ValueError) as exc:
        log.error("export failed: %s", exc)
        return 2
    print(f"exported {', '.join(models)} -> {req.out}")
    return 0


def _gateway(args, server):
    """The HTTP gateway in front of ``server`` (started by ``serve`` unless ``--no-gateway``)."""
    from structbert_gateway.process import GatewayProcess

    extra: list[str] = []
    if args.gateway_api_key_env:
        extra += ["--api-key-env", args.gateway_api_key_env]
    for origin in args.gateway_cors_origin:
        extra += ["--cors-origin", origin]
    if args.gateway_max_client_batch:
        extra += ["--max-client-batch", str(args.gateway_max_client_batch)]
    if args.gateway_max_body_bytes:
        extra += ["--max-body-bytes", str(args.gateway_max_body_bytes)]
    log_file = args.log_file.with_name(args.log_file.name + ".gateway") if args.log_file else None
    return GatewayProcess(server.grpc_url, args.model_repository.resolve(), triton_http_url=server.http_url,
                          host=args.host, port=args.gateway_port, extra_args=extra, log_file=log_file)


def cmd_serve(args) -> int:
    from structbert_gateway.process import GatewayError
    from structbert_serving.embedded_server import (
        EmbeddedServer,
        ServerError,
        restricted_api_flags,
        taken_ports,
    )
    from structbert_serving.supervisor import CrashLoopError, RestartPolicy, supervise

    ports = {"--http-port": args.http_port, "--grpc-port": args.grpc_port, "--metrics-port": args.metrics_port,
             **({"--gateway-port": args.gateway_port} if args.gateway else {})}
    taken = taken_ports(args.host, {o: p for o, p in ports.items() if p})  # before any model loads
    if taken:
        print("error: " + "; ".join(f"port {port} on {args.host} is already in use (change it with {option} PORT)"
                                    for option, port in taken.items())
              + (". GATEWAY=0 (--no-gateway) serves without the gateway" if "--gateway-port" in taken else ""),
              file=sys.stderr)
        return 2

    extra = [a for a in args.server_args if a != "--"]
    if args.admin_key_env:
        key = os.environ.get(args.admin_key_env, "")
        if not key:
            print(f"error: --admin-key-env {args.admin_key_env}: that environment variable is empty", file=sys.stderr)
            return 2
        extra += restricted_api_flags(key)
    server = EmbeddedServer(args.model_repository, host=args.host, http_port=args.http_port,
                            grpc_port=args.grpc_port, metrics_port=args.metrics_port, extra_args=extra,
                            log_file=args.log_file)
    try:
        server.start(timeout_s=args.startup_timeout_s)
    except ServerError as exc:
        print(f"error: the server did not come up.\n{exc}", file=sys.stderr)
        return 1
    gateway = _gateway(args, server) if args.gateway else None
    if gateway is not None:
        if args.gateway_api_key_env and not os.environ.get(args.gateway_api_key_env):
            server.stop()
            print(f"error: --gateway-api-key-env {args.gateway_api_key_env}: that environment variable is empty",
                  file=sys.stderr)
            return 2
        try:
            gateway.start(timeout_s=args.startup_timeout_s)
        except GatewayError as exc:
            server.stop()
            print(f"error: the HTTP gateway did not come up (--no-gateway to serve without it).\n{exc}",
                  file=sys.stderr)
            return 1
    print(f"tritonserver ready: HTTP {server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}\n"
          + (f"gateway ready: {gateway.url}/v1/embeddings (OpenAI), /embed (TEI), /v2/embed (Cohere), /docs, /playground\n" if gateway else "")
          + f"log: {server.log_file}  (Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    policy = RestartPolicy(max_restarts=args.max_restarts, window_s=args.restart_window_s)
    try:
        supervise(server, policy=policy, stop=stop, check_stubs=args.supervise,
                  startup_timeout_s=args.startup_timeout_s, gateway=gateway,
                  on_restart=lambda reason: print(
                      f"gateway restarted ({reason}): {gateway.url}" if reason.startswith("the gateway") else
                      f"tritonserver restarted ({reason}): HTTP {server.http_url}  gRPC {server.grpc_url}", flush=True))
    except (CrashLoopError, ServerError, GatewayError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if gateway is not None:
            gateway.stop()
        server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="structbert-triton", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _export_parser(sub)
    _serve_parser(sub)
    _bench_parser(sub)
    _tasks_parser(sub)
    _prepare_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("onnx_model", "onnx_model_bert", "fusion_base", "fusion_utils", "fusion_skiplayernorm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return {"export": cmd_export, "serve": cmd_serve, "bench": cmd_bench, "tasks": cmd_tasks,
            "prepare": cmd_prepare}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
