#!/usr/bin/env bash
# The GPU check, in one go (at most 6.7 minutes: every step has its own time limit):
#   1. the tests that need CUDA (pytest -m gpu: gradient checks, fp32 and bf16 runs, resume, adapt);
#   2. benchmarks/engine_throughput.py --device cuda at meta-batch 25 and 1000: fp32 with the
#      compiled side (so with and without compile), and bf16 without it.
# Run from anywhere, with a Python whose torch has CUDA:
#   PYTHON=.venv/bin/python benchmarks/gpu_check.sh [OUT_DIR]      # default OUT_DIR: artifacts/gpu_check
# Every output lands in OUT_DIR; the last lines are the benchmarks' RESULT lines. Exit 1 if anything
# failed or no GPU is visible. Put the figures in the README with the date and the GPU's name.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-artifacts/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" - <<'PY' 2>&1 | tee "$OUT/device.txt"; then
import sys, torch
ok = torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if ok else "no CUDA device"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {name}")
sys.exit(0 if ok else 1)
PY
    echo "gpu_check: no CUDA device visible to $PY; nothing was measured" >&2
    exit 1
fi
date -u +"%Y-%m-%dT%H:%M:%SZ" >> "$OUT/device.txt"

status=0
run() {  # run LIMIT_SECONDS LOG_NAME COMMAND...
    local limit=$1 log=$2
    shift 2
    echo "== $* (limit ${limit} s)"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$log"
    local code=${PIPESTATUS[0]}
    if [ "$code" -ne 0 ]; then
        echo "gpu_check: '$*' exited $code" | tee -a "$OUT/$log" >&2
        status=1
    fi
}

run 80 tests.txt "$PY" -m pytest -m gpu tests/workers/metalearn/test_gpu.py -q -p no:randomly -rs
for mb in 25 1000; do
    run 120 "throughput_mb${mb}.txt" "$PY" benchmarks/engine_throughput.py --device cuda --meta-batch "$mb" \
        --iterations 20
    run 40 "throughput_mb${mb}_bf16.txt" "$PY" benchmarks/engine_throughput.py --device cuda \
        --meta-batch "$mb" --iterations 20 --bf16 --no-compile
done

echo "== RESULT lines"
for log in "$OUT"/throughput_*.txt; do
    echo "$(basename "$log"): $(grep '^RESULT' "$log" || echo 'no RESULT (failed or timed out)')"
done
exit $status
