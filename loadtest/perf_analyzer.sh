#!/usr/bin/env bash
# Triton's perf_analyzer against a running server, with real Chinese text for the model.
#   loadtest/perf_analyzer.sh zero_shot_classification 127.0.0.1:8001 [extra perf_analyzer flags]
# The binary matching the embedded server (2.51) ships inside the tritonclient==2.51.0 wheel; it is
# fetched once into build/perf_analyzer and run with the CUDA runtime and libb64 that the
# nvidia-pytriton wheel already carries (it needs no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?model name}; url=${2:-127.0.0.1:8001}; shift $(( $# >= 2 ? 2 : 1 ))
dest=build/perf_analyzer
bin=$dest/tritonclient-2.51.0.data/data/bin/perf_analyzer
if [ ! -x "$bin" ]; then
  mkdir -p "$dest"
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
      -d "$dest" "tritonclient==2.51.0"
  (cd "$dest" && unzip -q -o tritonclient-2.51.0-*.whl "tritonclient-2.51.0.data/data/bin/perf_analyzer")
  chmod +x "$bin"
fi
libs=$(.venv/bin/python -c "import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).resolve().parents[1] / 'nvidia_pytriton.libs')")
mkdir -p "$dest/libs"
ln -sf "$libs"/libb64-*.so.0d "$dest/libs/libb64.so.0d"
ln -sf "$libs"/libcudart-*.so.12* "$dest/libs/libcudart.so.12"
export LD_LIBRARY_PATH="$PWD/$dest/libs:$libs:${LD_LIBRARY_PATH:-}"
exec "$bin" -m "$model" -u "$url" -i grpc --input-data "loadtest/perf_analyzer/$model.json" \
    --measurement-interval 3000 "$@"
