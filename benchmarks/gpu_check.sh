#!/usr/bin/env bash
# The GPU check, in one go (at most 8 minutes: every step has its own time limit). On an H200
# (2026-11-30) the tests and meta-batch 25 took about 128 s, meta-batch 1000 in fp32 about 193 s
# when its reference was timed 5 times (now once: about 50 s less; not yet rerun on a GPU):
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

export PYTHONUNBUFFERED=1  # a step stopped at its limit still leaves what it printed
run 60 tests.txt "$PY" -m pytest -m gpu tests/workers/metalearn/test_gpu.py -q -p no:randomly -rs
throughput() {  # throughput LIMIT_SECONDS LOG_NAME ARGS...: engine_throughput.py on the GPU
    local limit=$1 log=$2
    shift 2
    run "$limit" "$log" "$PY" benchmarks/engine_throughput.py --device cuda --iterations 20 "$@"
}
# At meta-batch 1000 the per-task reference takes about 10 s per iteration (H200 host, 2026-11-30):
# one iteration, timed once (the engine's sides still take the median of 5 repeats).
throughput 120 throughput_mb25.txt --meta-batch 25 --slow-iterations 5
throughput 50 throughput_mb25_bf16.txt --meta-batch 25 --slow-iterations 5 --bf16 --no-compile
throughput 150 throughput_mb1000.txt --meta-batch 1000 --slow-iterations 1 --slow-repeats 1
throughput 100 throughput_mb1000_bf16.txt --meta-batch 1000 --slow-iterations 1 --slow-repeats 1 --bf16 --no-compile

echo "== RESULT lines"
for log in "$OUT"/throughput_*.txt; do
    echo "$(basename "$log"): $(grep '^RESULT' "$log" || echo 'no RESULT (failed or timed out)')"
done
exit $status
