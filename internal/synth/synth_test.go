package synth

import (
	"fmt"
	"testing"

	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
)

// built is the file Build writes for s, with the byte vocabulary, parsed.
func built(t *testing.T, s Spec) *gguf.File {
	t.Helper()
	f, err := Parse(s, ByteVocab())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestMixFollowsLlamaCpp(t *testing.T) {
	var s Spec
	if err := s.ParseType("Q4_K_M"); err != nil {
		t.Fatal(err)
	}
	s.Arch, s.Dim, s.Layers, s.Heads, s.KVHeads, s.FFN = "llama", 256, 8, 4, 2, 256
	f := built(t, s)
	// use_more_bits(i, 8): layers 0 and 7, and 3 and 6 ((i-1)%3 == 2).
	high := map[int]bool{0: true, 3: true, 6: true, 7: true}
	want := map[string]gguf.Type{"output.weight": gguf.Q6_K, "token_embd.weight": gguf.Q4_K, "output_norm.weight": gguf.F32}
	for l := 0; l < 8; l++ {
		vd := gguf.Q4_K
		if high[l] {
			vd = gguf.Q6_K
		}
		want[fmt.Sprintf("blk.%d.attn_v.weight", l)] = vd
		want[fmt.Sprintf("blk.%d.ffn_down.weight", l)] = vd
		want[fmt.Sprintf("blk.%d.attn_q.weight", l)] = gguf.Q4_K
	}
	for name, typ := range want {
		if tn, ok := f.Tensor(name); !ok || tn.Type != typ {
			t.Errorf("%s: %v, want %s", name, tn, typ)
		}
	}
	if ft, _ := f.Int("general.file_type"); ft != 15 {
		t.Errorf("file_type %d, want 15", ft)
	}
}

func TestRefusesBadSpecs(t *testing.T) {
	good := Spec{Arch: "qwen2", Dim: 64, Layers: 1, Heads: 2, FFN: 64, Type: gguf.Q8_0}
	if _, err := Build(good, ByteVocab()); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Spec{
		{Arch: "gpt2", Dim: 64, Layers: 1, Heads: 2, FFN: 64, Type: gguf.F32},
		{Arch: "llama", Dim: 64, Layers: 1, Heads: 3, FFN: 64, Type: gguf.F32},
		{Arch: "llama", Dim: 64, Layers: 1, Heads: 2, KVHeads: 3, FFN: 64, Type: gguf.F32},
		{Arch: "llama", Dim: 64, Layers: 1, Heads: 2, FFN: 64, Type: gguf.Q4_K},
		{Arch: "llama", Dim: 64, Layers: 1, Heads: 2, FFN: 64, Type: gguf.Q2_K},
	} {
		if _, err := Build(s, ByteVocab()); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
	if _, err := Build(good, nil); err == nil {
		t.Error("no vocabulary: no error")
	}
}

// TestPhi3 writes a phi3 file and loads it: fused q/k/v and gate/up rows in
// the views the models package splits them into, both LongRoPE factor sets
// chosen by the context.
func TestPhi3(t *testing.T) {
	s := Spec{Arch: "phi3", Dim: 64, Layers: 2, Heads: 4, KVHeads: 2, FFN: 96, Context: 8192, Type: gguf.Q8_0}
	m, err := models.FromFile(built(t, s))
	if err != nil {
		t.Fatal(err)
	}
	l := m.Layers[1]
	if m.Arch != "phi3" || l.Q.Rows != 64 || l.K.Rows != 32 || l.V.Rows != 32 || l.Gate.Rows != 96 || l.Up.Rows != 96 {
		t.Fatalf("%s: q/k/v rows %d/%d/%d, gate/up %d/%d", m.Arch, l.Q.Rows, l.K.Rows, l.V.Rows, l.Gate.Rows, l.Up.Rows)
	}
	if m.OrigContext != 4096 || m.Rope.AttnFactor <= 1 {
		t.Errorf("original context %d, attention factor %v", m.OrigContext, m.Rope.AttnFactor)
	}
	if m.RopeFactors(4096) != m.RopeShort || m.RopeFactors(8192) != m.RopeLong || m.RopeShort == nil || m.RopeLong == nil {
		t.Error("LongRoPE factors not chosen by the context")
	}
}

// TestGemma writes gemma2 and gemma3 files and loads them: tied output,
// post norms, q/k norms for gemma3, the window and its pattern.
func TestGemma(t *testing.T) {
	for _, c := range []struct {
		arch    string
		sliding []bool
	}{{"gemma2", []bool{true, false, true, false, true, false}}, {"gemma3", []bool{true, true, true, true, true, false}}} {
		s := Spec{Arch: c.arch, Dim: 64, Layers: 6, Heads: 4, KVHeads: 2, FFN: 96, Type: gguf.Q8_0, Window: 32}
		m, err := models.FromFile(built(t, s))
		if err != nil {
			t.Fatal(err)
		}
		l := m.Layers[5]
		if !m.Tied || l.PostAttnNorm == nil || l.PostFFNNorm == nil || (l.QNorm != nil) != (c.arch == "gemma3") || m.Window != 32 {
			t.Errorf("%s: tied %v, post norms %v %v, q norm %v, window %d", c.arch, m.Tied, l.PostAttnNorm != nil, l.PostFFNNorm != nil, l.QNorm != nil, m.Window)
		}
		for i, want := range c.sliding {
			if m.Sliding(i) != want {
				t.Errorf("%s: layer %d sliding %v", c.arch, i, m.Sliding(i))
			}
		}
	}
}
