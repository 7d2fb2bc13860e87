package tokenizer

import (
	"strings"
	"testing"
)

// BenchmarkEncodeProse: Encode of 400 KB of English prose.
func BenchmarkEncodeProse(b *testing.B) {
	text := strings.Repeat("Once upon a time, there was a little girl named Lily. She liked 123 apples! Don't you think so? ", 400_000/96)
	for _, v := range []string{"llama-spm", "llama-bpe", "qwen2"} {
		tok := load(b, "vocab/ggml-vocab-"+v+".gguf")
		b.Run(v, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				tok.Encode(text, true, false)
			}
		})
	}
}
