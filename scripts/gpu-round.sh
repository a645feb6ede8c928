#!/usr/bin/env bash
# The device call a round with a lent GPU makes, after scripts/prepare-gpu-check.sh here:
#   run(command="bash scripts/gpu-round.sh", carry=[".device.tar.xz"], timeout_s=480)
# 1. gpu-check.sh (tests with CUPOOL_REQUIRE_GPU=1, bench, compare_torch.py, compute-sanitizer);
# 2. an A/B of the memory pool's release threshold (cupool's default keeps freed memory;
#    CUPOOL_NO_MEMORY_CACHING=1 is the driver's default) on the backward rows, whose 1.6 GB
#    outputs are where it shows: ab.md;
# 3. Nsight Compute on the backward kernels of the seed (scripts/gpu-profile.sh): ncu.txt.
# torch.json (compare.md holds the same rows) and progress.log are deleted, so that $OUT keeps to
# the eight files a lent machine returns. Prints ncu's headline figures and gpu-check's summary last.
set -u
export PYTHONUNBUFFERED=1
D=.device
OUT=${OUT:-./gpu-check-out}
mkdir -p "$OUT" "$D" && tar -C "$D" -xJf .device.tar.xz || exit 3
OUT=$OUT GPU_CHECK_SECONDS=${GPU_CHECK_SECONDS:-270} bash "$D/gpu-check.sh" "$D"
rm -f "$OUT/torch.json" "$OUT/progress.log"
for mode in keep driver; do
  if [ "$mode" = driver ]; then export CUPOOL_NO_MEMORY_CACHING=1; else unset CUPOOL_NO_MEMORY_CACHING; fi
  echo "## pool: $mode" >>"$OUT/ab.md"
  timeout 60 "$D/cupool" bench --device cuda --ops backward --shapes seed,resnet_tail,batch1 \
    --dtypes f32,bf16 --row-seconds 0.05 >>"$OUT/ab.md" 2>/dev/null
done
unset CUPOOL_NO_MEMORY_CACHING
{
  timeout 45 bash "$D/gpu-profile.sh" "$D" 'max_pool2d_backward_(audit_)?nchw' max_pool2d_backward seed f32 2
  timeout 45 bash "$D/gpu-profile.sh" "$D" 'max_pool2d_backward_(audit_nhwc|nhwc_f32)' max_pool2d_backward seed f32 2
  timeout 45 bash "$D/gpu-profile.sh" "$D" 'broadcast_divide' mean_backward seed f32 1
  timeout 45 bash "$D/gpu-profile.sh" "$D" 'avg_pool2d_backward_nchw' avg_pool2d_backward seed f32 1
} >"$OUT/ncu.txt" 2>&1
grep -E "^  [A-Za-z_]+.*\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|==ERROR==" \
  "$OUT/ncu.txt" | head -80
cat "$OUT/summary.txt"
