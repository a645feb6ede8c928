#!/usr/bin/env bash
# Nsight Compute on a GPU machine: speed of light, memory workload and occupancy of the kernels
# one `cupool bench` row launches, with the card's clocks left alone (--clock-control none).
# Answers "is this kernel at the memory roofline, or bound by issue or latency?" without a
# rebuild, from the executables scripts/prepare-gpu-check.sh built.
#
# Usage:  gpu-profile.sh DIR KERNEL_REGEX OPS [SHAPES] [DTYPES] [LAUNCHES]
#   DIR           the folder prepare-gpu-check.sh made (holds the cupool binary)
#   KERNEL_REGEX  which kernels to profile (ncu -k regex:...), e.g. 'backward|broadcast'
#   OPS, SHAPES, DTYPES   cupool bench's --ops, --shapes (default seed), --dtypes (default f32)
#   LAUNCHES      how many matching launches to profile (default 6); the rest run unprofiled
# Output: ncu's report on stdout.
set -uo pipefail
DIR=${1:?usage: gpu-profile.sh DIR KERNEL_REGEX OPS [SHAPES] [DTYPES] [LAUNCHES]}
REGEX=${2:?kernel regex}
OPS=${3:?bench ops}
SHAPES=${4:-seed}
DTYPES=${5:-f32}
LAUNCHES=${6:-6}
NCU=$(command -v ncu || true)
[ -z "$NCU" ] && [ -x /usr/local/cuda/bin/ncu ] && NCU=/usr/local/cuda/bin/ncu
[ -z "$NCU" ] && { echo "gpu-profile: ncu not found" >&2; exit 2; }
exec "$NCU" --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
  --section Occupancy --section LaunchStats -k "regex:$REGEX" --launch-count "$LAUNCHES" \
  "$DIR/cupool" bench --device cuda --ops "$OPS" --shapes "$SHAPES" --dtypes "$DTYPES" --row-seconds 0.001
