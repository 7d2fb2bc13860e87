// Package models maps a GGUF file onto a transformer architecture: it reads
// the hyperparameters from metadata, finds every weight tensor, checks their
// shapes, and refuses architectures and settings it does not know. The
// supported architectures are llama (Llama 2/3, TinyLlama, Mistral, SmolLM),
// qwen2 (q/k/v biases), qwen3 (per-head q/k RMSNorm), phi3 (fused q/k/v
// and gate/up weights, LongRoPE), gemma2 (soft caps, sliding-window layers,
// norms after attention and feed-forward, GELU) and gemma3 (gemma2's
// layers with q/k RMSNorm, no attention cap, and a rope base of their own
// for the sliding layers).
package models

import (
	"fmt"
	"math"
	"strings"

	"github.com/godwit-ai/godwit/models/gguf"
)

// Architectures lists the values of general.architecture this package loads.
var Architectures = []string{"llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"}

// Config holds the hyperparameters of a model.
type Config struct {
	Arch     string
	Dim      int // embedding width
	Layers   int
	Heads    int
	KVHeads  int
	HeadDim  int // width of a query/key head
	ValueDim int // width of a value head
	FFN      int
	Vocab    int
	Context  int // trained context length
	// OrigContext is LongRoPE's original context length (phi3): the
	// short factors serve contexts up to it, the long ones beyond.
	OrigContext int
	NormEps     float32
	Rope        Rope // FreqFactors are filled by the engine (Model.RopeFactors)

	// Gemma's mechanisms; the zero values leave them out.

	// EmbedScale multiplies the input embeddings (√Dim).
	EmbedScale float32
	// QueryScale multiplies the rotated queries, and attention then
	// scales q·k by 1 rather than 1/√HeadDim.
	QueryScale float32
	// AttnSoftCap and FinalSoftCap cap the attention scores and the
	// logits: c·tanh(x/c).
	AttnSoftCap, FinalSoftCap float32
	// GELU gates the feed-forward with GELU (tanh form) instead of SiLU.
	GELU bool
	// Window is the sliding window of the layers Sliding reports: a
	// position attends to itself and the Window−1 before it.
	Window int
	// SWAPeriod: in every SWAPeriod layers the last is global, the
	// others sliding (llama.cpp's swa pattern).
	SWAPeriod int
	// RopeSWA is the rotation of the sliding layers.
	RopeSWA Rope
}

// Sliding reports whether layer l attends through the sliding window.
func (c *Config) Sliding(l int) bool {
	return c.Window > 0 && (c.SWAPeriod == 0 || l%c.SWAPeriod < c.SWAPeriod-1)
}

// LayerRope is the rotation of layer l.
func (c *Config) LayerRope(l int) *Rope {
	if c.Sliding(l) {
		return &c.RopeSWA
	}
	return &c.Rope
}

// Layer holds one transformer block's weights. Biases and q/k norms are nil
// when the architecture has none.
type Layer struct {
	AttnNorm            *Weight
	Q, K, V, O          *Weight
	QBias, KBias, VBias *Weight
	QNorm, KNorm        *Weight
	PostAttnNorm        *Weight // gemma: normalises attention's output before the residual add
	FFNNorm             *Weight
	Gate, Up, Down      *Weight
	PostFFNNorm         *Weight // gemma: the same for the feed-forward's
}

// Model is a loaded model: its configuration and weights, which point into
// the memory-mapped file.
type Model struct {
	Config
	File       *gguf.File
	Embed      *Weight
	OutputNorm *Weight
	Output     *Weight // Embed itself when the embeddings are tied
	RopeFreqs  *Weight // nil unless the file has rope_freqs.weight
	// RopeShort and RopeLong are LongRoPE's frequency factors (phi3), nil
	// elsewhere; RopeFactors picks one by the context served.
	RopeShort, RopeLong *Weight
	Layers              []Layer
	Tied                bool
}

// Load opens path and maps it onto its architecture.
func Load(path string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	m, err := FromFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return m, nil
}

// maxContext bounds context_length: far beyond any model's, and small enough
// that a position never overflows the arithmetic sized by it.
const maxContext = 1 << 24

// checkRanges refuses hyperparameters that would load but break every
// request: a NaN epsilon gives no finite logit, a context of 0 refuses every
// prompt. The error names the key and its value.
func checkRanges(arch string, c Config) error {
	finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
	switch {
	case !finite(c.NormEps) || c.NormEps <= 0 || c.NormEps >= 1:
		return fmt.Errorf("metadata %s.attention.layer_norm_rms_epsilon is %v: want a finite value in (0, 1)", arch, c.NormEps)
	case c.Context < 2 || c.Context > maxContext:
		return fmt.Errorf("metadata %s.context_length is %d: want 2 to %d", arch, c.Context, maxContext)
	case !finite(c.Rope.Base) || c.Rope.Base <= 0:
		return fmt.Errorf("metadata %s.rope.freq_base is %v: want a finite value above 0", arch, c.Rope.Base)
	case !finite(c.Rope.FreqScale) || c.Rope.FreqScale < 0:
		return fmt.Errorf("metadata %s.rope.scaling.factor gives a frequency scale of %v: want a finite factor above 0", arch, c.Rope.FreqScale)
	case !finite(c.Rope.AttnFactor) || c.Rope.AttnFactor < 0:
		return fmt.Errorf("metadata %s.rope.scaling.attn_factor is %v: want a finite, non-negative value", arch, c.Rope.AttnFactor)
	case !finite(c.AttnSoftCap) || c.AttnSoftCap < 0:
		return fmt.Errorf("metadata %s.attn_logit_softcapping is %v: want a finite, non-negative value", arch, c.AttnSoftCap)
	case !finite(c.FinalSoftCap) || c.FinalSoftCap < 0:
		return fmt.Errorf("metadata %s.final_logit_softcapping is %v: want a finite, non-negative value", arch, c.FinalSoftCap)
	case c.Window > 0 && (!finite(c.RopeSWA.Base) || c.RopeSWA.Base <= 0):
		return fmt.Errorf("metadata %s.rope.freq_base_swa is %v: want a finite value above 0", arch, c.RopeSWA.Base)
	}
	return nil
}

// Close releases the file's mapping; the weights are unusable afterwards.
func (m *Model) Close() error { return m.File.Close() }

// FromFile maps a parsed file onto its architecture.
func FromFile(f *gguf.File) (*Model, error) {
	arch, _ := f.String("general.architecture")
	known := false
	for _, a := range Architectures {
		known = known || a == arch
	}
	if !known {
		return nil, fmt.Errorf("architecture %q is not supported (supported: %s)", arch, strings.Join(Architectures, ", "))
	}
	md := meta{f: f, arch: arch}
	c := Config{Arch: arch}
	c.Dim = md.int("embedding_length", 0)
	c.Layers = md.int("block_count", 0)
	c.FFN = md.int("feed_forward_length", 0)
	c.Heads = md.int("attention.head_count", 0)
	c.KVHeads = md.int("attention.head_count_kv", c.Heads)
	if c.Heads > 0 {
		c.HeadDim = md.int("attention.key_length", c.Dim/c.Heads)
		c.ValueDim = md.int("attention.value_length", c.HeadDim)
	}
	c.Context = md.int("context_length", 2048)
	c.NormEps = md.float("attention.layer_norm_rms_epsilon", 1e-5)
	c.Rope = Rope{
		Dims: md.int("rope.dimension_count", c.HeadDim),
		Base: md.float("rope.freq_base", 10000),
		Neox: arch != "llama",
	}
	if arch == "phi3" {
		c.OrigContext = md.int("rope.scaling.original_context_length", c.Context)
		c.Rope.AttnFactor = md.float("rope.scaling.attn_factor", 1)
	}
	if strings.HasPrefix(arch, "gemma") {
		gemma(&md, &c)
	}
	if md.err != nil {
		return nil, md.err
	}
	switch st, _ := f.String(arch + ".rope.scaling.type"); st {
	case "", "none":
	case "linear":
		if factor := md.float("rope.scaling.factor", 1); factor > 0 {
			c.Rope.FreqScale = 1 / factor
		}
	default:
		return nil, fmt.Errorf("rope scaling %q is not supported (supported: none, linear, and llama3 through rope_freqs.weight)", st)
	}
	if c.Dim <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.FFN <= 0 || c.HeadDim <= 0 {
		return nil, fmt.Errorf("metadata gives an impossible shape: embedding %d, layers %d, heads %d/%d, head dim %d, ffn %d",
			c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.FFN)
	}
	if err := checkRanges(arch, c); err != nil {
		return nil, err
	}
	if c.Heads%c.KVHeads != 0 {
		return nil, fmt.Errorf("head_count %d is not a multiple of head_count_kv %d", c.Heads, c.KVHeads)
	}
	if c.Rope.Dims <= 0 || c.Rope.Dims > c.HeadDim || c.Rope.Dims%2 != 0 {
		return nil, fmt.Errorf("rope dimension count %d does not fit head dim %d", c.Rope.Dims, c.HeadDim)
	}

	m := &Model{Config: c, File: f}
	t := tensors{f: f}
	embd := t.matrix("token_embd.weight", -1, c.Dim)
	if embd != nil {
		m.Config.Vocab = embd.Rows
	}
	m.Embed = embd
	m.OutputNorm = t.vector("output_norm.weight", c.Dim)
	if _, ok := f.Tensor("output.weight"); ok {
		m.Output = t.matrix("output.weight", m.Vocab, c.Dim)
	} else {
		m.Output, m.Tied = embd, true
	}
	if _, ok := f.Tensor("rope_freqs.weight"); ok {
		m.RopeFreqs = t.vector("rope_freqs.weight", c.Rope.Dims/2)
	}
	if arch == "phi3" {
		m.RopeShort = t.vector("rope_factors_short.weight", c.Rope.Dims/2)
		m.RopeLong = t.vector("rope_factors_long.weight", c.Rope.Dims/2)
	}
	q, kv, v := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.KVHeads*c.ValueDim
	gemma := strings.HasPrefix(arch, "gemma")
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		// Tensors are looked up in the order of the block, so that the
		// first missing or misshapen one is the one reported. phi3's fused
		// weights are split into views of their rows: a row's product does
		// not depend on the rows beside it.
		l := Layer{AttnNorm: t.vector(p+"attn_norm.weight", c.Dim)}
		if arch == "phi3" {
			qkv := splitRows(t.matrix(p+"attn_qkv.weight", q+kv+v, c.Dim), q, kv, v)
			l.Q, l.K, l.V = qkv[0], qkv[1], qkv[2]
		} else {
			l.Q = t.matrix(p+"attn_q.weight", q, c.Dim)
			l.K = t.matrix(p+"attn_k.weight", kv, c.Dim)
			l.V = t.matrix(p+"attn_v.weight", v, c.Dim)
		}
		if arch == "gemma3" {
			l.QNorm = t.vector(p+"attn_q_norm.weight", c.HeadDim)
			l.KNorm = t.vector(p+"attn_k_norm.weight", c.HeadDim)
		}
		l.O = t.matrix(p+"attn_output.weight", c.Dim, c.Heads*c.ValueDim)
		if gemma {
			l.PostAttnNorm = t.vector(p+"post_attention_norm.weight", c.Dim)
		}
		l.FFNNorm = t.vector(p+"ffn_norm.weight", c.Dim)
		if arch == "phi3" {
			gu := splitRows(t.matrix(p+"ffn_up.weight", 2*c.FFN, c.Dim), c.FFN, c.FFN)
			l.Gate, l.Up = gu[0], gu[1]
		} else {
			l.Gate = t.matrix(p+"ffn_gate.weight", c.FFN, c.Dim)
			l.Up = t.matrix(p+"ffn_up.weight", c.FFN, c.Dim)
		}
		l.Down = t.matrix(p+"ffn_down.weight", c.Dim, c.FFN)
		if gemma {
			l.PostFFNNorm = t.vector(p+"post_ffw_norm.weight", c.Dim)
		}
		switch arch {
		case "qwen2":
			l.QBias = t.vector(p+"attn_q.bias", q)
			l.KBias = t.vector(p+"attn_k.bias", kv)
			l.VBias = t.vector(p+"attn_v.bias", v)
		case "qwen3":
			l.QNorm = t.vector(p+"attn_q_norm.weight", c.HeadDim)
			l.KNorm = t.vector(p+"attn_k_norm.weight", c.HeadDim)
		}
		m.Layers = append(m.Layers, l)
	}
	if t.err != nil {
		return nil, t.err
	}
	return m, nil
}

// gemma reads Gemma 2's and 3's settings into c, with llama.cpp's defaults
// for the keys a file leaves out.
func gemma(md *meta, c *Config) {
	c.EmbedScale = float32(math.Sqrt(float64(float32(c.Dim))))
	c.GELU = true
	c.RopeSWA = c.Rope
	scaleDim := c.HeadDim
	switch md.arch {
	case "gemma2":
		// The sliding window is on every other layer.
		c.AttnSoftCap = md.float("attn_logit_softcapping", 50)
		c.FinalSoftCap = md.float("final_logit_softcapping", 30)
		c.Window = md.int("attention.sliding_window", 4096)
		c.SWAPeriod = 2
		if c.Layers == 46 { // Gemma 2 27B scales by its width per head
			scaleDim = c.Dim / max(c.Heads, 1)
		}
	case "gemma3":
		c.FinalSoftCap = md.float("final_logit_softcapping", 0)
		c.Window = md.int("attention.sliding_window", 0)
		c.SWAPeriod = md.int("attention.sliding_window_pattern", 6)
		c.RopeSWA.Base = md.float("rope.freq_base_swa", 10000)
		c.RopeSWA.FreqScale = 0 // the sliding layers are not scaled
		if c.Layers == 62 {     // Gemma 3 27B
			scaleDim = c.Dim / max(c.Heads, 1)
		}
	}
	if scaleDim > 0 {
		c.QueryScale = 1 / float32(math.Sqrt(float64(float32(scaleDim)))) // as llama.cpp: 1.0f / std::sqrt(float)
	}
}

// RopeFactors is the frequency factors of a context of ctx positions:
// rope_freqs where the file has it, LongRoPE's short factors up to the
// original context and its long ones beyond (as llama.cpp chooses by the
// n_ctx it runs with), else nil.
func (m *Model) RopeFactors(ctx int) *Weight {
	switch {
	case m.RopeShort != nil && ctx <= m.OrigContext:
		return m.RopeShort
	case m.RopeLong != nil:
		return m.RopeLong
	}
	return m.RopeFreqs
}

// Weights lists every weight of the model once, for checks over all of them.
func (m *Model) Weights() []*Weight {
	ws := []*Weight{m.Embed, m.OutputNorm}
	if !m.Tied {
		ws = append(ws, m.Output)
	}
	for _, w := range []*Weight{m.RopeFreqs, m.RopeShort, m.RopeLong} {
		if w != nil {
			ws = append(ws, w)
		}
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		for _, w := range []*Weight{l.AttnNorm, l.Q, l.K, l.V, l.O, l.QBias, l.KBias, l.VBias, l.QNorm, l.KNorm,
			l.PostAttnNorm, l.FFNNorm, l.Gate, l.Up, l.Down, l.PostFFNNorm} {
			if w != nil {
				ws = append(ws, w)
			}
		}
	}
	return ws
}

// Matrices lists the weights that are multiplied (MatMul): the layers'
// projections and the output, which may be the embeddings themselves.
func (m *Model) Matrices() []*Weight {
	ws := []*Weight{m.Output}
	for i := range m.Layers {
		l := &m.Layers[i]
		ws = append(ws, l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down)
	}
	return ws
}

// meta reads "<arch>.<key>" values, remembering the first type error.
type meta struct {
	f    *gguf.File
	arch string
	err  error
}

func (m *meta) int(key string, def int) int {
	v, ok := m.f.Get(m.arch + "." + key)
	if !ok {
		return def
	}
	i, ok := v.Int()
	if !ok || i < 0 || i > 1<<31 {
		if m.err == nil {
			m.err = fmt.Errorf("metadata %s.%s: want a non-negative integer, got %s %v", m.arch, key, v.Type, v.Format(4))
		}
		return def
	}
	return int(i)
}

func (m *meta) float(key string, def float32) float32 {
	v, ok := m.f.Get(m.arch + "." + key)
	if !ok {
		return def
	}
	x, ok := v.Float()
	if !ok {
		if m.err == nil {
			m.err = fmt.Errorf("metadata %s.%s: want a number, got %s", m.arch, key, v.Type)
		}
		return def
	}
	return float32(x)
}

// tensors looks up weights and checks their shapes, remembering the first error.
type tensors struct {
	f   *gguf.File
	err error
}

func (t *tensors) fail(format string, args ...any) {
	if t.err == nil {
		t.err = fmt.Errorf(format, args...)
	}
}

// matrix finds a rows×cols weight; rows < 0 accepts any row count.
func (t *tensors) matrix(name string, rows, cols int) *Weight {
	g, ok := t.f.Tensor(name)
	if !ok {
		t.fail("tensor %q is missing", name)
		return nil
	}
	if len(g.Shape) != 2 || int(g.Shape[0]) != cols || (rows >= 0 && int(g.Shape[1]) != rows) {
		want := fmt.Sprintf("[%d %d]", cols, rows)
		if rows < 0 {
			want = fmt.Sprintf("[%d N]", cols)
		}
		t.fail("tensor %q has shape %v, want %s", name, g.Shape, want)
		return nil
	}
	return &Weight{Name: name, Type: g.Type, Rows: int(g.Shape[1]), Cols: cols, Data: g.Data}
}

// splitRows splits w into weights of the given row counts, in order, each a
// view of its rows (nil when w is).
func splitRows(w *Weight, counts ...int) []*Weight {
	out := make([]*Weight, len(counts))
	if w == nil {
		return out
	}
	rowBytes, r := w.Type.RowSize(w.Cols), 0
	for i, n := range counts {
		out[i] = &Weight{Name: fmt.Sprintf("%s[%d:%d]", w.Name, r, r+n), Type: w.Type, Rows: n, Cols: w.Cols,
			Data: w.Data[r*rowBytes : (r+n)*rowBytes]}
		r += n
	}
	return out
}

// vector finds a one-dimensional weight of n elements as a 1×n matrix.
func (t *tensors) vector(name string, n int) *Weight {
	g, ok := t.f.Tensor(name)
	if !ok {
		t.fail("tensor %q is missing", name)
		return nil
	}
	if len(g.Shape) != 1 || int(g.Shape[0]) != n {
		t.fail("tensor %q has shape %v, want [%d]", name, g.Shape, n)
		return nil
	}
	return &Weight{Name: name, Type: g.Type, Rows: 1, Cols: n, Data: g.Data}
}
