#!/usr/bin/env bash
# One prepared run on a fresh GPU host (H100/H200, Python 3.12, torch with CUDA, no network):
# everything the GPU targets of issue 16 need, written into ONE archive. Budget: under 8 minutes.
#
#   scripts/gpu-check.sh --out DIR [--bundle .gpu-bundle]     # on the GPU host, from the project root
#   scripts/gpu-check.sh --smoke --out DIR                    # rehearsal on a CPU machine (tiny models,
#                                                             # a few seconds per step; CI runs it)
#
# Before (here, with network):  ../shared/tools/pack-gpu-bundle.sh .gpu-bundle && scripts/gpu-extras.sh .gpu-bundle
# and carry .gpu-bundle/ with the checkout (git-ignored, ~48 MB).
#
# Steps (each bounded by `timeout`, each logged; a failed step is recorded and the run goes on; no step
# starts after GPU_CHECK_BUDGET_S=450 s, so the whole run stays under 8 minutes):
#   setup     unpack the bundle unless /tmp/sb/venv already serves (bash .gpu-bundle/unpack.sh), pytest wheels
#   env       nvidia-smi -q, versions; nvidia-smi samplers (utilisation every 0.5 s, memory per process every 1 s)
#   export    synthetic base (embedding, zero-shot, uie) and large (pair-classification) families,
#             TorchScript FP16 traced and validated on the GPU (--device cuda)
#   pytest    pytest -m gpu tests/gpu (the GPU tier)
#   bench     structbert-triton bench --device cuda on both repositories (baseline in the same run)
#   overhead  python -m structbert_bench.overhead: served vs in-process on the base repository
# Result: DIR/gpu-check.tar.gz (logs, JSON/Markdown/PNG of every step, nvidia-smi CSVs, no weights)
# and DIR/summary.md (step, exit code, seconds) — two files, under the device tool's 8.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=0; OUT=""; BUNDLE=.gpu-bundle
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --out) OUT=$2; shift ;;
    --bundle) BUNDLE=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$OUT" ] || { echo "usage: scripts/gpu-check.sh [--smoke] --out DIR [--bundle DIR]" >&2; exit 2; }
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
WORK=$OUT/work; rm -rf "$WORK"; mkdir -p "$WORK/logs"
SUMMARY=$OUT/summary.md
START=$(date +%s)
echo "# gpu-check $(date -u '+%Y-%m-%d %H:%M:%S') UTC ($([ $SMOKE = 1 ] && echo smoke, CPU || echo GPU))" > "$SUMMARY"
printf '\n| step | exit | seconds |\n|---|---|---|\n' >> "$SUMMARY"

BUDGET_S=${GPU_CHECK_BUDGET_S:-$([ $SMOKE = 1 ] && echo 1500 || echo 450)}  # no step starts after it; each is cut to what is left
step() {  # step NAME TIMEOUT_S COMMAND...: run, log, record
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  local left=$(( BUDGET_S - (t0 - START) ))
  if [ $left -le 0 ]; then echo "| $name | skipped: budget spent | 0 |" >> "$SUMMARY"; return 0; fi
  [ $limit -le $left ] || limit=$left
  echo "== $name (limit ${limit}s)"
  timeout -k 10 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1
  local rc=$?
  echo "| $name | $rc | $(( $(date +%s) - t0 )) |" >> "$SUMMARY"
  [ $rc = 0 ] || { echo "   $name failed ($rc): tail of $WORK/logs/$name.log"; tail -5 "$WORK/logs/$name.log"; }
  return 0
}

if [ $SMOKE = 1 ]; then
  PY=$ROOT/.venv/bin/python; DEVICE=cpu; FORMAT=onnx; PRECISION=fp32; BASE=tiny; LARGE=tiny
  BENCH_ARGS=(--concurrency 1,2 --duration-s 0.3 --baseline-duration-s 0.3 --client-processes 1)
  BENCH_BASE=similarity; BENCH_LARGE=pair
  OVERHEAD_ARGS=(--workloads similarity --concurrency 1,2 --duration-s 0.3 --rounds 1 --client sdk)
  EXPORT_BASE=(embedding); EXPORT_LARGE=(pair-classification); PYTEST_LIMIT=120
else
  PY=/tmp/sb/venv/bin/python; DEVICE=cuda; FORMAT=torchscript; PRECISION=fp16; BASE=base; LARGE=large
  # expected on an H100: setup 20 s, exports 60 + 40 s, pytest 90 s, benches 90 + 30 s, overhead 60 s
  BENCH_ARGS=(--concurrency 1,32,128 --duration-s 3 --baseline-duration-s 3 --client-processes 8)
  BENCH_BASE=similarity,zero_shot,uie; BENCH_LARGE=pair
  OVERHEAD_ARGS=(--workloads similarity,zero_shot --concurrency 1,8,32 --duration-s 2 --rounds 1)
  EXPORT_BASE=(embedding zero-shot uie); EXPORT_LARGE=(pair-classification); PYTEST_LIMIT=150
  if [ ! -x "$PY" ] || ! "$PY" -c "import tritonclient.grpc, structbert_serving" 2>/dev/null; then
    step setup 120 bash -c "bash '$BUNDLE/unpack.sh' && if ls '$BUNDLE'/extras/*.whl >/dev/null 2>&1; then \
      $PY -m pip install -q --no-index '$BUNDLE'/extras/*.whl; fi"
  fi
fi
export STRUCTBERT_DATA_DIR=${STRUCTBERT_DATA_DIR:-$([ -d "$BUNDLE/data" ] && echo "$(cd "$BUNDLE/data" && pwd)" || echo "")}
[ -n "$STRUCTBERT_DATA_DIR" ] || unset STRUCTBERT_DATA_DIR
export STRUCTBERT_TRITON_CACHE=$WORK/cache   # synthetic checkpoints made here, archived without weights

# env: versions and the GPU; samplers run until the end
step env 60 bash -c "'$PY' -c 'import sys, torch, numpy; print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"\"); print(\"numpy\", numpy.__version__)'; git -C '$ROOT' log -1 --oneline; nproc; free -g; (nvidia-smi -q || echo 'no nvidia-smi')"
SAMPLERS=()
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,memory.total,power.draw \
    --format=csv -lms 500 > "$WORK/nvidia_smi_utilisation.csv" 2>&1 & SAMPLERS+=($!)
  nvidia-smi --query-compute-apps=timestamp,pid,process_name,used_memory --format=csv -l 1 \
    > "$WORK/nvidia_smi_processes.csv" 2>&1 & SAMPLERS+=($!)
else
  echo "no nvidia-smi on this machine: utilisation and per-process GPU memory not sampled" > "$WORK/nvidia_smi_utilisation.csv"
fi

export_cmd() {  # export_cmd REPO SIZE TASK...: one shell command exporting every task into REPO
  local repo=$1 size=$2 cmd="true"; shift 2
  for task in "$@"; do
    cmd="$cmd && '$PY' -m structbert_triton export --task $task --synthetic $size --format $FORMAT \
--precision $PRECISION --device $DEVICE --out '$repo'"
  done
  echo "$cmd"
}
step export-base 240 bash -c "$(export_cmd "$WORK/repo-base" $BASE "${EXPORT_BASE[@]}")"
step export-large 240 bash -c "$(export_cmd "$WORK/repo-large" $LARGE "${EXPORT_LARGE[@]}")"
step pytest-gpu $PYTEST_LIMIT "$PY" -m pytest -m gpu -q -p no:cacheprovider -rs tests/gpu --junitxml "$WORK/pytest-gpu.xml"
step bench-base 240 "$PY" -m structbert_triton bench --device $DEVICE --repository "$WORK/repo-base" \
  --workloads $BENCH_BASE --out "$WORK/bench-base" "${BENCH_ARGS[@]}"
step bench-large 180 "$PY" -m structbert_triton bench --device $DEVICE --repository "$WORK/repo-large" \
  --workloads $BENCH_LARGE --out "$WORK/bench-large" "${BENCH_ARGS[@]}"
step overhead 180 "$PY" -m structbert_bench.overhead --repository "$WORK/repo-base" --device $DEVICE \
  --out "$WORK/overhead" "${OVERHEAD_ARGS[@]}"

for pid in "${SAMPLERS[@]}"; do kill "$pid" 2>/dev/null; done
echo "| total | | $(( $(date +%s) - START )) |" >> "$SUMMARY"
cp "$SUMMARY" "$WORK/summary.md"
# every result, no weights (artifacts and synthetic checkpoints stay behind)
tar -C "$WORK" --exclude='*.pt' --exclude='*.onnx' --exclude='*.onnx.data' --exclude='*.bin' \
  --exclude='*.safetensors' --exclude='cache' -czf "$OUT/gpu-check.tar.gz" .
rm -rf "$WORK"
echo "wrote $OUT/gpu-check.tar.gz and $SUMMARY"
cat "$SUMMARY"
