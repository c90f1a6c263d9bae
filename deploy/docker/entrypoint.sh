#!/usr/bin/env bash
# Start tritonserver with structbert-triton's production flag set (the same set as
# structbert_serving.embedded_server.PRODUCTION_FLAGS + restricted_api_flags; tests/deploy checks).
# The image runs it behind NGC's /opt/nvidia/nvidia_entrypoint.sh; extra arguments go to tritonserver.
# TRITON_ADMIN_KEY (required) guards the admin APIs: send it as the header "admin-key".
# MODEL_REPOSITORY (default /models), HTTP_PORT / GRPC_PORT / METRICS_PORT (8000 / 8001 / 8002).
set -euo pipefail
: "${TRITON_ADMIN_KEY:?set TRITON_ADMIN_KEY: it guards the model-repository, config and statistics APIs}"
MODEL_REPOSITORY=${MODEL_REPOSITORY:-/models}
RESTRICTED=model-repository,model-config,shared-memory,statistics,trace,logging
exec tritonserver \
  --model-repository="${MODEL_REPOSITORY}" \
  --model-control-mode=none \
  --strict-readiness=true \
  --exit-on-error=true \
  --disable-auto-complete-config \
  --metrics-config=summary_latencies=true \
  --http-restricted-api="${RESTRICTED}:admin-key=${TRITON_ADMIN_KEY}" \
  --grpc-restricted-protocol="${RESTRICTED}:admin-key=${TRITON_ADMIN_KEY}" \
  --allow-metrics=true \
  --http-port="${HTTP_PORT:-8000}" --grpc-port="${GRPC_PORT:-8001}" --metrics-port="${METRICS_PORT:-8002}" \
  "$@"
