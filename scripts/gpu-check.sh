#!/usr/bin/env bash
# Checks cupool on an NVIDIA machine that has no cargo, from the executables that
# scripts/prepare-gpu-check.sh built.
#
# Usage:  gpu-check.sh [FOLDER]     (FOLDER defaults to .device/; it holds tests/, cupool, ...)
# Output: everything under ${OUT:-./gpu-check-out}, and a summary table (step, status, seconds).
#
# Steps: nvidia-smi; every test executable with CUPOOL_REQUIRE_GPU=1 (GPU tests fail instead of
# skipping); `cupool bench --device cuda`; compare_torch.py when torch imports; and
# compute-sanitizer memcheck and racecheck on one test executable when the tool is present.
set -uo pipefail

DIR=${1:-.device}
OUT=${OUT:-./gpu-check-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DIR=$(cd "$DIR" 2>/dev/null && pwd) || { echo "gpu-check: no folder ${1:-.device}" >&2; exit 2; }

SUMMARY=()
FAILED=0

# step NAME LOGFILE COMMAND...: runs COMMAND, logs to $OUT/LOGFILE, records status and time.
step() {
  local name=$1 log=$2
  shift 2
  local start end status
  start=$(date +%s.%N)
  echo "== $name" >&2
  "$@" >"$OUT/$log" 2>&1
  status=$?
  end=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  if [ $status -eq 0 ]; then
    SUMMARY+=("$name|ok|$secs")
  else
    SUMMARY+=("$name|FAIL ($status, see $log)|$secs")
    FAILED=1
    tail -n 20 "$OUT/$log" >&2
  fi
}

skip() { SUMMARY+=("$1|skipped: $2|0.0"); echo "== $1: skipped: $2" >&2; }

if command -v nvidia-smi >/dev/null 2>&1; then
  step nvidia-smi nvidia-smi.txt nvidia-smi
else
  SUMMARY+=("nvidia-smi|FAIL (not found: is this an NVIDIA machine?)|0.0")
  FAILED=1
fi

export CUPOOL_REQUIRE_GPU=1
FIRST_TEST=""
if compgen -G "$DIR/tests/*" >/dev/null; then
  for exe in "$DIR"/tests/*; do
    [ -x "$exe" ] || continue
    name=$(basename "$exe")
    case "$name" in bench-*) continue ;; esac
    [ -z "$FIRST_TEST" ] && FIRST_TEST=$exe
    step "test $name" "test-$name.log" "$exe" --test-threads=1
  done
else
  SUMMARY+=("tests|FAIL (no executables in $DIR/tests; run scripts/prepare-gpu-check.sh)|0.0")
  FAILED=1
fi

if [ -x "$DIR/cupool" ]; then
  if "$DIR/cupool" bench --help >/dev/null 2>&1; then
    step "cupool bench" bench.log "$DIR/cupool" bench --device cuda --json "$OUT/bench.json"
  else
    skip "cupool bench" "this cupool binary has no bench subcommand"
  fi
else
  skip "cupool bench" "no cupool binary in $DIR"
fi

if [ -f "$DIR/compare_torch.py" ]; then
  if python3 -c 'import torch' >/dev/null 2>&1; then
    step "compare_torch.py" compare-torch.log python3 "$DIR/compare_torch.py" --device cuda
  else
    skip "compare_torch.py" "python3 cannot import torch"
  fi
else
  skip "compare_torch.py" "no compare_torch.py in $DIR"
fi

SANITIZER=$(command -v compute-sanitizer || true)
[ -z "$SANITIZER" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && SANITIZER=/usr/local/cuda/bin/compute-sanitizer
# The sanitizers slow kernels down 10-100x: one test executable, the CUDA parity one if present.
SAN_TEST=$FIRST_TEST
for candidate in "$DIR"/tests/*cuda* "$DIR"/tests/*parity*; do
  [ -x "$candidate" ] && { SAN_TEST=$candidate; break; }
done
if [ -n "$SANITIZER" ] && [ -n "$SAN_TEST" ]; then
  for tool in memcheck racecheck; do
    step "sanitizer $tool $(basename "$SAN_TEST")" "sanitizer-$tool.log" \
      "$SANITIZER" --tool "$tool" --error-exitcode 1 "$SAN_TEST" --test-threads=1
  done
else
  skip "compute-sanitizer" "${SANITIZER:+no test executable}${SANITIZER:-compute-sanitizer not found}"
fi

{
  printf '%-50s  %-45s  %8s\n' step status seconds
  printf '%-50s  %-45s  %8s\n' ---- ------ -------
  for row in "${SUMMARY[@]}"; do
    IFS='|' read -r name status secs <<<"$row"
    printf '%-50s  %-45s  %8s\n' "$name" "$status" "$secs"
  done
} | tee "$OUT/summary.txt"
exit $FAILED
