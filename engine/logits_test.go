package engine

import (
	"testing"

	"github.com/godwit-ai/godwit/internal/synth"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
)

// TestLogitsBufferFollowsOutputRows: a 512-token prompt step on a model with
// Qwen2's 152064-token vocabulary keeps logits for the rows asked for only
// (one row: 0.6 MB, where every row would take 311 MB).
func TestLogitsBufferFollowsOutputRows(t *testing.T) {
	const vocab, prompt = 152064, 512
	tokens := make([]string, vocab)
	for i := range tokens {
		tokens[i] = string(rune('a'+i%26)) + string(rune('0'+i/26%10)) + string(rune(i))
	}
	f, err := synth.Parse(synth.Spec{Arch: "qwen2", Dim: 64, Layers: 1, Heads: 2, FFN: 64, Context: 1024, Type: gguf.Q8_0, Seed: 1},
		synth.Vocab{{Key: "tokenizer.ggml.tokens", Value: gguf.Strings(tokens)}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	b := cpu.New(0)
	defer b.Close()
	e, err := New(m, b, kernels.OrderBatchInvariant)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config
	pool, err := NewKVPool(KVPoolConfig{Layers: 1, Width: c.KVHeads * c.HeadDim, Bytes: KVBytes(1, c.KVHeads*c.HeadDim, 2*prompt, false), ToHalf: b.ToHalf})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, prompt)
	for i := range ids {
		ids[i] = int32(i * 293 % vocab)
	}
	for _, logits := range []bool{false, true} {
		s := pool.NewSeq()
		if err := s.Reserve(prompt); err != nil {
			t.Fatal(err)
		}
		l, err := e.Step([]SeqInput{{KV: s, Tokens: ids, Logits: logits}})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if logits {
			want = vocab
		}
		if len(l) != want || cap(e.logits) != want {
			t.Errorf("logits=%v: %d logits in a buffer of %d, want %d", logits, len(l), cap(e.logits), want)
		}
		s.Free()
	}
}
