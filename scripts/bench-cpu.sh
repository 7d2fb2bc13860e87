#!/usr/bin/env bash
# Benchmarks godwit on the CPU with the models of docs/performance.md: random
# llama models of ~0.35B parameters (dim 1024, 24 layers, ffn 2816, GQA 16/8,
# the Llama 2 vocabulary) in Q4_0, Q8_0, Q4_K_M and F16, written once into
# $BENCH_MODELS. With LLAMA_BENCH set to a llama-bench binary, each godwit run
# is followed by llama-bench on the same file with the same threads, ROUNDS
# times, and a table of ratios godwit ÷ llama.cpp closes the run. With BASELINE
# set to another godwit binary (an earlier build), each run is followed by
# that binary's on the same file, and a table of ratios this ÷ baseline
# closes the run: before and after a change, interleaved.
set -euo pipefail
cd "$(dirname "$0")/.."
models="${BENCH_MODELS:-$HOME/.cache/godwit/bench}"
threads="${THREADS:-2}"
reps="${REPS:-3}"
rounds="${ROUNDS:-1}"
types="${TYPES:-Q4_0 Q8_0 Q4_K_M F16}"
vocab="${VOCAB:-../shared/vocab/ggml-vocab-llama-spm.gguf}"
godwit=bin/godwit
out="$(mktemp -d)"
mkdir -p "$models"

for t in $types; do
	m="$models/llama-0.35B-$t.gguf"
	[ -f "$m" ] || $godwit gen-model --arch llama --dim 1024 --layers 24 --heads 16 --kv-heads 8 --ffn 2816 \
		--vocab-from "$vocab" --type "$t" -o "$m"
done

for r in $(seq "$rounds"); do
	for t in $types; do
		m="$models/llama-0.35B-$t.gguf"
		echo "== round $r: $t" >&2
		# llama.cpp's order and single-sequence path, as llama-bench measures it.
		$godwit bench local --order llama -m "$m" -p 512 -n 128 -t "$threads" -r "$reps" | tee -a "$out/godwit.$t"
		if [ -n "${LLAMA_BENCH:-}" ]; then
			"$LLAMA_BENCH" -m "$m" -p 512 -n 128 -t "$threads" -r "$reps" -o md 2>/dev/null | grep '^| llama' | tee -a "$out/llama.$t"
		fi
		if [ -n "${BASELINE:-}" ]; then
			# Builds before --order took llama.cpp's order without it.
			order="--order llama"
			"$BASELINE" bench local --help 2>&1 | grep -q -- --order || order=""
			"$BASELINE" bench local $order -m "$m" -p 512 -n 128 -t "$threads" -r "$reps" | tee -a "$out/baseline.$t"
		fi
	done
done

# median of the godwit rows of test $2 in file $1 (... | test | median | min | max |)
median() {
	awk -F'|' -v t=" $2 " '$7 == t {print $8+0}' "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# llama_median: the same of llama-bench's rows (... | test | mean ± sd |)
llama_median() {
	awk -F'|' -v t="$2" '$7 ~ t {split($8, v, "±"); print v[1]+0}' "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# ratios NAME FILE READ: godwit against the reference runs in $out/FILE.<type>,
# whose medians READ gives.
ratios() {
	echo
	echo "| type | test | godwit t/s (median of rounds) | $1 t/s | ratio |"
	echo "| --- | --- | ---: | ---: | ---: |"
	for t in $types; do
		for test in pp512 tg128; do
			g=$(median "$out/godwit.$t" "$test")
			r=$("$3" "$out/$2.$t" "$test")
			awk -v t="$t" -v s="$test" -v g="$g" -v r="$r" 'BEGIN {printf "| %s | %s | %.2f | %.2f | %.2f |\n", t, s, g, r, g / r}'
		done
	done
}

if [ -n "${BASELINE:-}" ]; then
	ratios baseline baseline median
fi
if [ -n "${LLAMA_BENCH:-}" ]; then
	ratios llama.cpp llama llama_median
fi
rm -rf "$out"
