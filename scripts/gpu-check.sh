#!/usr/bin/env bash
# The GPU checks of issue 15, in two halves:
#   scripts/gpu-check.sh          (make gpu-check) builds here, with CGO_ENABLED=0, what the device machine runs
#                                 into .gpu/ (ignored through .git/info/exclude), and says how to run it;
#   scripts/gpu-check.sh run      on the device machine (the device tool, carrying .gpu): runs the CUDA
#                                 package's tests on the GPU and `godwit version`, and prints one table.
# So far it checks the bindings and every embedded kernel (kernels/cuda); the model checks join it with the
# CUDA backend.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu

if [ "${1:-}" = run ]; then
	status() { if [ "$1" = 0 ]; then echo pass; else echo "FAIL ($1)"; fi; }
	rc=0
	GODWIT_REQUIRE_GPU=1 "$out/cuda.test" -test.run 'TestOnGPU' -test.v >"$out/cuda.log" 2>&1 || rc=$?
	version=$("$out/godwit" version 2>&1 | tail -1)
	echo
	echo "| check | result |"
	echo "| --- | --- |"
	echo "| kernels/cuda TestOnGPU (every kernel against the CPU: elementwise, RoPE, embeddings, matmul f32/f16/q8_0, paged attention) | $(status $rc) |"
	echo "| godwit version | ${version//|/\\|} |"
	echo
	cat "$out/cuda.log"
	exit "$rc"
fi

mkdir -p "$out"
grep -qx "/$out/" .git/info/exclude 2>/dev/null || echo "/$out/" >>.git/info/exclude
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64
go test -c -o "$out/cuda.test" ./kernels/cuda
go build -trimpath -ldflags '-s -w' -o "$out/godwit" ./cmd/godwit
du -sh "$out"
echo "now run, with the device tool: command 'bash scripts/gpu-check.sh run', carry [\"$out\"]"
