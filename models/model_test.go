package models

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/models/gguf"
)

func TestLoadConfigs(t *testing.T) {
	cases := []struct {
		file                         string
		arch                         string
		dim, layers, heads, kv, head int
		tied, ropeFreqs, neox        bool
	}{
		{"models/stories260K.gguf", "llama", 64, 5, 8, 4, 8, false, false, false},
		{"models/random/llama-Q4_K_M.gguf", "llama", 256, 2, 4, 2, 64, false, false, false},
		{"models/random/llama3tied-F32.gguf", "llama", 256, 2, 4, 2, 64, true, true, false},
		{"models/random/qwen2-F32.gguf", "qwen2", 256, 2, 4, 2, 64, false, false, true},
		{"models/random/qwen3-F32.gguf", "qwen3", 256, 2, 8, 2, 64, true, false, true},
	}
	for _, c := range cases {
		m, err := Load(shared.Path(t, c.file))
		if err != nil {
			t.Fatal(err)
		}
		got := m.Config
		if got.Arch != c.arch || got.Dim != c.dim || got.Layers != c.layers || got.Heads != c.heads ||
			got.KVHeads != c.kv || got.HeadDim != c.head || m.Tied != c.tied || (m.RopeFreqs != nil) != c.ropeFreqs || got.Rope.Neox != c.neox {
			t.Errorf("%s: config %+v tied %v rope_freqs %v", c.file, got, m.Tied, m.RopeFreqs != nil)
		}
		if got.Vocab != 512 {
			t.Errorf("%s: vocab %d", c.file, got.Vocab)
		}
		if c.arch == "qwen2" && m.Layers[0].QBias == nil {
			t.Errorf("%s: no q bias", c.file)
		}
		if c.arch == "qwen3" && (m.Layers[1].QNorm == nil || m.Layers[0].Q.Rows != 512) {
			t.Errorf("%s: q norm / q width", c.file)
		}
		m.Close()
	}
}

// rewrite copies a file through the writer, letting edit change metadata and
// drop tensors, and parses the result.
func rewrite(t *testing.T, src string, edit func(w *gguf.Writer), drop string) (*Model, error) {
	t.Helper()
	f, err := gguf.Open(shared.Path(t, src))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := gguf.NewWriter()
	for _, kv := range f.KV {
		w.Set(kv.Key, kv.Value)
	}
	edit(w)
	for _, tn := range f.Tensors {
		if tn.Name != drop {
			if err := w.AddTensor(tn.Name, tn.Type, tn.Shape, tn.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	g, err := gguf.Parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return FromFile(g)
}

func TestRefusals(t *testing.T) {
	const src = "models/stories260K.gguf"
	cases := []struct {
		name string
		edit func(w *gguf.Writer)
		drop string
		want string
	}{
		{"architecture", func(w *gguf.Writer) { w.Set("general.architecture", gguf.String("gpt2")) }, "", `architecture "gpt2" is not supported`},
		{"missing tensor", func(*gguf.Writer) {}, "blk.3.ffn_up.weight", `tensor "blk.3.ffn_up.weight" is missing`},
		{"shape", func(w *gguf.Writer) { w.Set("llama.feed_forward_length", gguf.Uint32(100)) }, "", `tensor "blk.0.ffn_gate.weight" has shape [64 172], want [64 100]`},
		{"heads", func(w *gguf.Writer) { w.Set("llama.attention.head_count_kv", gguf.Uint32(3)) }, "", "not a multiple"},
		{"rope scaling", func(w *gguf.Writer) { w.Set("llama.rope.scaling.type", gguf.String("yarn")) }, "", `rope scaling "yarn" is not supported`},
		{"metadata type", func(w *gguf.Writer) { w.Set("llama.block_count", gguf.String("five")) }, "", "llama.block_count: want a non-negative integer"},
		{"NaN epsilon", func(w *gguf.Writer) {
			w.Set("llama.attention.layer_norm_rms_epsilon", gguf.Float32(float32(math.NaN())))
		}, "", "llama.attention.layer_norm_rms_epsilon is NaN"},
		{"zero epsilon", func(w *gguf.Writer) { w.Set("llama.attention.layer_norm_rms_epsilon", gguf.Float32(0)) }, "", "layer_norm_rms_epsilon is 0"},
		{"zero context", func(w *gguf.Writer) { w.Set("llama.context_length", gguf.Uint32(0)) }, "", "llama.context_length is 0: want 2 to"},
		{"infinite rope base", func(w *gguf.Writer) { w.Set("llama.rope.freq_base", gguf.Float32(float32(math.Inf(1)))) }, "", "llama.rope.freq_base is +Inf"},
	}
	for _, c := range cases {
		_, err := rewrite(t, src, c.edit, c.drop)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want one containing %q", c.name, err, c.want)
		}
	}
	if m, err := rewrite(t, src, func(*gguf.Writer) {}, ""); err != nil || m.Layers[4].Down.Cols != 172 {
		t.Fatalf("unchanged copy: %v", err)
	}
}

// TestGemmaConfigs: the gemma files' settings as llama.cpp reads them,
// defaults included (gemma2 writes no rope base, no window pattern).
func TestGemmaConfigs(t *testing.T) {
	for _, c := range []struct {
		file              string
		sliding           []bool
		base, baseSWA     float32
		attnCap, finalCap float32
		qNorm             bool
	}{
		{"models/random-families/gemma2-F32.gguf", []bool{true, false}, 10000, 10000, 50, 30, false},
		{"models/random-families/gemma3-F32.gguf", []bool{true, true, false}, 1e6, 10000, 0, 0, true},
	} {
		m, err := Load(shared.Path(t, c.file))
		if err != nil {
			t.Fatal(err)
		}
		g := m.Config
		if g.Window != 8 || g.EmbedScale != 16 || g.QueryScale != 0.125 || !g.GELU || !m.Tied || !g.Rope.Neox ||
			g.Rope.Base != c.base || g.RopeSWA.Base != c.baseSWA || g.AttnSoftCap != c.attnCap || g.FinalSoftCap != c.finalCap {
			t.Errorf("%s: config %+v", c.file, g)
		}
		for l, want := range c.sliding {
			base := c.base
			if want {
				base = c.baseSWA
			}
			if g.Sliding(l) != want || g.LayerRope(l).Base != base {
				t.Errorf("%s: layer %d sliding %v base %v, want %v %v", c.file, l, g.Sliding(l), g.LayerRope(l).Base, want, base)
			}
		}
		for l, ly := range m.Layers {
			if ly.PostAttnNorm == nil || ly.PostFFNNorm == nil || (ly.QNorm != nil) != c.qNorm {
				t.Errorf("%s: layer %d norms %+v", c.file, l, ly)
			}
		}
		m.Close()
	}
	for _, c := range []struct {
		name, file string
		edit       func(w *gguf.Writer)
		drop, want string
	}{
		{"missing post norm", "models/random-families/gemma2-F32.gguf", func(*gguf.Writer) {}, "blk.1.post_ffw_norm.weight",
			`tensor "blk.1.post_ffw_norm.weight" is missing`},
		{"missing q norm", "models/random-families/gemma3-F32.gguf", func(*gguf.Writer) {}, "blk.0.attn_q_norm.weight",
			`tensor "blk.0.attn_q_norm.weight" is missing`},
		{"NaN soft cap", "models/random-families/gemma2-F32.gguf", func(w *gguf.Writer) {
			w.Set("gemma2.attn_logit_softcapping", gguf.Float32(float32(math.NaN())))
		}, "", "gemma2.attn_logit_softcapping is NaN"},
		{"zero swa base", "models/random-families/gemma3-F32.gguf", func(w *gguf.Writer) {
			w.Set("gemma3.rope.freq_base_swa", gguf.Float32(0))
		}, "", "gemma3.rope.freq_base_swa is 0"},
	} {
		_, err := rewrite(t, c.file, c.edit, c.drop)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want one containing %q", c.name, err, c.want)
		}
	}
}
