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
	rope  kernels.Rope

	// Norm weights and biases as f32, converted once at start.
	attnNorm, ffnNorm, qNorm, kNorm [][]float32
	qBias, kBias, vBias             [][]float32
	outNorm                         []float32

	// Activations for up to rows positions, grown on demand.
	rows                  int
	x, xb, xb2, q, k, v   []float32
	att, gate, up, logits []float32
	pos                   []int32
}

// New prepares m to run on b. It refuses weights whose type b cannot multiply,
// naming the tensor.
func New(m *models.Model, b kernels.Backend) (*Engine, error) {
	for _, w := range m.Weights() {
		if !b.Supports(w.Type) {
			return nil, fmt.Errorf("tensor %q has type %s, which the %s backend does not support", w.Name, w.Type, b.Name())
		}
	}
	if m.ValueDim != m.HeadDim {
		return nil, fmt.Errorf("value head width %d differs from key head width %d, which is not supported", m.ValueDim, m.HeadDim)
	}
	e := &Engine{Model: m, B: b, rope: m.Rope}
	vec := func(w *kernels.Weight) []float32 {
		if w == nil {
			return nil
		}
		out := make([]float32, w.Cols)
		b.GetRows(out, w, []int32{0})
		return out
	}
	for _, l := range m.Layers {
		e.attnNorm = append(e.attnNorm, vec(l.AttnNorm))
		e.ffnNorm = append(e.ffnNorm, vec(l.FFNNorm))
		e.qNorm = append(e.qNorm, vec(l.QNorm))
		e.kNorm = append(e.kNorm, vec(l.KNorm))
		e.qBias = append(e.qBias, vec(l.QBias))
		e.kBias = append(e.kBias, vec(l.KBias))
		e.vBias = append(e.vBias, vec(l.VBias))
	}
	e.outNorm = vec(m.OutputNorm)
	e.rope.FreqFactors = vec(m.RopeFreqs)
	return e, nil
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
	e.logits = make([]float32, n*c.Vocab)
	e.pos = make([]int32, n)
}

// Forward appends tokens to the sequence held in kv and returns logits: one
// row of Vocab values for every token when all is true, else for the last
// token only. The returned slice is reused by the next call.
func (e *Engine) Forward(tokens []int32, kv KVCache, all bool) ([]float32, error) {
	c := &e.Model.Config
	n := len(tokens)
	if n == 0 {
		return nil, fmt.Errorf("forward: no tokens")
	}
	for _, t := range tokens {
		if t < 0 || int(t) >= c.Vocab {
			return nil, fmt.Errorf("forward: token id %d is outside the vocabulary (0..%d)", t, c.Vocab-1)
		}
	}
	pos0 := kv.Len()
	if err := kv.Extend(n); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	e.grow(n)
	dim, qw, kvw := c.Dim, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	x, xb, xb2 := e.x[:n*dim], e.xb[:n*dim], e.xb2[:n*dim]
	q, k, v := e.q[:n*qw], e.k[:n*kvw], e.v[:n*kvw]
	att, gate, up := e.att[:n*qw], e.gate[:n*c.FFN], e.up[:n*c.FFN]
	pos := e.pos[:n]
	for i := range pos {
		pos[i] = int32(pos0 + i)
	}
	b := e.B
	m := e.Model

	b.GetRows(x, m.Embed, tokens)
	for l := range m.Layers {
		w := &m.Layers[l]

		// Attention block: x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x)).
		b.RMSNorm(xb, x, e.attnNorm[l], dim, c.NormEps)
		b.MatMul(q, w.Q, xb, n)
		b.MatMul(k, w.K, xb, n)
		b.MatMul(v, w.V, xb, n)
		if e.qBias[l] != nil {
			b.AddBias(q, e.qBias[l])
			b.AddBias(k, e.kBias[l])
			b.AddBias(v, e.vBias[l])
		}
		if e.qNorm[l] != nil {
			b.RMSNorm(q, q, e.qNorm[l], c.HeadDim, c.NormEps)
			b.RMSNorm(k, k, e.kNorm[l], c.HeadDim, c.NormEps)
		}
		b.RoPE(q, pos, c.Heads, c.HeadDim, &e.rope)
		b.RoPE(k, pos, c.KVHeads, c.HeadDim, &e.rope)
		for i := 0; i < n; i++ {
			kv.Put(l, pos0+i, k[i*kvw:(i+1)*kvw], v[i*kvw:(i+1)*kvw])
		}
		b.Attention(att, q, kv, kernels.Attn{
			Layer: l, Pos0: pos0, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim,
			Scale: float32(1 / math.Sqrt(float64(c.HeadDim))),
		})
		b.MatMul(xb2, w.O, att, n)
		b.Add(x, xb2)
		// Like llama.cpp, the last layer's feed-forward runs only for the rows
		// whose logits are wanted: cheaper, and the same kernels as its own.
		if !all && n > 1 && l == len(m.Layers)-1 {
			x, xb, xb2 = x[(n-1)*dim:], xb[:dim], xb2[:dim]
			gate, up = gate[:c.FFN], up[:c.FFN]
			n = 1
		}

		// Feed-forward block: x += Wdown · (silu(Wgate·norm(x)) ⊙ Wup·norm(x)).
		b.RMSNorm(xb, x, e.ffnNorm[l], dim, c.NormEps)
		b.MatMul(gate, w.Gate, xb, n)
		b.MatMul(up, w.Up, xb, n)
		b.SwiGLU(gate, up)
		b.MatMul(xb2, w.Down, gate, n)
		b.Add(x, xb2)
	}

	// Logits for every row, or (x already cut down to it) the last one.
	out := xb[:n*dim]
	b.RMSNorm(out, x, e.outNorm, dim, c.NormEps)
	logits := e.logits[:n*c.Vocab]
	b.MatMul(logits, m.Output, out, n)
	return logits, nil
}
