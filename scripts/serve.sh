#!/usr/bin/env bash
# Set up a fresh clone, export every pipeline into model_repository/, and serve it with the
# embedded tritonserver (HTTP :8000, gRPC :8001, metrics :8002) until Ctrl-C.
#   EMBEDDING_MODEL_DIR / ZERO_SHOT_MODEL_DIR / PAIR_MODEL_DIR / UIE_MODEL_DIR   real checkpoints
#   SYNTHETIC=base|large|tiny   size of the random-weight checkpoints otherwise (default: base)
#   PRECISION=fp32|fp16|int8    (default: fp32)    HOST=0.0.0.0 to listen beyond loopback
#   GATEWAY_PORT (default 8080): the OpenAI/TEI-compatible HTTP gateway; GATEWAY=0 serves without it
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
REPO=${REPO:-model_repository}
export_task() {  # export_task TASK CHECKPOINT_DIR
  local source=(--synthetic "${SYNTHETIC:-base}")
  if [ -n "$2" ]; then source=(--model-dir "$2"); fi
  .venv/bin/structbert-triton export --task "$1" "${source[@]}" --precision "${PRECISION:-fp32}" --out "$REPO"
}
export_task embedding "${EMBEDDING_MODEL_DIR:-${MODEL_DIR:-}}"
export_task zero-shot "${ZERO_SHOT_MODEL_DIR:-}"
export_task pair-classification "${PAIR_MODEL_DIR:-}"
export_task uie "${UIE_MODEL_DIR:-}"
gateway=(--gateway-port "${GATEWAY_PORT:-8080}")
if [ "${GATEWAY:-1}" = "0" ]; then gateway=(--no-gateway); fi
exec .venv/bin/structbert-triton serve --model-repository "$REPO" --host "${HOST:-127.0.0.1}" \
  --http-port "${HTTP_PORT:-8000}" --grpc-port "${GRPC_PORT:-8001}" --metrics-port "${METRICS_PORT:-8002}" \
  "${gateway[@]}"
