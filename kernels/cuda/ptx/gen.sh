#!/usr/bin/env bash
# Compiles each kernels/cuda/ptx/*.cu to PTX for sm_80 (Ampere and newer;
# the driver JIT-compiles it for the GPU at hand) with Debian's clang-19, no
# CUDA SDK: into the .cu's folder, or into $1 when given (make ptx-check).
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-.}"
clang="${CLANG:-clang-19}"
for src in *.cu; do
	"$clang" -x cuda --cuda-device-only -nocudainc -nocudalib --cuda-gpu-arch=sm_80 \
		-Xclang -target-feature -Xclang +ptx80 -O3 -S -o "$out/${src%.cu}.ptx" "$src"
done
