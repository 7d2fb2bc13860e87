// Package kernels defines the compute interface the engine runs on: a Backend
// multiplies weights stored in their GGUF types with f32 activations and
// applies the elementwise operations of a transformer layer. kernels/cpu
// implements it on the CPU; a CUDA backend implements the same interface.
package kernels

import (
	"fmt"

	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
)

// KVType is the element type a KV cache stores.
type KVType uint8

const (
	KVF32 KVType = iota // float32
	KVF16               // fp16 bits
)

// KVCache is paged KV storage as plain data, which attention reads through
// each sequence's block table (AttnSeq.Blocks). Per layer, keys and values
// apart, blocks of BlockSize positions lie one after another, each position
// a row of Width values (kvHeads×headDim): position s of block b starts at
// (b·BlockSize+s)·Width in K32[l] and V32[l] when Type is KVF32, or in K16[l]
// and V16[l] when it is KVF16. A single contiguous sequence is one block as
// long as it may grow, its rows stored only as far as it has grown.
type KVCache struct {
	Type             KVType
	BlockSize, Width int
	K32, V32         [][]float32
	K16, V16         [][]uint16
}

// Order is how products and attention sum their terms.
type Order uint8

const (
	// OrderLlama sums as llama.cpp's CPU backend does for the call's shape
	// (matches its logits; what llama-bench measures).
	OrderLlama Order = iota
	// OrderBatchInvariant: every row sums in one order whatever the number
	// of rows in the call (serving), so that a sequence's results do not
	// depend on what it is batched with.
	OrderBatchInvariant
)

// String names the order as command-line flags take it.
func (o Order) String() string {
	switch o {
	case OrderLlama:
		return "llama"
	case OrderBatchInvariant:
		return "batch-invariant"
	}
	return fmt.Sprintf("Order(%d)", uint8(o))
}

// Attn describes one attention call: q holds n rows of Heads×HeadDim for
// positions Pos0..Pos0+n-1 (of one sequence; see AttnSeq for several), each
// attending causally to positions 0..its own, summing in Order.
type Attn struct {
	Layer   int
	Pos0    int
	Heads   int
	KVHeads int
	HeadDim int
	Scale   float32 // multiplies q·k
	// SoftCap, when above 0, replaces each scaled score s by
	// SoftCap·tanh(s/SoftCap) (Gemma 2; llama.cpp caps q·k before its
	// softmax scale, so a capped call has Scale 1 and q scaled before).
	SoftCap float32
	// Window, when above 0, is a sliding window: a row at position p
	// attends only to positions above p−Window.
	Window int
	Order  Order
}

// AttnSeq is one sequence's part of an AttentionBatch call.
type AttnSeq struct {
	Blocks []int32 // block table: position p is in block Blocks[p/BlockSize]
	Pos0   int     // position of its first row
	Rows   int     // its query rows
}

// Backend computes on activations held as f32 slices, row-major.
type Backend interface {
	Name() string
	// Supports reports whether weights of type t can be multiplied.
	Supports(t gguf.Type) bool
	// Prepare tells the backend that w will be multiplied (MatMul), so
	// that it may keep a copy in the layout its kernels read fastest, as
	// llama.cpp repacks weights at load. It returns the bytes that copy
	// takes (0: none). Call it before multiplying with w; w is not changed.
	// A backend with a copy multiplies with it alone, so w.Data need not
	// stay in memory (the engine releases a mapped file's pages).
	Prepare(w *models.Weight) int
	// MatMul sets out[i*w.Rows+r] = Σ_c w[r][c]·x[i*w.Cols+c] for i < n,
	// summing in order o.
	MatMul(out []float32, w *models.Weight, x []float32, n int, o Order)
	// MatMuls is MatMul of x with each of ws into the matching outs: the
	// products of one input (a layer's query, key and value projections),
	// which a backend may run as one.
	MatMuls(outs [][]float32, ws []*models.Weight, x []float32, n int, o Order)
	// GetRows writes row ids[i] of w, as f32, to out[i*w.Cols:].
	GetRows(out []float32, w *models.Weight, ids []int32)
	// RMSNorm normalises each dim-wide row of x into out and multiplies by
	// weight elementwise.
	RMSNorm(out, x, weight []float32, dim int, eps float32)
	// RoPE rotates, in place, each head of the rows of x (row i at position
	// pos[i]); each row holds heads×headDim values.
	RoPE(x []float32, pos []int32, heads, headDim int, r *models.Rope)
	// Attention computes softmax(q·kᵀ·scale)·v per head into out (same
	// shape as q) for one sequence, whose keys and values are in kv at the
	// block table blocks.
	Attention(out, q []float32, kv *KVCache, blocks []int32, a Attn)
	// AttentionBatch is Attention for several sequences of one cache in
	// one call: their rows follow each other in q and out, seqs[i] saying
	// how many are sequence i's, its block table and its first position;
	// a.Pos0 is not used.
	AttentionBatch(out, q []float32, kv *KVCache, seqs []AttnSeq, a Attn)
	// SwiGLU sets gate[i] = silu(gate[i])·up[i] over rows of width
	// values (the feed-forward width), each row on its own.
	SwiGLU(gate, up []float32, width int)
	// GEGLU sets gate[i] = gelu(gate[i])·up[i], GELU in its tanh form,
	// over rows of width values.
	GEGLU(gate, up []float32, width int)
	// Scale sets x[i] *= s.
	Scale(x []float32, s float32)
	// SoftCap sets x[i] = c·tanh(x[i]/c).
	SoftCap(x []float32, c float32)
	// Add sets dst[i] += src[i].
	Add(dst, src []float32)
	// AddBias adds bias to every len(bias)-wide row of x.
	AddBias(x, bias []float32)
	// ToHalf sets dst[i] to src[i] rounded to fp16 (to nearest, ties to
	// even), for caches that store fp16.
	ToHalf(dst []uint16, src []float32)
}
