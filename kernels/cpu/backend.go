package cpu

import (
	"fmt"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// Backend is the CPU implementation of kernels.Backend: plain Go, one
// thread. Not safe for concurrent use (it reuses scratch buffers).
type Backend struct {
	scratch Scratch
	scores  []float32
	lanes   []float32 // attention's per-lane sums of value products
}

var _ kernels.Backend = (*Backend)(nil)

// New returns a CPU backend.
func New() *Backend { return &Backend{} }

func (b *Backend) Name() string { return "cpu" }

func (b *Backend) Supports(t gguf.Type) bool { return Supported(t) }

func (b *Backend) MatMul(out []float32, w *kernels.Weight, x []float32, n int) {
	b.scratch.MatMul(out, w.Type, w.Data, w.Rows, w.Cols, x, n)
}

func (b *Backend) GetRows(out []float32, w *kernels.Weight, ids []int32) {
	size := w.Type.RowSize(w.Cols)
	for i, id := range ids {
		row := w.Data[int(id)*size : (int(id)+1)*size]
		if err := Dequantize(w.Type, row, out[i*w.Cols:(i+1)*w.Cols]); err != nil {
			panic(fmt.Sprintf("get rows of %q: %v", w.Name, err))
		}
	}
}

func (b *Backend) RMSNorm(out, x, weight []float32, dim int, eps float32) {
	RMSNorm(out, x, weight, dim, eps)
}

func (b *Backend) RoPE(x []float32, pos []int32, heads, headDim int, r *kernels.Rope) {
	RoPE(x, pos, heads, headDim, r)
}

func (b *Backend) Attention(out, q []float32, kv kernels.KV, a kernels.Attn) {
	n := len(q) / (a.Heads * a.HeadDim)
	if need := a.Pos0 + n; need > len(b.scores) {
		b.scores = make([]float32, max(need, 2*len(b.scores)))
	}
	if need := 64 * a.HeadDim; need > len(b.lanes) {
		b.lanes = make([]float32, need)
	}
	attention(out, q, kv, a, b.scores, b.lanes)
}

func (b *Backend) SwiGLU(gate, up []float32) { SwiGLU(gate, up) }
func (b *Backend) Add(dst, src []float32)    { Add(dst, src) }
func (b *Backend) AddBias(x, bias []float32) { AddBias(x, bias) }
