#!/usr/bin/env bash
# Create .venv and install everything (idempotent; a second run takes seconds).
# torch is pinned to 2.13.0 first: that spelling takes the local CPU build on our machines,
# any other spelling pulls several GB of CUDA wheels.
# Also the side environments of the container-contract tier (tests/contract), pinned by the
# container release facts (export/structbert_export/container_release.json):
#   .venv-contract  the container's ONNX Runtime and tritonclient (its model_config proto)
#   .venv-stub      the image's Python (its Python-backend stub's: STUB_PYTHON, default python<stub_python>
#                   on PATH or under pyenv) with the stub's numpy and tokenizers and the gateway's
#                   packages, as deploy/Dockerfile installs them; skipped, and the tests that need it
#                   skip, where there is no such Python
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.structbert-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi

facts=export/structbert_export/container_release.json
pin() { .venv/bin/python -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$facts" "$1"; }
gateway_pins() {  # one NAME==VERSION a line
  .venv/bin/python -c "import json, sys; [print(f'{n}=={v}') for n, v in json.load(open(sys.argv[1]))['gateway_packages'].items()]" "$facts"
}
side_venv() {  # side_venv DIR PYTHON PACKAGES...
  local dir=$1 python=$2; shift 2
  if [ -f "$dir/.structbert-installed" ] && [ ! "$facts" -nt "$dir/.structbert-installed" ]; then return; fi
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
  touch "$dir/.structbert-installed"
}
side_venv .venv-contract "$PYTHON" "onnxruntime==$(pin onnxruntime)" "tritonclient[grpc]==$(pin tritonclient)" \
  "numpy==$(pin numpy)"
stub=$(pin stub_python)
runs() { [ -n "$1" ] && "$1" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$stub'" 2>/dev/null; }
STUB_PYTHON=${STUB_PYTHON:-}
for candidate in "python$stub" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$stub".*/bin/"python$stub"; do
  if [ -z "$STUB_PYTHON" ] && runs "$candidate"; then STUB_PYTHON=$candidate; fi
done
if runs "$STUB_PYTHON"; then
  mapfile -t gateway < <(gateway_pins)
  side_venv .venv-stub "$STUB_PYTHON" "numpy==$(pin numpy)" "tokenizers==$(pin tokenizers)" "${gateway[@]}"
else
  echo "bootstrap: no Python $stub here (set STUB_PYTHON): tests/contract skips the stub-Python import check" >&2
fi
