#!/usr/bin/env bash
# Set up a fresh clone, export every pipeline into model_repository/, and serve it with the
# embedded tritonserver (HTTP :8000, gRPC :8001, metrics :8002) until Ctrl-C.
#   every task family of the registry (`structbert-triton tasks`: structbert_triton/families.py);
#   EMBEDDING_MODEL_DIR (or MODEL_DIR) / ZERO_SHOT_MODEL_DIR / PAIR_MODEL_DIR / UIE_MODEL_DIR /
#   RERANK_MODEL_DIR ...   real checkpoints (the variable each family names)
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
EMBEDDING_MODEL_DIR=${EMBEDDING_MODEL_DIR:-${MODEL_DIR:-}}
.venv/bin/structbert-triton tasks > "${TMPDIR:-/tmp}/structbert-tasks.$$"
while read -r task variable _; do
  export_task "$task" "${!variable:-}"
done < "${TMPDIR:-/tmp}/structbert-tasks.$$"
rm -f "${TMPDIR:-/tmp}/structbert-tasks.$$"
gateway=(--gateway-port "${GATEWAY_PORT:-8080}")
if [ "${GATEWAY:-1}" = "0" ]; then gateway=(--no-gateway); fi
exec .venv/bin/structbert-triton serve --model-repository "$REPO" --host "${HOST:-127.0.0.1}" \
  --http-port "${HTTP_PORT:-8000}" --grpc-port "${GRPC_PORT:-8001}" --metrics-port "${METRICS_PORT:-8002}" \
  "${gateway[@]}"
