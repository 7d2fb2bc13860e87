#!/usr/bin/env bash
# Benchmarks godwit on the CPU with the random llama models of
# docs/performance.md, written once into $BENCH_MODELS, for each shape of
# SHAPES, type of TYPES and thread count of THREADS:
#   0.35B  dim 1024, 24 layers, ffn 2816, GQA 16/8, Llama 2 vocabulary; pp512, tg128
#   125M   dim 768, 12 layers, ffn 2048, GQA 12/4, Llama 2 vocabulary; pp128, tg64
#   1B     dim 2048, 16 layers, ffn 8192, GQA 32/8, Llama 3 vocabulary (Llama-3.2-1B's shape); pp128, tg32
#   gemma3-1B  gemma3: dim 1152, 26 layers, ffn 6912, 4 heads / 1 KV head of 256, window 512
#          (Gemma-3-1B's shape; 5 sliding layers to 1 global), Llama 2 vocabulary; pp512, tg128
# With LLAMA_BENCH set to a llama-bench binary, each godwit run is followed by
# llama-bench on the same file with the same threads, ROUNDS times, and a
# table of ratios godwit ÷ llama.cpp closes the run. With BASELINE set to
# another godwit binary (an earlier build), each run is followed by that
# binary's on the same file, and a table of ratios this ÷ baseline closes the
# run: before and after a change, interleaved. godwit's rows carry the read
# bandwidth bench local measures and the share of it each decode reaches.
set -euo pipefail
cd "$(dirname "$0")/.."
models="${BENCH_MODELS:-$HOME/.cache/godwit/bench}"
shapes="${SHAPES:-0.35B}"
threads="${THREADS:-2}"
reps="${REPS:-3}"
rounds="${ROUNDS:-1}"
types="${TYPES:-Q4_0 Q8_0 Q4_K_M F16}"
vocabs=../shared/vocab
godwit=bin/godwit
out="$(mktemp -d)"
mkdir -p "$models"

# shape NAME: sets arch, dims (gen-model's flags), vocab, pp and tg for the
# shape; its files are $models/<arch>-<shape>-<type>.gguf, the shape's name
# without the architecture's prefix.
shape() {
	arch=llama
	case "$1" in
	0.35B) dims="--dim 1024 --layers 24 --heads 16 --kv-heads 8 --ffn 2816" vocab=llama-spm pp=512 tg=128 ;;
	125M) dims="--dim 768 --layers 12 --heads 12 --kv-heads 4 --ffn 2048" vocab=llama-spm pp=128 tg=64 ;;
	1B) dims="--dim 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192" vocab=llama-bpe pp=128 tg=32 ;;
	gemma3-1B)
		arch=gemma3
		dims="--dim 1152 --layers 26 --heads 4 --kv-heads 1 --head-dim 256 --ffn 6912 --window 512 --ctx 32768" vocab=llama-spm pp=512 tg=128
		;;
	*)
		echo "bench-cpu: unknown shape $1 (want 0.35B, 125M, 1B or gemma3-1B)" >&2
		exit 2
		;;
	esac
}

for s in $shapes; do
	shape "$s"
	for t in $types; do
		m="$models/$arch-${s#"$arch"-}-$t.gguf"
		# shellcheck disable=SC2086
		[ -f "$m" ] || $godwit gen-model --arch "$arch" $dims --vocab-from "$vocabs/ggml-vocab-$vocab.gguf" --type "$t" -o "$m"
	done
done

for r in $(seq "$rounds"); do
	for s in $shapes; do
		shape "$s"
		for t in $types; do
			m="$models/$arch-${s#"$arch"-}-$t.gguf"
			for th in $threads; do
				echo "== round $r: $s $t, $th threads" >&2
				key="$s.$t.$th"
				# llama.cpp's order and single-sequence path, as llama-bench measures it.
				$godwit bench local --order llama -m "$m" -p "$pp" -n "$tg" -t "$th" -r "$reps" | tee -a "$out/godwit.$key"
				if [ -n "${LLAMA_BENCH:-}" ]; then
					"$LLAMA_BENCH" -m "$m" -p "$pp" -n "$tg" -t "$th" -r "$reps" -o md 2>/dev/null | grep "^| $arch" | tee -a "$out/llama.$key"
				fi
				if [ -n "${BASELINE:-}" ]; then
					# Builds before --order took llama.cpp's order without it.
					order="--order llama"
					"$BASELINE" bench local --help 2>&1 | grep -q -- --order || order=""
					"$BASELINE" bench local $order -m "$m" -p "$pp" -n "$tg" -t "$th" -r "$reps" | tee -a "$out/baseline.$key"
				fi
			done
		done
	done
done

# col FILE NAME: the number of godwit's table column NAME.
col() { awk -F'|' -v h=" $2 " '{for (i = 1; i <= NF; i++) if ($i == h) {print i; exit}}' "$1" | head -1; }

# median of the godwit rows of test $2 in file $1, column $3 (default t/s).
median() {
	awk -F'|' -v t=" $2 " -v c="${3:-8}" '$7 == t {print $c+0}' "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# llama_median: the same of llama-bench's rows (... | test | mean ± sd |)
llama_median() {
	awk -F'|' -v t="$2" '$7 ~ t {split($8, v, "±"); print v[1]+0}' "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# ratios NAME FILE READ: godwit against the reference runs in $out/FILE.<key>,
# whose medians READ gives; decode rows add godwit's share of the read
# bandwidth (median of rounds).
ratios() {
	echo
	echo "| shape | type | threads | test | godwit t/s (median of rounds) | $1 t/s | ratio | godwit of read bw |"
	echo "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"
	for s in $shapes; do
		shape "$s"
		for t in $types; do
			for th in $threads; do
				key="$s.$t.$th"
				for test in "pp$pp" "tg$tg"; do
					g=$(median "$out/godwit.$key" "$test")
					ref=$("$3" "$out/$2.$key" "$test")
					bw=""
					c=$(col "$out/godwit.$key" "of read bw")
					if [ "$test" = "tg$tg" ] && [ -n "$c" ]; then
						bw="$(median "$out/godwit.$key" "$test" "$c")%"
					fi
					awk -v s="$s" -v t="$t" -v th="$th" -v x="$test" -v g="$g" -v r="$ref" -v bw="$bw" \
						'BEGIN {printf "| %s | %s | %s | %s | %.2f | %.2f | %.2f | %s |\n", s, t, th, x, g, r, g / r, bw}'
				done
			done
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
