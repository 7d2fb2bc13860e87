#!/usr/bin/env bash
# Runs every avo generator (one folder each under kernels/cpu/asm) and writes
# NAME_amd64.s and its Go stubs NAME_amd64.go into the folder given (default:
# kernels/cpu). `make asm` writes them in place; `make asm-check` writes them
# to a temporary folder and compares.
set -euo pipefail
shopt -s nullglob
here="$(cd "$(dirname "$0")" && pwd)"
out="$(cd "${1:-$here/..}" && pwd)"
cd "$here"
for dir in */; do
	name="${dir%/}"
	go run "./$name" -out "$out/${name}_amd64.s" -stubs "$out/${name}_amd64.go" -pkg cpu
done
