"""The gateway's options, with their defaults in one place (the CLI and ``structbert-triton serve`` read them)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 8080


@dataclass
class GatewayOptions:
    triton_url: str = "127.0.0.1:8001"  # Triton's gRPC endpoint (health, metadata; inference with "grpc")
    triton_http_url: str | None = None  # Triton's HTTP endpoint (inference with triton_protocol "http")
    triton_protocol: str = "auto"  # auto: http when triton_http_url is given (less CPU, lower latency), else grpc
    repository: Path | None = None  # the local model repository: served models, tokenizer (usage counts)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    pool_size: int = 4  # gRPC channels to Triton
    timeout_s: float = 60.0  # per Triton call: then 504
    batch_size: int = 32  # rows per Triton request (lists are split, sent concurrently); Triton's max is 64
    max_client_batch: int = 256  # texts per HTTP request: more is 413
    max_body_bytes: int = 8 * 1024 * 1024  # request body: more is 413
    max_concurrent_requests: int = 1024  # inference requests in the gateway at once: more is a fast 429
    api_key: str | None = None  # Authorization: Bearer <key>; off when None
    cors_origins: list[str] = field(default_factory=list)
    startup_timeout_s: float = 300.0  # waiting for Triton when the repository is not local
    triton_headers: dict[str, str] = field(default_factory=dict)
    default_model: str | None = None  # the model POST / answers for (None: the embedding model)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = GatewayOptions()
    p.add_argument("--triton-url", default=d.triton_url, help="Triton's gRPC endpoint host:port")
    p.add_argument("--triton-http-url", default=None, help="Triton's HTTP endpoint host:port (for --triton-protocol http)")
    p.add_argument("--triton-protocol", choices=("auto", "grpc", "http"), default=d.triton_protocol,
                   help="how inference requests reach Triton (auto: http when --triton-http-url is given; health "
                        "and metadata always use gRPC); see loadtest/RESULTS.md for the measured difference")
    p.add_argument("--repository", type=Path, default=None,
                   help="the model repository Triton serves, if local: which pipelines exist, and the server's "
                        "tokenizer for usage.prompt_tokens (without it, Triton is asked and 0 tokens are reported)")
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--pool-size", type=int, default=d.pool_size, help="gRPC channels to Triton")
    p.add_argument("--timeout-s", type=float, default=d.timeout_s, help="per Triton call; then 504")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="rows per Triton request (at most 64)")
    p.add_argument("--max-client-batch", type=int, default=d.max_client_batch, help="texts per request; more: 413")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="request body size; more: 413")
    p.add_argument("--max-concurrent-requests", type=int, default=d.max_concurrent_requests,
                   help="inference requests in the gateway at once; more are refused at once with 429")
    p.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="require 'Authorization: Bearer $VAR' on every route but /health and /metrics")
    p.add_argument("--cors-origin", action="append", default=[], dest="cors_origins",
                   help="allow browser requests from this origin (repeat; '*' for any)")
    p.add_argument("--startup-timeout-s", type=float, default=d.startup_timeout_s)
    p.add_argument("--default-model", default=None, metavar="MODEL",
                   help="the model POST / answers for, as a one-model TEI server does (default: text_embedding); "
                        "every model also answers at /models/MODEL")


def from_args(args: argparse.Namespace) -> GatewayOptions:
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "")
        if not api_key:
            raise SystemExit(f"error: --api-key-env {args.api_key_env}: that environment variable is empty")
    if not 1 <= args.batch_size <= 64:
        raise SystemExit("error: --batch-size must be between 1 and 64 (Triton's max_batch_size)")
    if args.triton_protocol == "http" and not args.triton_http_url:
        raise SystemExit("error: --triton-protocol http needs --triton-http-url")
    protocol = args.triton_protocol
    if protocol == "auto":
        protocol = "http" if args.triton_http_url else "grpc"
    return GatewayOptions(triton_url=args.triton_url, triton_http_url=args.triton_http_url,
                          triton_protocol=protocol, repository=args.repository, host=args.host, port=args.port,
                          pool_size=args.pool_size, timeout_s=args.timeout_s, batch_size=args.batch_size,
                          max_client_batch=args.max_client_batch, max_body_bytes=args.max_body_bytes,
                          max_concurrent_requests=args.max_concurrent_requests, api_key=api_key,
                          cors_origins=list(args.cors_origins), startup_timeout_s=args.startup_timeout_s,
                          default_model=args.default_model)
