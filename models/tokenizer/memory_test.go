package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/internal/heappeak"
)

// encodePeak encodes text and returns how far the heap in use rose above
// where it stood before, at its highest (sampled every millisecond), the
// ids and the time taken.
func encodePeak(tok *Tokenizer, text string) (grew int64, ids []int32, took time.Duration) {
	stop := heappeak.Start()
	start := time.Now()
	ids = tok.Encode(text, true, false)
	took = time.Since(start)
	return stop(), ids, took
}

// TestEncodeMemory: encoding 4 MB of prose holds at most 20 times the text
// in heap at its peak (the ids included), on an SPM and two byte-level BPE
// vocabularies.
func TestEncodeMemory(t *testing.T) {
	text := strings.Repeat("Once upon a time, there was a little girl named Lily. She liked 123 apples! ", 4_000_000/77)
	for _, rel := range []string{"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-llama-bpe.gguf", "vocab/ggml-vocab-qwen2.gguf"} {
		tok := load(t, rel)
		grew, ids, took := encodePeak(tok, text)
		t.Logf("%s: %d bytes, %d ids in %v: peak heap +%d MB (%.1f× the text)", rel, len(text), len(ids), took, grew>>20, float64(grew)/float64(len(text)))
		if grew > 20*int64(len(text)) {
			t.Errorf("%s: the heap grew by %d MB for %d MB of text, more than 20×", rel, grew>>20, len(text)>>20)
		}
	}
}

// pathological are 4 MB texts with no boundary a merge cannot cross, or a
// pre-tokenizer word as long as the text, or a word per character.
func pathological(name string) string {
	const n = 4_000_000
	switch name {
	case "letter":
		return strings.Repeat("a", n)
	case "spaces":
		return strings.Repeat(" ", n)
	case "ab":
		return strings.Repeat("ab", n/2)
	case "é":
		return strings.Repeat("é", n/2)
	case "日":
		return strings.Repeat("日", n/3)
	}
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, n)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	return string(random)
}

// TestEncodeMemoryPathological: encoding 4 MB of one letter, of spaces, of
// "ab", of one two- or three-byte character or of random bytes holds at
// most 20 times the text in heap at its peak. Every case ran on every
// vocabulary once (18.2× at most); these are the worst and one of each
// kind of merge and pre-tokenizer, to keep the test short.
func TestEncodeMemoryPathological(t *testing.T) {
	for _, c := range []struct{ vocab, text string }{
		{"llama-spm", "letter"}, {"llama-spm", "spaces"}, {"llama-spm", "ab"}, {"llama-spm", "random"},
		{"gpt-2", "spaces"}, {"gpt-2", "random"}, {"qwen2", "ab"}, {"llama-bpe", "é"},
		{"deepseek-coder", "random"}, {"falcon", "random"},
	} {
		tok := load(t, "vocab/ggml-vocab-"+c.vocab+".gguf")
		text := pathological(c.text)
		grew, ids, took := encodePeak(tok, text)
		t.Logf("%s, %s: %d ids in %v: peak heap +%d MB (%.1f× the text)", c.vocab, c.text, len(ids), took, grew>>20, float64(grew)/float64(len(text)))
		if grew > 20*int64(len(text)) {
			t.Errorf("%s, %s: the heap grew by %d MB for %d MB of text, more than 20×", c.vocab, c.text, grew>>20, len(text)>>20)
		}
	}
}
