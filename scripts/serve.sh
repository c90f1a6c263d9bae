#!/usr/bin/env bash
# Set up a fresh clone, export every pipeline into model_repository/, and serve it with the
# embedded tritonserver (HTTP :8000, gRPC :8001, metrics :8002) and the HTTP gateway (:8080) until Ctrl-C.
#   Each task family of the registry (`structbert-triton tasks`: structbert_registry/families.py)
#   serves, in order (`structbert-triton prepare`, one line per family says which and why):
#     its variable -- EMBEDDING_MODEL_DIR (or MODEL_DIR) / ZERO_SHOT_MODEL_DIR / PAIR_MODEL_DIR /
#       UIE_MODEL_DIR / RERANK_MODEL_DIR ...: a local checkpoint directory or a hub id owner/name[@revision];
#     else the registry's ModelScope checkpoint, downloaded once into the cache
#       (~/.cache/structbert-triton/hub, STRUCTBERT_TRITON_CACHE) and checked (sha256);
#     else, when the hub cannot be reached (probe bounded, STRUCTBERT_HUB_PROBE_S=5), real weights
#       a package ships (embedding: all-MiniLM-L6-v2), else random weights of size SYNTHETIC.
#   Exports are reused while the checkpoint and the exporter are unchanged.
#   SYNTHETIC=base|large|tiny   size of the random-weight fallback (default: base)
#   STRUCTBERT_OFFLINE=1        do not ask the hub (cached downloads are still served)
#   MODELSCOPE_ENDPOINT         the hub (modelscope's own setting; default https://www.modelscope.cn)
#   TASKS=embedding,uie         serve only these families (default: all)
#   PRECISION=fp32|fp16|int8    (default: fp32)    HOST=0.0.0.0 to listen beyond loopback
#   GATEWAY_PORT (default 8080): the OpenAI/TEI-compatible HTTP gateway; GATEWAY=0 serves without it
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
REPO=${REPO:-model_repository}
.venv/bin/structbert-triton prepare --out "$REPO" --precision "${PRECISION:-fp32}" \
  --synthetic "${SYNTHETIC:-base}" --tasks "${TASKS:-}"
gateway=(--gateway-port "${GATEWAY_PORT:-8080}")
if [ "${GATEWAY:-1}" = "0" ]; then gateway=(--no-gateway); fi
exec .venv/bin/structbert-triton serve --model-repository "$REPO" --host "${HOST:-127.0.0.1}" \
  --http-port "${HTTP_PORT:-8000}" --grpc-port "${GRPC_PORT:-8001}" --metrics-port "${METRICS_PORT:-8002}" \
  "${gateway[@]}"
