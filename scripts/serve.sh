#!/usr/bin/env bash
# Set up a fresh clone, export every pipeline into build/model_repository, and serve it with the
# embedded tritonserver (HTTP :8000, gRPC :8001, metrics :8002) until Ctrl-C.
#   MODEL_DIR=/path/to/checkpoint  use a real checkpoint for the embedding pipeline
#   SYNTHETIC=base|large|tiny      size of the random-weight checkpoint otherwise (default: base)
#   PRECISION=fp32|fp16|int8       (default: fp32)    HOST=0.0.0.0 to listen beyond loopback
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
REPO=${REPO:-build/model_repository}
SOURCE=(--synthetic "${SYNTHETIC:-base}")
if [ -n "${MODEL_DIR:-}" ]; then SOURCE=(--model-dir "$MODEL_DIR"); fi
.venv/bin/structbert-triton export --task embedding "${SOURCE[@]}" --precision "${PRECISION:-fp32}" --out "$REPO"
exec .venv/bin/structbert-triton serve --model-repository "$REPO" --host "${HOST:-127.0.0.1}" \
  --http-port "${HTTP_PORT:-8000}" --grpc-port "${GRPC_PORT:-8001}" --metrics-port "${METRICS_PORT:-8002}"
