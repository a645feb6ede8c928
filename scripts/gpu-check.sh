#!/usr/bin/env bash
# Checks cupool on an NVIDIA machine that has no cargo, from the executables that
# scripts/prepare-gpu-check.sh built.
#
# Usage:  gpu-check.sh [FOLDER]     (FOLDER defaults to .device/; it holds tests/, golden/, cupool, ...)
# Output: eight files under ${OUT:-./gpu-check-out} (a lent GPU machine returns at most eight),
#         and a summary table (step, status, seconds) printed last.
#
# Steps, most important first, so that a run cut short still says the most:
#   machine.txt    nvidia-smi, `cupool check`, and the seed GAP demo on the GPU (f32 and bf16);
#   tests.log      every test executable with CUPOOL_REQUIRE_GPU=1 (GPU tests fail, never skip);
#   bench.json     `cupool bench --device cuda`;
#   compare.md     compare_torch.py's table beside ours, when torch imports (torch.json: its rows);
#   sanitizer.log  compute-sanitizer memcheck and racecheck on the parity test, when present;
#   progress.log   the bench's and compare_torch.py's progress lines.
#
# Time: a lent GPU is paid by the minute, so the whole script keeps to GPU_CHECK_SECONDS (default
# 480): each step gets at most what is left, and a step that would get under 15 s is skipped.
# GPU_CHECK_ROW_SECONDS (default 0.05) is the bench's --row-seconds: GPU calls take micro- to
# milliseconds, and each timed sample already batches calls to about a millisecond.
set -uo pipefail

DIR=${1:-.device}
OUT=${OUT:-./gpu-check-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DIR=$(cd "$DIR" 2>/dev/null && pwd) || { echo "gpu-check: no folder ${1:-.device}" >&2; exit 2; }
BUDGET=${GPU_CHECK_SECONDS:-480}
ROW_SECONDS=${GPU_CHECK_ROW_SECONDS:-0.05}
DEADLINE=$(($(date +%s) + BUDGET))

# The tests read tests/golden through CARGO_MANIFEST_DIR, a path on the build machine.
if [ -z "${CUPOOL_GOLDEN_DIR:-}" ] && [ -d "$DIR/golden" ]; then
  export CUPOOL_GOLDEN_DIR="$DIR/golden"
fi

SUMMARY=()
FAILED=0

# step NAME LOGFILE STEP_LIMIT COMMAND...: runs COMMAND under a time limit (STEP_LIMIT seconds,
# or what is left of the budget), appends its output to $OUT/LOGFILE, and records status and time.
step() {
  local name=$1 log=$2 limit=$3
  shift 3
  local left=$((DEADLINE - $(date +%s)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    SUMMARY+=("$name|skipped: out of time (GPU_CHECK_SECONDS=$BUDGET)|0.0")
    echo "== $name: skipped, out of time" >&2
    return
  fi
  local start end status secs
  start=$(date +%s.%N)
  echo "== $name (limit ${limit}s)" >&2
  echo "==== $name" >>"$OUT/$log"
  timeout --kill-after=10 "$limit" "$@" >>"$OUT/$log" 2>&1
  status=$?
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  if [ $status -eq 0 ]; then
    SUMMARY+=("$name|ok|$secs")
  elif [ $status -eq 124 ]; then
    SUMMARY+=("$name|FAIL (over its ${limit}s limit, see $log)|$secs")
    FAILED=1
  elif [ $status -eq 137 ]; then
    # SIGKILL: timeout's --kill-after, or the kernel's out-of-memory killer.
    SUMMARY+=("$name|FAIL (killed: time limit or out of memory)|$secs")
    FAILED=1
  else
    SUMMARY+=("$name|FAIL ($status, see $log)|$secs")
    FAILED=1
    tail -n 20 "$OUT/$log" >&2
  fi
}

skip() { SUMMARY+=("$1|skipped: $2|0.0"); echo "== $1: skipped: $2" >&2; }

if command -v nvidia-smi >/dev/null 2>&1; then
  step nvidia-smi machine.txt 30 nvidia-smi
else
  SUMMARY+=("nvidia-smi|FAIL (not found: is this an NVIDIA machine?)|0.0")
  FAILED=1
fi
if [ -x "$DIR/cupool" ]; then
  step "cupool check" machine.txt 30 "$DIR/cupool" check
  for dtype in f32 bf16; do
    step "cupool demo cuda $dtype" machine.txt 60 "$DIR/cupool" demo --device cuda --dtype "$dtype"
  done
fi

export CUPOOL_REQUIRE_GPU=1
# tests/bench_serve.rs runs the cupool binary; cargo's path to it is on the build machine.
[ -x "$DIR/cupool" ] && export CUPOOL_EXE="$DIR/cupool"
if compgen -G "$DIR/tests/*" >/dev/null; then
  for exe in "$DIR"/tests/*; do
    [ -x "$exe" ] || continue
    name=$(basename "$exe")
    case "$name" in bench-*) continue ;; esac
    step "test $name" tests.log 150 "$exe"
  done
else
  SUMMARY+=("tests|FAIL (no executables in $DIR/tests; run scripts/prepare-gpu-check.sh)|0.0")
  FAILED=1
fi

if [ -x "$DIR/cupool" ]; then
  # The table (stdout) is in bench.json too; progress goes to progress.log.
  step "cupool bench" progress.log 200 \
    "$DIR/cupool" bench --device cuda --row-seconds "$ROW_SECONDS" --json "$OUT/bench.json"
else
  skip "cupool bench" "no cupool binary in $DIR"
fi

if [ -f "$DIR/compare_torch.py" ]; then
  if ! python3 -c 'import torch' >/dev/null 2>&1; then
    skip "compare_torch.py" "python3 cannot import torch"
  elif [ -f "$OUT/bench.json" ]; then
    step "compare_torch.py" progress.log 200 python3 "$DIR/compare_torch.py" --device cuda \
      --row-seconds "$ROW_SECONDS" --json "$OUT/bench.json" --out "$OUT/compare.md" \
      --torch-json "$OUT/torch.json"
  else
    skip "compare_torch.py" "no bench.json to compare with"
  fi
else
  skip "compare_torch.py" "no compare_torch.py in $DIR"
fi

SANITIZER=$(command -v compute-sanitizer || true)
[ -z "$SANITIZER" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && SANITIZER=/usr/local/cuda/bin/compute-sanitizer
# The sanitizers slow kernels down 10-100x: the parity test only (every op, every dtype).
# API errors are not reported: reading a kernel's parameter list ends, by the driver's design,
# with one CUDA_ERROR_INVALID_VALUE per kernel (src/cuda/context.rs), and every other driver
# error already fails the test that met it.
SAN_TEST="$DIR/tests/parity"
if [ -n "$SANITIZER" ] && [ -x "$SAN_TEST" ]; then
  for tool in memcheck racecheck; do
    step "sanitizer $tool parity" sanitizer.log 150 \
      "$SANITIZER" --tool "$tool" --report-api-errors no --error-exitcode 1 "$SAN_TEST" --test-threads=1
  done
else
  skip "compute-sanitizer" "${SANITIZER:+no $SAN_TEST}${SANITIZER:-compute-sanitizer not found}"
fi

{
  printf '%-40s  %-50s  %8s\n' step status seconds
  printf '%-40s  %-50s  %8s\n' ---- ------ -------
  for row in "${SUMMARY[@]}"; do
    IFS='|' read -r name status secs <<<"$row"
    printf '%-40s  %-50s  %8s\n' "$name" "$status" "$secs"
  done
} | tee "$OUT/summary.txt"
exit $FAILED
