#!/usr/bin/env bash
# Installs a pinned CUDA 13.0 compiler toolchain (nvcc, ptxas, NVRTC, headers) from PyPI into a
# cached virtualenv, so that CI and GPU-less machines compile every kernel. Pinned to 13.0.x:
# a newer toolkit writes PTX that a 13.0 driver (R580) cannot load.
#
# Usage:  eval "$(scripts/cuda-toolchain.sh)"   # exports PATH, LD_LIBRARY_PATH, CUPOOL_NVCC, ...
# The environment lines go to stdout; progress goes to stderr.
set -euo pipefail

CUDA_PIN="13.0.88"
CCCL_PIN="13.0.85"
PREFIX="${CUPOOL_CUDA_TOOLCHAIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cupool/cuda-${CUDA_PIN}}"
PY="${PYTHON:-python3}"

if [ ! -f "$PREFIX/.complete" ]; then
  echo "cuda-toolchain: installing CUDA ${CUDA_PIN} into $PREFIX" >&2
  rm -rf "$PREFIX"
  "$PY" -m venv "$PREFIX" >&2
  "$PREFIX/bin/pip" install -q --disable-pip-version-check \
    "nvidia-cuda-nvcc==${CUDA_PIN}" "nvidia-cuda-nvrtc==${CUDA_PIN}" \
    "nvidia-cuda-crt==${CUDA_PIN}" "nvidia-nvvm==${CUDA_PIN}" \
    "nvidia-cuda-cccl==${CCCL_PIN}" >&2
  touch "$PREFIX/.complete"
fi

SITE=$("$PREFIX/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CU="$SITE/nvidia/cu13"
[ -x "$CU/bin/nvcc" ] || { echo "cuda-toolchain: no nvcc under $CU/bin" >&2; exit 1; }

# nvcc looks for cicc under ../nvvm/bin and for headers under ../include; the wheels lay out
# one tree (nvidia/cu13) with bin/, include/, lib/ and nvvm/, and cccl adds include/cccl.
echo "export CUDA_HOME='$CU'"
echo "export PATH='$CU/bin':\"\$PATH\""
echo "export LD_LIBRARY_PATH='$CU/lib':\"\${LD_LIBRARY_PATH:-}\""
echo "export CUPOOL_NVCC='$CU/bin/nvcc'"
echo "export CUPOOL_CUDA_INCLUDE='$CU/include'"
