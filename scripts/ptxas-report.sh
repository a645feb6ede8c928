#!/usr/bin/env bash
# Compiles every kernels/*.cu to a cubin for each arch with `ptxas -v` and prints, per kernel,
# registers, spill stores/loads and shared memory. Exits non-zero on a compile error or on any
# register spill. Uses $CUPOOL_NVCC (else sources /tmp/cudaenv.sh, else nvcc on PATH).
# Archs: $CUPOOL_PTXAS_ARCHS (default "80 90").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "${CUPOOL_NVCC:-}" && -f /tmp/cudaenv.sh ]]; then
    # shellcheck disable=SC1091
    source /tmp/cudaenv.sh
fi
nvcc="${CUPOOL_NVCC:-nvcc}"
archs="${CUPOOL_PTXAS_ARCHS:-80 90}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0
printf '%-6s %-44s %5s %7s %7s %6s\n' arch kernel regs spill_st spill_ld smem
for arch in $archs; do
    for src in "$root"/kernels/*.cu; do
        log="$tmp/$(basename "$src").sm_$arch.log"
        if ! "$nvcc" -cubin -arch="sm_$arch" -Xptxas -v -I "$root/kernels" -o "$tmp/out.cubin" "$src" >"$log" 2>&1; then
            echo "COMPILE ERROR: $src for sm_$arch" >&2
            cat "$log" >&2
            status=1
            continue
        fi
        # ptxas prints, per function: "Function properties for NAME", "N bytes stack frame, S bytes
        # spill stores, L bytes spill loads", then "Used R registers, ... [, M bytes smem]".
        awk -v arch="sm_$arch" '
            /Compiling entry function/ { gsub(/[`'"'"']/, "", $0); name = $NF }
            /Function properties for/ { name = $NF }
            /spill stores/ { st = $5; ld = $9 }
            /Used [0-9]+ registers/ {
                regs = $5; smem = 0
                if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
                printf "%-6s %-44s %5s %7s %7s %6s\n", arch, name, regs, st, ld, smem
                if (st + 0 > 0 || ld + 0 > 0) bad = 1
            }
            END { exit bad }
        ' "$log" || { echo "SPILL in $src for sm_$arch" >&2; status=1; }
    done
done
if [[ $status -ne 0 ]]; then
    echo "ptxas-report: FAILED" >&2
else
    echo "ptxas-report: OK (no spills)"
fi
exit $status
