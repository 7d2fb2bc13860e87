// Package engine runs a model's forward pass on a kernels.Backend and drives
// generation: tokens in, logits out, with keys and values kept in a KVCache.
package engine

import (
	"fmt"
	"math"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models"
)

// Engine runs one model on one backend. It is not safe for concurrent use:
// its activation buffers are reused from call to call.
type Engine struct {
	Model *models.Model
	B     kernels.Backend
	rope  models.Rope // of the global layers
	// ropeSWA is the rotation of the sliding-window layers (Gemma 3's
	// have a base of their own).
	ropeSWA models.Rope
	order   kernels.Order // how every product and attention sums

	// PreparedBytes is the memory the backend's own copies of the
	// weights take (see kernels.Backend.Prepare).
	PreparedBytes int
	copied        map[*models.Weight]bool // the weights Prepare copied

	// Norm weights and biases as f32, converted once at start.
	attnNorm, ffnNorm, qNorm, kNorm [][]float32
	postAttnNorm, postFFNNorm       [][]float32
	qBias, kBias, vBias             [][]float32
	outNorm                         []float32

	// Activations for up to rows positions, grown on demand.
	rows                  int
	x, xb, xb2, q, k, v   []float32
	att, gate, up, logits []float32
	pos                   []int32

	// Per-call lists, kept to allocate nothing.
	spans      []span
	outRows    []int
	stepTokens []int32
	attnSeqs   []kernels.AttnSeq
	outs       [][]float32 // MatMuls' arguments
	ws         []*models.Weight
}

// New prepares m to run on b, summing in order o: kernels.OrderLlama to match
// llama.cpp's logits, kernels.OrderBatchInvariant for a sequence's results
// not to depend on what it is batched with. It refuses weights whose type b
// cannot multiply, naming the tensor.
func New(m *models.Model, b kernels.Backend, o kernels.Order) (*Engine, error) {
	for _, w := range m.Weights() {
		if !b.Supports(w.Type) {
			return nil, fmt.Errorf("tensor %q has type %s, which the %s backend does not support", w.Name, w.Type, b.Name())
		}
	}
	if m.ValueDim != m.HeadDim {
		return nil, fmt.Errorf("value head width %d differs from key head width %d, which is not supported", m.ValueDim, m.HeadDim)
	}
	e := &Engine{Model: m, B: b, rope: m.Rope, ropeSWA: m.RopeSWA, order: o}
	for _, l := range m.Layers {
		e.attnNorm = append(e.attnNorm, e.vector(l.AttnNorm))
		e.ffnNorm = append(e.ffnNorm, e.vector(l.FFNNorm))
		e.qNorm = append(e.qNorm, e.vector(l.QNorm))
		e.kNorm = append(e.kNorm, e.vector(l.KNorm))
		e.postAttnNorm = append(e.postAttnNorm, e.vector(l.PostAttnNorm))
		e.postFFNNorm = append(e.postFFNNorm, e.vector(l.PostFFNNorm))
		e.qBias = append(e.qBias, e.vector(l.QBias))
		e.kBias = append(e.kBias, e.vector(l.KBias))
		e.vBias = append(e.vBias, e.vector(l.VBias))
	}
	e.outNorm = e.vector(m.OutputNorm)
	e.UseContext(m.Context)
	for _, w := range m.Matrices() {
		n := b.Prepare(w)
		if n > 0 {
			// The backend's copy replaces the stored rows in memory.
			if m.File != nil {
				m.File.Release(w.Data)
			}
			if e.copied == nil {
				e.copied = map[*models.Weight]bool{}
			}
			e.copied[w] = true
		}
		e.PreparedBytes += n
	}
	return e, nil
}

// UseContext tells the engine the context it serves, in positions (the
// model's trained context until called): LongRoPE models (phi3) rotate by
// their short factors up to their original context and by their long ones
// beyond, as llama.cpp does by its n_ctx. Call it before the first forward
// pass.
func (e *Engine) UseContext(n int) {
	e.rope.FreqFactors = e.vector(e.Model.RopeFactors(n))
	e.ropeSWA.FreqFactors = e.rope.FreqFactors
}

// vector is the one-row weight w (a norm, a bias, rope factors) as f32, or
// nil when w is.
func (e *Engine) vector(w *models.Weight) []float32 {
	if w == nil {
		return nil
	}
	out := make([]float32, w.Cols)
	e.B.GetRows(out, w, []int32{0})
	return out
}

// Copied reports whether the backend multiplies w from its own copy (see
// kernels.Backend.Prepare): w's stored data is then not read again, and
// need not be brought into memory.
func (e *Engine) Copied(w *models.Weight) bool { return e.copied[w] }

// Order is how the engine's products and attention sum (see New).
func (e *Engine) Order() kernels.Order { return e.order }

// Vocab is the number of logits a row produces.
func (e *Engine) Vocab() int { return e.Model.Vocab }

// Context is the model's context length in positions.
func (e *Engine) Context() int { return e.Model.Context }

// KVBytes is the memory positions positions of this model's keys and values
// take in a KV pool, f32 or fp16.
func (e *Engine) KVBytes(positions int, f32 bool) int64 {
	return KVBytes(len(e.Model.Layers), e.Model.KVHeads*e.Model.HeadDim, positions, f32)
}

// NewKVPool returns a KV pool for this model of as many blocks as bytes
// hold, f32 or fp16 (rounded by the engine's backend).
func (e *Engine) NewKVPool(bytes int64, f32 bool) (*KVPool, error) {
	cfg := PoolConfigFor(&e.Model.Config, bytes, f32)
	cfg.ToHalf = e.B.ToHalf
	return NewKVPool(cfg)
}

// PoolConfigFor is the KV pool configuration of bytes for a model of
// configuration c, f32 or fp16: its sliding-window layers keep a window.
func PoolConfigFor(c *models.Config, bytes int64, f32 bool) KVPoolConfig {
	cfg := KVPoolConfig{Layers: c.Layers, Width: c.KVHeads * c.HeadDim, Bytes: bytes, F32: f32, Window: c.Window}
	if c.Window > 0 {
		cfg.Sliding = make([]bool, c.Layers)
		for l := range cfg.Sliding {
			cfg.Sliding[l] = c.Sliding(l)
		}
	}
	return cfg
}

// NewCache returns an empty KV cache sized for this model, holding at most
// maxLen positions (the model's context length when maxLen ≤ 0).
func (e *Engine) NewCache(maxLen int) *FlatCache {
	if maxLen <= 0 {
		maxLen = e.Model.Context
	}
	return NewFlatCache(len(e.Model.Layers), e.Model.KVHeads*e.Model.HeadDim, maxLen)
}

func (e *Engine) grow(n int) {
	if n <= e.rows {
		return
	}
	c := e.Model.Config
	e.rows = n
	e.x = make([]float32, n*c.Dim)
	e.xb = make([]float32, n*c.Dim)
	e.xb2 = make([]float32, n*c.Dim)
	e.q = make([]float32, n*c.Heads*c.HeadDim)
	e.k = make([]float32, n*c.KVHeads*c.HeadDim)
	e.v = make([]float32, n*c.KVHeads*c.ValueDim)
	e.att = make([]float32, n*c.Heads*c.ValueDim)
	e.gate = make([]float32, n*c.FFN)
	e.up = make([]float32, n*c.FFN)
	e.pos = make([]int32, n)
}

// Forward appends tokens to the sequence held in kv and returns logits: one
// row of Vocab values for every token when all is true, else for the last
// token only. The returned slice is reused by the next call. With
// kernels.OrderLlama its products sum as llama.cpp's CPU backend does for the
// same batch, so its logits match llama.cpp's.
func (e *Engine) Forward(tokens []int32, kv KVCache, all bool) ([]float32, error) {
	n := len(tokens)
	if n == 0 {
		return nil, fmt.Errorf("forward: no tokens")
	}
	e.outRows = e.outRows[:0]
	if all {
		for i := range n {
			e.outRows = append(e.outRows, i)
		}
	} else {
		e.outRows = append(e.outRows, n-1)
	}
	e.spans = append(e.spans[:0], span{kv: kv, n: n})
	return e.run(tokens, e.spans, e.outRows)
}

// SeqInput is one sequence's part of a Step.
type SeqInput struct {
	// KV holds the sequence's positions before Tokens, with room for
	// Tokens (for a Seq, reserved). The inputs of one Step share its
	// Storage (Seqs of one KVPool).
	KV KVCache
	// Tokens are the next tokens: a chunk of the prompt, or the token
	// sampled last.
	Tokens []int32
	// Logits asks for the logits after the last of Tokens.
	Logits bool
}

// Step runs one forward pass over a ragged batch: each sequence appends its
// Tokens to its cache, all rows go through each weight product together
// (the weights are read once per step), and attention runs per sequence. It
// returns one row of Vocab logits per input with Logits set, in order, and
// an empty slice when none has it set; the slice is reused by the next call.
//
// With kernels.OrderBatchInvariant every row sums in one order whatever else
// is in the batch, so a sequence's logits are the same alone as among many,
// and however its prompt is split into chunks.
func (e *Engine) Step(in []SeqInput) ([]float32, error) {
	e.stepTokens = e.stepTokens[:0]
	e.spans = e.spans[:0]
	e.outRows = e.outRows[:0]
	for _, s := range in {
		if len(s.Tokens) == 0 {
			return nil, fmt.Errorf("step: a sequence with no tokens")
		}
		e.spans = append(e.spans, span{kv: s.KV, n: len(s.Tokens)})
		e.stepTokens = append(e.stepTokens, s.Tokens...)
		if s.Logits {
			e.outRows = append(e.outRows, len(e.stepTokens)-1)
		}
	}
	if len(e.stepTokens) == 0 {
		return nil, fmt.Errorf("step: no sequences")
	}
	return e.run(e.stepTokens, e.spans, e.outRows)
}

// span is one sequence's rows of a forward pass.
type span struct {
	kv   KVCache
	n    int // rows
	pos0 int // the position of its first row, set by run
}

// run is the forward pass over tokens, which the spans divide into
// sequences in order. It returns the logits of the rows listed in out
// (increasing), one Vocab-wide row each: none when out is empty.
func (e *Engine) run(tokens []int32, spans []span, out []int) ([]float32, error) {
	c := &e.Model.Config
	n := len(tokens)
	for _, t := range tokens {
		if t < 0 || int(t) >= c.Vocab {
			return nil, fmt.Errorf("forward: token id %d is outside the vocabulary (0..%d)", t, c.Vocab-1)
		}
	}
	kv := spans[0].kv.Storage()
	for _, sp := range spans[1:] {
		if sp.kv.Storage() != kv {
			return nil, fmt.Errorf("forward: sequences batched from different KV caches")
		}
	}
	for i := range spans {
		sp := &spans[i]
		sp.pos0 = sp.kv.Len()
		if err := sp.kv.Extend(sp.n); err != nil {
			for _, done := range spans[:i] {
				done.kv.Truncate(done.pos0)
			}
			return nil, fmt.Errorf("forward: %w", err)
		}
	}
	e.grow(n)
	dim, qw, kvw := c.Dim, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	x, xb, xb2 := e.x[:n*dim], e.xb[:n*dim], e.xb2[:n*dim]
	q, k, v := e.q[:n*qw], e.k[:n*kvw], e.v[:n*kvw]
	att, gate, up := e.att[:n*qw], e.gate[:n*c.FFN], e.up[:n*c.FFN]
	pos := e.pos[:n]
	row := 0
	e.attnSeqs = e.attnSeqs[:0]
	for _, sp := range spans {
		for i := range sp.n {
			pos[row] = int32(sp.pos0 + i)
			row++
		}
		e.attnSeqs = append(e.attnSeqs, kernels.AttnSeq{Pos0: sp.pos0, Rows: sp.n})
	}
	b := e.B
	m := e.Model

	// What every layer's attention shares; each sets its Layer and Window.
	layerAttn := kernels.Attn{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim,
		Scale: float32(1 / math.Sqrt(float64(c.HeadDim))), SoftCap: c.AttnSoftCap, Order: e.order}
	if c.QueryScale != 0 {
		layerAttn.Scale = 1 // q is scaled instead, after RoPE
	}

	b.GetRows(x, m.Embed, tokens)
	if c.EmbedScale != 0 {
		b.Scale(x, c.EmbedScale)
	}
	for l := range m.Layers {
		w := &m.Layers[l]
		rope := &e.rope
		attn := layerAttn
		attn.Layer = l
		if c.Sliding(l) {
			rope, attn.Window = &e.ropeSWA, c.Window
		}

		// Attention block: x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x)).
		b.RMSNorm(xb, x, e.attnNorm[l], dim, c.NormEps)
		e.outs, e.ws = append(e.outs[:0], q, k, v), append(e.ws[:0], w.Q, w.K, w.V)
		b.MatMuls(e.outs, e.ws, xb, n, e.order)
		if e.qBias[l] != nil {
			b.AddBias(q, e.qBias[l])
			b.AddBias(k, e.kBias[l])
			b.AddBias(v, e.vBias[l])
		}
		if e.qNorm[l] != nil {
			b.RMSNorm(q, q, e.qNorm[l], c.HeadDim, c.NormEps)
			b.RMSNorm(k, k, e.kNorm[l], c.HeadDim, c.NormEps)
		}
		b.RoPE(q, pos, c.Heads, c.HeadDim, rope)
		b.RoPE(k, pos, c.KVHeads, c.HeadDim, rope)
		if c.QueryScale != 0 {
			b.Scale(q, c.QueryScale)
		}
		row := 0
		for _, sp := range spans {
			for i := range sp.n {
				sp.kv.Put(l, sp.pos0+i, k[(row+i)*kvw:(row+i+1)*kvw], v[(row+i)*kvw:(row+i+1)*kvw])
			}
			row += sp.n
		}
		last := l == len(m.Layers)-1
		if last && len(out) == 0 {
			// Only the cache was wanted of this step (a prompt chunk
			// before its last): the rest of the layer feeds no logits.
			return e.logits[:0], nil
		}
		for i, sp := range spans {
			e.attnSeqs[i].Blocks = sp.kv.Table(l) // a paged pool's layer groups have tables of their own
		}
		b.AttentionBatch(att, q, kv, e.attnSeqs, attn)
		b.MatMul(xb2, w.O, att, n, e.order)
		if e.postAttnNorm[l] != nil {
			b.RMSNorm(xb2, xb2, e.postAttnNorm[l], dim, c.NormEps)
		}
		b.Add(x, xb2)
		// Like llama.cpp, the last layer's feed-forward runs only for the rows
		// whose logits are wanted: cheaper, and the same kernels as its own.
		if last {
			for j, r := range out {
				if r != j {
					copy(x[j*dim:(j+1)*dim], x[r*dim:(r+1)*dim])
				}
			}
			n = len(out)
			x, xb, xb2 = x[:n*dim], xb[:n*dim], xb2[:n*dim]
			gate, up = gate[:n*c.FFN], up[:n*c.FFN]
		}

		// Feed-forward block: x += Wdown · (silu(Wgate·norm(x)) ⊙ Wup·norm(x)),
		// GELU in place of SiLU for Gemma.
		b.RMSNorm(xb, x, e.ffnNorm[l], dim, c.NormEps)
		e.outs, e.ws = append(e.outs[:0], gate, up), append(e.ws[:0], w.Gate, w.Up)
		b.MatMuls(e.outs, e.ws, xb, n, e.order)
		if c.GELU {
			b.GEGLU(gate, up, c.FFN)
		} else {
			b.SwiGLU(gate, up, c.FFN)
		}
		b.MatMul(xb2, w.Down, gate, n, e.order)
		if e.postFFNNorm[l] != nil {
			b.RMSNorm(xb2, xb2, e.postFFNNorm[l], dim, c.NormEps)
		}
		b.Add(x, xb2)
	}

	// Logits for the wanted rows, which x has been cut down to: the buffer
	// follows their number, not the step's rows (a prompt chunk's
	// rows × a 150k vocabulary would be hundreds of megabytes).
	if need := n * c.Vocab; cap(e.logits) < need {
		e.logits = make([]float32, need)
	}
	final := xb[:n*dim]
	b.RMSNorm(final, x, e.outNorm, dim, c.NormEps)
	logits := e.logits[:n*c.Vocab]
	b.MatMul(logits, m.Output, final, n, e.order)
	if c.FinalSoftCap != 0 {
		b.SoftCap(logits, c.FinalSoftCap)
	}
	return logits, nil
}
