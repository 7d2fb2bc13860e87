package cpu

import (
	"fmt"
	"runtime"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// Backend is the CPU implementation of kernels.Backend. Matrix products and
// attention run on a pool of threads; the cheap elementwise operations run on
// the caller's. Not safe for concurrent use (it reuses scratch buffers).
type Backend struct {
	pool    *Pool
	scratch Scratch
	attn    attnTask
}

var _ kernels.Backend = (*Backend)(nil)

// New returns a CPU backend running on threads threads (all CPUs when
// threads ≤ 0), with the best kernel variant this CPU has (see Variants).
func New(threads int) *Backend {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	b := &Backend{pool: NewPool(threads)}
	b.scratch.Pool = b.pool
	b.attn.threads = make([]attnScratch, threads)
	return b
}

// Close stops the backend's threads.
func (b *Backend) Close() { b.pool.Close() }

// Threads is the number of threads the backend computes on.
func (b *Backend) Threads() int { return b.pool.Threads() }

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
	t := &b.attn
	t.out, t.q, t.kv, t.a = out, q, kv, a
	n := len(q) / (a.Heads * a.HeadDim)
	for i := range t.threads {
		ts := &t.threads[i]
		ts.scores = grow(ts.scores, a.Pos0+n)
		ts.lanes = grow(ts.lanes, 64*a.HeadDim)
		ts.buf = grow(ts.buf, 2*a.HeadDim)
	}
	b.pool.Run(t)
	t.out, t.q, t.kv = nil, nil, nil
}

func (b *Backend) ToHalf(dst []uint16, src []float32) { toHalf(dst, src) }

func (b *Backend) SetBatchInvariant(on bool) {
	b.scratch.Invariant = on
	b.attn.invariant = on
}

// SwiGLU runs each row apart: ggml restarts its 16-value blocks at each
// row, which matters when width is not a multiple of 16.
func (b *Backend) SwiGLU(gate, up []float32, width int) {
	for r := 0; r+width <= len(gate); r += width {
		SwiGLU(gate[r:r+width], up[r:r+width])
	}
}
func (b *Backend) Add(dst, src []float32)    { Add(dst, src) }
func (b *Backend) AddBias(x, bias []float32) { AddBias(x, bias) }

// attnTask splits attention across threads by head, each thread taking
// every query row of its heads: under the causal mask later rows attend to
// more positions, so splitting by row would load the threads unevenly.
type attnTask struct {
	out, q    []float32
	kv        kernels.KV
	a         kernels.Attn
	threads   []attnScratch
	invariant bool // one query row sums as several do (see attendHead)
}

type attnScratch struct {
	scores, lanes []float32
	buf           []float32 // a key and a value of one head, converted from fp16
	tiles         attnTiles
}

func (t *attnTask) Run(thread, threads int) {
	heads := t.a.Heads
	n := len(t.q) / (heads * t.a.HeadDim)
	lo, hi := split(n*heads, thread, threads, 1)
	ts := &t.threads[thread]
	if k, ok := attnTileKernels[t.a.HeadDim]; ok && n >= attnTileMinRows {
		t.attendTiled(ts, lo, hi, k)
		return
	}
	for k := lo; k < hi; k++ { // k runs head-major: head k/n, row k%n
		attendHead(t.out, t.q, t.kv, t.a, k%n*heads+k/n, ts.scores, ts.lanes, ts.buf, t.invariant)
	}
}
