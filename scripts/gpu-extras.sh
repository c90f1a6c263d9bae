#!/usr/bin/env bash
# Wheels the GPU tier needs on a GPU host without network, beside what
# ../shared/tools/pack-gpu-bundle.sh packs: pytest (and its few pure-Python dependencies).
#   scripts/gpu-extras.sh [BUNDLE_DIR] [PYTHON_VERSION]      (defaults: .gpu-bundle 3.12)
# On the GPU host, after `bash .gpu-bundle/unpack.sh`:
#   /tmp/sb/venv/bin/python -m pip install -q --no-index .gpu-bundle/extras/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.gpu-bundle}/extras
PYV=${2:-3.12}
mkdir -p "$OUT"
.venv/bin/python -m pip download -q --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_17_x86_64 --platform any -d "$OUT" pytest pytest-timeout
ls "$OUT"
