#!/usr/bin/env bash
# Builds everything a GPU machine needs to check cupool without cargo, into one folder.
#
# Usage:  scripts/prepare-gpu-check.sh [DEST]      (DEST defaults to .device/)
#
# Builds with the pinned CUDA toolchain on PATH (scripts/cuda-toolchain.sh), so nvcc embeds
# cubins for CUPOOL_CUDA_ARCHS (default 80,90) and the kernels need no NVRTC on the GPU machine.
# Copies each test executable under its test's name (tests/foo.rs -> DEST/tests/foo, the
# library's unit tests -> DEST/tests/unit), the `cupool` binary, benches/compare_torch.py,
# scripts/gpu-check.sh, scripts/gpu-profile.sh and tests/golden (as DEST/golden), and strips
# the executables. Then copy DEST to the GPU machine and run DEST/gpu-check.sh there (or, with
# the repository there, scripts/gpu-round.sh, which adds an A/B and Nsight Compute). DEST.tar.xz holds the same, packed
# (about a sixth of the size), for a machine that takes the folder over a size limit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$ROOT/.device}
cd "$ROOT"

if [ -z "${CUPOOL_NVCC:-}" ] && ! command -v nvcc >/dev/null 2>&1; then
  eval "$(scripts/cuda-toolchain.sh)"
fi

rm -rf "$DEST"
mkdir -p "$DEST/tests"

# The test executables: cargo's JSON messages name each one and the target it came from.
cargo test --release --no-run --message-format=json-render-diagnostics >"$DEST/.cargo-messages.json"
# The messages go in as a file argument: the script itself is python's stdin (the heredoc).
python3 - "$DEST" "$DEST/.cargo-messages.json" <<'PY'
import json, shutil, sys, os
dest = sys.argv[1]
for line in open(sys.argv[2]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    if not msg.get("profile", {}).get("test"):
        continue
    target = msg["target"]
    kinds = target.get("kind", [])
    name = "unit" if "lib" in kinds else target["name"]
    if "bench" in kinds:
        name = "bench-" + name
    shutil.copy2(msg["executable"], os.path.join(dest, "tests", name))
    print(f"prepare-gpu-check: tests/{name} <- {msg['executable']}", file=sys.stderr)
PY
rm -f "$DEST/.cargo-messages.json"

cargo build --release --bin cupool
cp target/release/cupool "$DEST/cupool"
[ -f benches/compare_torch.py ] && cp benches/compare_torch.py "$DEST/"
cp scripts/gpu-check.sh scripts/gpu-profile.sh "$DEST/"
# The tests find tests/golden through a build-machine path; gpu-check.sh points them here.
cp -r tests/golden "$DEST/golden"
# Symbols only add size on the GPU machine (a lent one takes 64 MiB in all).
strip "$DEST"/tests/* "$DEST/cupool" 2>/dev/null || true
tar -C "$DEST" -cf - . | xz -T0 -6 >"$DEST.tar.xz"
echo "prepare-gpu-check: ready in $DEST and $DEST.tar.xz (run $DEST/gpu-check.sh $DEST on the GPU machine)" >&2
