// Package synth writes random-weight GGUF models of any shape and
// architecture, for benchmarks, tests and the demo model. Weights are drawn
// from a seeded generator and scaled by 1/√fan-in so activations stay in a
// sensible range; matrices are stored in the requested type, norms in F32.
package synth

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models/gguf"
)

// Spec is the shape of the model to write.
type Spec struct {
	Arch    string // llama, qwen2, qwen3, phi3, gemma2 or gemma3
	Name    string // general.name
	Dim     int
	Layers  int
	Heads   int
	KVHeads int
	HeadDim int // 0: Dim/Heads
	FFN     int
	Context int // 0: 2048
	Type    gguf.Type
	Mix     string // "", or "Q4_K_M" / "Q5_K_M": some matrices get Q6_K as llama.cpp's quantizer gives them
	Seed    uint64
	// Window is gemma's sliding window (0: 4096 for gemma2, 512 for
	// gemma3, as Gemma 2 and Gemma 3 1B have).
	Window int
}

// archs lists the architectures Build writes.
var archs = []string{"llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"}

// mixes are llama.cpp's K-quant mixes: the main type, and general.file_type.
var mixes = map[string]struct {
	typ      gguf.Type
	fileType uint32
}{
	"Q4_K_M": {gguf.Q4_K, 15},
	"Q5_K_M": {gguf.Q5_K, 17},
}

// ParseType maps a --type name, a tensor type or a mix such as Q4_K_M, onto
// the spec.
func (s *Spec) ParseType(name string) error {
	if m, ok := mixes[name]; ok {
		s.Type, s.Mix = m.typ, name
		return nil
	}
	t, err := gguf.ParseType(name)
	if err != nil {
		return fmt.Errorf("%w (or a mix: Q4_K_M, Q5_K_M)", err)
	}
	s.Type, s.Mix = t, ""
	return nil
}

// moreBits is llama.cpp's use_more_bits: the first and last eighth of the
// layers and every third one between get the higher-precision type.
func moreBits(i, n int) bool {
	return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2
}

// Vocab is a tokenizer to embed: the tokenizer.* metadata entries of a model.
type Vocab []gguf.KV

// VocabFrom copies the tokenizer.* entries of f.
func VocabFrom(f *gguf.File) (Vocab, error) {
	var v Vocab
	for _, kv := range f.KV {
		if len(kv.Key) > 10 && kv.Key[:10] == "tokenizer." {
			v = append(v, kv)
		}
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("the file has no tokenizer.* metadata to copy")
	}
	return v, nil
}

// ByteVocab is a SentencePiece-style vocabulary of <unk>, <s>, </s>, the 256
// byte tokens and "▁" (space): it encodes any text, one token per byte.
func ByteVocab() Vocab {
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{2, 3, 3}
	for b := 0; b < 256; b++ {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6)
	}
	tokens = append(tokens, "▁")
	types = append(types, 1)
	return Vocab{
		{Key: "tokenizer.ggml.model", Value: gguf.String("llama")},
		{Key: "tokenizer.ggml.tokens", Value: gguf.Strings(tokens)},
		{Key: "tokenizer.ggml.scores", Value: gguf.Float32s(make([]float32, len(tokens)))},
		{Key: "tokenizer.ggml.token_type", Value: gguf.Int32s(types)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: gguf.Uint32(0)},
		{Key: "tokenizer.ggml.bos_token_id", Value: gguf.Uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: gguf.Uint32(2)},
		{Key: "tokenizer.ggml.add_bos_token", Value: gguf.Bool(true)},
	}
}

// fileTypes maps a tensor type to llama.cpp's general.file_type.
var fileTypes = map[gguf.Type]uint32{
	gguf.F32: 0, gguf.F16: 1, gguf.Q4_0: 2, gguf.Q4_1: 3, gguf.Q8_0: 7, gguf.Q5_0: 8, gguf.Q5_1: 9,
	gguf.Q4_K: 15, gguf.Q5_K: 17, gguf.Q6_K: 18, gguf.BF16: 32,
}

// Write builds the model and writes it to path.
func Write(path string, s Spec, vocab Vocab) error {
	w, err := Build(s, vocab)
	if err != nil {
		return err
	}
	return w.WriteFile(path)
}

// Parse builds the model in memory and parses it, as Open would read the
// file: for tests.
func Parse(s Spec, vocab Vocab) (*gguf.File, error) {
	w, err := Build(s, vocab)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return nil, err
	}
	return gguf.Parse(b.Bytes())
}

// Build returns a writer holding the model.
func Build(s Spec, vocab Vocab) (*gguf.Writer, error) {
	if s.HeadDim == 0 && s.Heads > 0 {
		s.HeadDim = s.Dim / s.Heads
	}
	if s.Context == 0 {
		s.Context = 2048
	}
	if s.KVHeads == 0 {
		s.KVHeads = s.Heads
	}
	gemma := s.Arch == "gemma2" || s.Arch == "gemma3"
	if s.Window == 0 {
		s.Window = map[string]int{"gemma2": 4096, "gemma3": 512}[s.Arch]
	}
	switch {
	case !slices.Contains(archs, s.Arch):
		return nil, fmt.Errorf("architecture %q is not one of %s", s.Arch, strings.Join(archs, ", "))
	case s.Window < 0:
		return nil, fmt.Errorf("sliding window %d: want a positive number of positions", s.Window)
	case s.Dim <= 0 || s.Layers <= 0 || s.Heads <= 0 || s.FFN <= 0 || s.HeadDim <= 0 || s.HeadDim%2 != 0:
		return nil, fmt.Errorf("impossible shape: dim %d, layers %d, heads %d, head dim %d, ffn %d", s.Dim, s.Layers, s.Heads, s.HeadDim, s.FFN)
	case s.Heads%s.KVHeads != 0:
		return nil, fmt.Errorf("heads %d is not a multiple of kv-heads %d", s.Heads, s.KVHeads)
	case !cpu.Supported(s.Type):
		return nil, fmt.Errorf("type %s cannot be written", s.Type)
	case s.Mix != "" && mixes[s.Mix].typ != s.Type:
		return nil, fmt.Errorf("mix %q does not go with type %s", s.Mix, s.Type)
	}
	bs := s.Type.BlockSize()
	for _, width := range []int{s.Dim, s.FFN, s.Heads * s.HeadDim} {
		if width%bs != 0 {
			return nil, fmt.Errorf("%s needs every matrix row to be a multiple of %d elements, but a row is %d wide: pick dim, ffn and heads×head-dim that are", s.Type, bs, width)
		}
	}
	var nVocab int
	for _, kv := range vocab {
		if kv.Key == "tokenizer.ggml.tokens" {
			nVocab = kv.Value.Len()
		}
	}
	if nVocab == 0 {
		return nil, fmt.Errorf("the vocabulary has no tokenizer.ggml.tokens")
	}

	w := gguf.NewWriter()
	a := s.Arch + "."
	w.Set("general.architecture", gguf.String(s.Arch))
	w.Set("general.name", gguf.String(s.Name))
	if m, ok := mixes[s.Mix]; ok {
		w.Set("general.file_type", gguf.Uint32(m.fileType))
	} else if ft, ok := fileTypes[s.Type]; ok {
		w.Set("general.file_type", gguf.Uint32(ft))
	}
	w.Set(a+"context_length", gguf.Uint32(uint32(s.Context)))
	w.Set(a+"embedding_length", gguf.Uint32(uint32(s.Dim)))
	w.Set(a+"block_count", gguf.Uint32(uint32(s.Layers)))
	w.Set(a+"feed_forward_length", gguf.Uint32(uint32(s.FFN)))
	w.Set(a+"attention.head_count", gguf.Uint32(uint32(s.Heads)))
	w.Set(a+"attention.head_count_kv", gguf.Uint32(uint32(s.KVHeads)))
	w.Set(a+"attention.key_length", gguf.Uint32(uint32(s.HeadDim)))
	w.Set(a+"attention.value_length", gguf.Uint32(uint32(s.HeadDim)))
	w.Set(a+"rope.dimension_count", gguf.Uint32(uint32(s.HeadDim)))
	base := float32(10000)
	if s.Arch == "qwen2" || s.Arch == "qwen3" || s.Arch == "gemma3" {
		base = 1e6
	}
	w.Set(a+"rope.freq_base", gguf.Float32(base))
	eps := float32(1e-5)
	switch s.Arch {
	case "gemma2":
		w.Set(a+"attn_logit_softcapping", gguf.Float32(50))
		w.Set(a+"final_logit_softcapping", gguf.Float32(30))
		w.Set(a+"attention.sliding_window", gguf.Uint32(uint32(s.Window)))
		eps = 1e-6
	case "gemma3":
		// Five sliding layers to one global, which rotates by its own
		// base, as Gemma 3 has.
		w.Set(a+"attention.sliding_window", gguf.Uint32(uint32(s.Window)))
		w.Set(a+"attention.sliding_window_pattern", gguf.Uint32(6))
		w.Set(a+"rope.freq_base_swa", gguf.Float32(10000))
		eps = 1e-6
	}
	if s.Arch == "phi3" {
		// LongRoPE as Phi-3.5 writes it: short factors up to the original
		// context, long ones beyond, and the attention factor that goes
		// with them.
		orig := min(4096, s.Context)
		w.Set(a+"rope.scaling.original_context_length", gguf.Uint32(uint32(orig)))
		w.Set(a+"rope.scaling.attn_factor", gguf.Float32(float32(math.Sqrt(1+math.Log(float64(s.Context)/float64(orig))/math.Log(float64(orig))))))
	}
	w.Set(a+"attention.layer_norm_rms_epsilon", gguf.Float32(eps))
	for _, kv := range vocab {
		w.Set(kv.Key, kv.Value)
	}

	g := gen{w: w, rng: rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))}
	// high is the type of the matrices that a mix stores with more bits.
	high := s.Type
	if s.Mix != "" {
		high = gguf.Q6_K
	}
	q, kv := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	g.matrix("token_embd.weight", s.Type, s.Dim, nVocab, 1)
	g.norm("output_norm.weight", s.Dim)
	if !gemma { // gemma ties its output to the embeddings
		g.matrix("output.weight", high, s.Dim, nVocab, 1/math.Sqrt(float64(s.Dim)))
	}
	if s.Arch == "phi3" {
		for _, name := range []string{"rope_factors_short.weight", "rope_factors_long.weight"} {
			g.vector(name, s.HeadDim/2, func() float64 { return 1 + g.rng.Float64() })
		}
	}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		vd := s.Type // attn_v and ffn_down
		if moreBits(l, s.Layers) {
			vd = high
		}
		g.norm(p+"attn_norm.weight", s.Dim)
		if s.Arch == "phi3" {
			// Fused, in one type, as llama-quantize leaves attn_qkv.
			g.matrix(p+"attn_qkv.weight", s.Type, s.Dim, q+2*kv, 1/math.Sqrt(float64(s.Dim)))
		} else {
			g.matrix(p+"attn_q.weight", s.Type, s.Dim, q, 1/math.Sqrt(float64(s.Dim)))
			g.matrix(p+"attn_k.weight", s.Type, s.Dim, kv, 1/math.Sqrt(float64(s.Dim)))
			g.matrix(p+"attn_v.weight", vd, s.Dim, kv, 1/math.Sqrt(float64(s.Dim)))
		}
		g.matrix(p+"attn_output.weight", s.Type, q, s.Dim, 1/math.Sqrt(float64(q)))
		switch s.Arch {
		case "qwen2":
			g.bias(p+"attn_q.bias", q)
			g.bias(p+"attn_k.bias", kv)
			g.bias(p+"attn_v.bias", kv)
		case "qwen3", "gemma3":
			g.norm(p+"attn_q_norm.weight", s.HeadDim)
			g.norm(p+"attn_k_norm.weight", s.HeadDim)
		}
		if gemma {
			g.norm(p+"post_attention_norm.weight", s.Dim)
		}
		g.norm(p+"ffn_norm.weight", s.Dim)
		if s.Arch == "phi3" {
			g.matrix(p+"ffn_up.weight", s.Type, s.Dim, 2*s.FFN, 1/math.Sqrt(float64(s.Dim))) // gate, then up
		} else {
			g.matrix(p+"ffn_gate.weight", s.Type, s.Dim, s.FFN, 1/math.Sqrt(float64(s.Dim)))
			g.matrix(p+"ffn_up.weight", s.Type, s.Dim, s.FFN, 1/math.Sqrt(float64(s.Dim)))
		}
		g.matrix(p+"ffn_down.weight", vd, s.FFN, s.Dim, 1/math.Sqrt(float64(s.FFN)))
		if gemma {
			g.norm(p+"post_ffw_norm.weight", s.Dim)
		}
	}
	if g.err != nil {
		return nil, g.err
	}
	return w, nil
}

// gen draws tensors into a writer, remembering the first error.
type gen struct {
	w   *gguf.Writer
	rng *rand.Rand
	err error
}

func (g *gen) add(name string, typ gguf.Type, shape []uint64, data []byte) {
	if g.err == nil {
		g.err = g.w.AddTensor(name, typ, shape, data)
	}
}

// matrix adds a rows×cols matrix (cols elements per row) of normal values
// with standard deviation std, stored as typ.
func (g *gen) matrix(name string, typ gguf.Type, cols, rows int, std float64) {
	vals := make([]float32, cols*rows)
	for i := range vals {
		vals[i] = float32(g.rng.NormFloat64() * std)
	}
	data := make([]byte, typ.RowSize(cols)*rows)
	if err := cpu.Quantize(typ, vals, data); err != nil && g.err == nil {
		g.err = fmt.Errorf("tensor %q: %w", name, err)
	}
	g.add(name, typ, []uint64{uint64(cols), uint64(rows)}, data)
}

func (g *gen) vector(name string, n int, f func() float64) {
	data := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		bits := math.Float32bits(float32(f()))
		data[4*i], data[4*i+1], data[4*i+2], data[4*i+3] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
	}
	g.add(name, gguf.F32, []uint64{uint64(n)}, data)
}

func (g *gen) norm(name string, n int) {
	g.vector(name, n, func() float64 { return 1 + 0.1*g.rng.NormFloat64() })
}

func (g *gen) bias(name string, n int) {
	g.vector(name, n, func() float64 { return 0.1 * g.rng.NormFloat64() })
}
