package cpu

import (
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
)

// Backend is the CPU implementation of kernels.Backend. Matrix products and
// attention run on a pool of threads; the cheap elementwise operations run on
// the caller's. Not safe for concurrent use (it reuses scratch buffers).
type Backend struct {
	k       *kernelSet
	pool    *Pool
	scratch Scratch
	attn    attnTask
	one     [1]kernels.AttnSeq // Attention's one sequence
	rows    rowsTask
	packed  map[*models.Weight]*Packed // weights Prepare packed
	ps      []*Packed                  // MatMuls' packed weights
	rope    ropeTable                  // RoPE's rotations of the positions seen
}

var _ kernels.Backend = (*Backend)(nil)

// New returns a CPU backend running on threads threads (all CPUs when
// threads ≤ 0), with the best kernel variant this CPU has (see Variants).
func New(threads int) *Backend {
	return newBackend(kernelsFor(Variants()[0], cpuDot), threads)
}

// NewVariant is New with the kernels of variant v, which must be one of
// Variants.
func NewVariant(v Variant, threads int) (*Backend, error) {
	k, err := kernelsOf(v)
	if err != nil {
		return nil, err
	}
	return newBackend(k, threads), nil
}

// newBackend returns a backend computing with the kernel set k.
func newBackend(k *kernelSet, threads int) *Backend {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	b := &Backend{k: k, pool: NewPool(threads)}
	b.scratch.Pool, b.scratch.k = b.pool, k
	b.attn.k = k
	b.attn.threads = make([]attnScratch, threads)
	return b
}

// Variant is the kernel variant the backend computes with.
func (b *Backend) Variant() Variant { return b.k.variant }

// Close stops the backend's threads.
func (b *Backend) Close() { b.pool.Close() }

// Threads is the number of threads the backend computes on.
func (b *Backend) Threads() int { return b.pool.Threads() }

func (b *Backend) Name() string { return "cpu" }

func (b *Backend) Supports(t gguf.Type) bool { return Supported(t) }

// Prepare packs w when the backend's kernels have tiles for its type (see
// kernelSet.pack).
func (b *Backend) Prepare(w *models.Weight) int {
	if _, ok := b.packed[w]; ok {
		return 0
	}
	p := b.k.pack(w.Type, w.Data, w.Rows, w.Cols)
	if p == nil {
		return 0
	}
	if b.packed == nil {
		b.packed = map[*models.Weight]*Packed{}
	}
	b.packed[w] = p
	return p.Bytes()
}

func (b *Backend) MatMul(out []float32, w *models.Weight, x []float32, n int, o kernels.Order) {
	if p := b.packed[w]; p != nil {
		b.scratch.MatMulPacked(out, p, x, n, o)
		return
	}
	b.scratch.MatMul(out, w.Type, w.Data, w.Rows, w.Cols, x, n, o)
}

// MatMuls runs weights packed alike as one product (see MatMulsPacked),
// anything else one by one.
func (b *Backend) MatMuls(outs [][]float32, ws []*models.Weight, x []float32, n int, o kernels.Order) {
	b.ps = b.ps[:0]
	for _, w := range ws {
		p := b.packed[w]
		if p == nil || w.Type != ws[0].Type || w.Cols != ws[0].Cols {
			break
		}
		b.ps = append(b.ps, p)
	}
	if len(b.ps) == len(ws) {
		b.scratch.MatMulsPacked(outs, b.ps, x, n, o)
	} else {
		for i, w := range ws {
			b.MatMul(outs[i], w, x, n, o)
		}
	}
	clear(b.ps)
}

func (b *Backend) GetRows(out []float32, w *models.Weight, ids []int32) {
	size := w.Type.RowSize(w.Cols)
	for i, id := range ids {
		row := w.Data[int(id)*size : (int(id)+1)*size]
		if err := Dequantize(w.Type, row, out[i*w.Cols:(i+1)*w.Cols]); err != nil {
			panic(fmt.Sprintf("get rows of %q: %v", w.Name, err))
		}
	}
}

// RMSNorm, RoPE and SwiGLU work row by row; a batch's rows are split
// across the threads, which would otherwise wait on one another for them.
func (b *Backend) RMSNorm(out, x, weight []float32, dim int, eps float32) {
	b.rows = rowsTask{k: b.k, op: opNorm, out: out, x: x, w: weight, width: dim, eps: eps}
	b.runRows(len(x) / dim)
}

func (b *Backend) RoPE(x []float32, pos []int32, heads, headDim int, r *models.Rope) {
	last := int32(-1)
	for _, p := range pos {
		last = max(last, p)
	}
	b.rope.cover(r, int(last)+1)
	b.rows = rowsTask{k: b.k, op: opRoPE, x: x, pos: pos, heads: heads, width: heads * headDim, table: &b.rope}
	b.runRows(len(pos))
}

// rowsTask is one row-wise op over rows.
type rowsTask struct {
	k            *kernelSet
	op           int
	rows         int
	out, x, w    []float32
	pos          []int32
	heads, width int
	eps          float32
	table        *ropeTable
}

const (
	opNorm = iota
	opRoPE
	opSwiGLU
)

func (t *rowsTask) Run(thread, threads int) {
	lo, hi := split(t.rows, thread, threads, 1)
	if lo >= hi {
		return
	}
	w := t.width
	switch t.op {
	case opNorm:
		t.k.rmsNorm(t.out[lo*w:hi*w], t.x[lo*w:hi*w], t.w, w, t.eps)
	case opRoPE:
		for r := lo; r < hi; r++ {
			t.table.rotate(t.k, t.x[r*w:(r+1)*w], int(t.pos[r]), t.heads, w/t.heads)
		}
	case opSwiGLU:
		for r := lo; r < hi; r++ {
			t.k.swiGLU(t.x[r*w:(r+1)*w], t.w[r*w:(r+1)*w])
		}
	}
}

// runRows runs b.rows over rows rows: on the pool for a batch, inline for
// one row.
func (b *Backend) runRows(rows int) {
	b.rows.rows = rows
	if rows < 2 {
		b.rows.Run(0, 1)
	} else {
		b.pool.Run(&b.rows)
	}
	b.rows = rowsTask{}
}

func (b *Backend) Attention(out, q []float32, kv kernels.KV, a kernels.Attn) {
	b.one[0] = kernels.AttnSeq{KV: kv, Pos0: a.Pos0, Rows: len(q) / (a.Heads * a.HeadDim)}
	b.AttentionBatch(out, q, b.one[:], a)
	b.one[0] = kernels.AttnSeq{}
}

// AttentionBatch runs all the sequences' heads as one task: the threads
// take (sequence, KV head) units, or whole sequences when there are many
// (attnSeqUnits), from a shared counter, which keeps them evenly loaded
// however the sequences' lengths differ, and costs one hand-off per call
// instead of one per sequence.
func (b *Backend) AttentionBatch(out, q []float32, seqs []kernels.AttnSeq, a kernels.Attn) {
	t := &b.attn
	t.out, t.q, t.seqs, t.a = out, q, seqs, a
	t.first = t.first[:0]
	longest, row := 0, 0
	for _, s := range seqs {
		t.first = append(t.first, row)
		row += s.Rows
		longest = max(longest, s.Pos0+s.Rows)
	}
	if row*a.Heads*a.HeadDim != len(q) || len(out) != len(q) {
		panic(fmt.Sprintf("cpu: AttentionBatch: %d rows in the sequences, %d values of q, %d of out", row, len(q), len(out)))
	}
	group := a.Heads / a.KVHeads
	for i := range t.threads {
		ts := &t.threads[i]
		ts.scores = grow(ts.scores, group*((longest+15)&^15))
		ts.lanes = grow(ts.lanes, group*64*a.HeadDim)
		ts.buf = grow(ts.buf, 2*a.HeadDim)
		ts.kb = grow(ts.kb, 16*a.HeadDim)
	}
	t.next.Store(0)
	b.pool.Run(t)
	t.out, t.q, t.seqs = nil, nil, nil
}

func (b *Backend) ToHalf(dst []uint16, src []float32) { b.k.toHalf(dst, src) }

// SwiGLU runs each row apart: ggml restarts its 16-value blocks at each
// row, which matters when width is not a multiple of 16.
func (b *Backend) SwiGLU(gate, up []float32, width int) {
	b.rows = rowsTask{k: b.k, op: opSwiGLU, x: gate, w: up, width: width}
	b.runRows(len(gate) / width)
}
func (b *Backend) Add(dst, src []float32)    { b.k.add(dst, src) }
func (b *Backend) AddBias(x, bias []float32) { b.k.addBias(x, bias) }

// attnTask is attention over a batch of sequences, split into units of one
// KV head of one sequence with all its query rows (under the causal mask
// later rows attend to more positions, so splitting by rows would load the
// threads unevenly), which threads claim in turn.
type attnTask struct {
	k       *kernelSet
	out, q  []float32
	seqs    []kernels.AttnSeq
	first   []int // each sequence's first row
	a       kernels.Attn
	next    atomic.Int64 // the next unit to claim
	threads []attnScratch
}

type attnScratch struct {
	scores, lanes []float32
	buf           []float32 // a key and a value of one head, converted from fp16
	tiles         attnTiles
	head          headKV
	runs          []halfRun // an fp16 cache's runs of the unit's KV head
	kb            []float32 // 16 key rows converted to f32 (attendGroupHalf)
}

// headKV holds one KV head's keys and values of positions [0, n) as f32
// rows of HeadDim: an fp16 cache converted once for all the query heads
// that share the KV head, where converting per query head and position
// would repeat the work for each of them.
type headKV struct {
	k, v     []float32
	hd, base int // HeadDim, and the offset of the KV head in a cache row
}

// view returns kv itself where it stores f32, else h loaded.
func (h *headKV) view(ks *kernelSet, kv kernels.KV, a kernels.Attn, kvh, n int) kernels.KV {
	if f, _ := kv.Key(a.Layer, 0, kvh*a.HeadDim, a.HeadDim); f != nil {
		return kv
	}
	h.load(ks, kv, a, kvh, n)
	return h
}

// load fills h with KV head kvh of positions [0, n) as f32 rows, a run of
// the cache's rows (see kernels.KV) at a time, converting fp16 with ks.
func (h *headKV) load(ks *kernelSet, kv kernels.KV, a kernels.Attn, kvh, n int) {
	hd, width := a.HeadDim, a.KVHeads*a.HeadDim
	h.k, h.v = grow(h.k, n*hd), grow(h.v, n*hd)
	h.hd, h.base = hd, kvh*hd
	for p := 0; p < n; {
		m := min(kv.Run(p), n-p)
		span := (m-1)*width + hd
		kf, kh := kv.Key(a.Layer, p, h.base, span)
		vf, vh := kv.Value(a.Layer, p, h.base, span)
		dk, dv := h.k[p*hd:(p+m)*hd], h.v[p*hd:(p+m)*hd]
		if kf != nil {
			for r := range m {
				copy(dk[r*hd:(r+1)*hd], kf[r*width:])
				copy(dv[r*hd:(r+1)*hd], vf[r*width:])
			}
		} else {
			ks.fromHalfRows(dk, kh, hd, width)
			ks.fromHalfRows(dv, vh, hd, width)
		}
		p += m
	}
}

func (h *headKV) Run(pos int) int { return len(h.k)/h.hd - pos }

func (h *headKV) Key(_, pos, off, n int) ([]float32, []uint16) {
	o := pos*h.hd + off - h.base
	return h.k[o : o+n], nil
}

func (h *headKV) Value(_, pos, off, n int) ([]float32, []uint16) {
	o := pos*h.hd + off - h.base
	return h.v[o : o+n], nil
}

// attnSeqUnits is how many sequences per thread a batch needs for attention
// to split it by sequence rather than by KV head.
const attnSeqUnits = 4

func (t *attnTask) Run(thread, threads int) {
	ts := &t.threads[thread]
	units := len(t.seqs) * t.a.KVHeads
	// With sequences enough to keep every thread busy, a thread takes all
	// of a sequence's KV heads at once: it then reads the cache's rows
	// (every KV head side by side) from end to end, which the hardware
	// prefetches better than a quarter of each.
	per := 1
	if len(t.seqs) >= attnSeqUnits*threads {
		per = t.a.KVHeads
	}
	for {
		u := int(t.next.Add(1)-1) * per
		if u >= units {
			return
		}
		for end := u + per; u < end; u++ {
			t.unit(ts, u)
		}
	}
}

// unit computes unit u: one KV head of one sequence, the query heads that
// share it using one copy of its keys and values.
func (t *attnTask) unit(ts *attnScratch, u int) {
	heads, kvHeads, width := t.a.Heads, t.a.KVHeads, t.a.Heads*t.a.HeadDim
	group := heads / kvHeads
	tiles, tiled := t.k.attnTile[t.a.HeadDim]
	s, kvh := t.seqs[u/kvHeads], u%kvHeads
	r0 := t.first[u/kvHeads]
	out, q := t.out[r0*width:(r0+s.Rows)*width], t.q[r0*width:(r0+s.Rows)*width]
	a := t.a
	a.Pos0 = s.Pos0
	if tiled && s.Rows >= attnTileMinRows {
		t.k.attendTiled(out, q, s.KV, a, ts, kvh, tiles)
		return
	}
	if t.k.attnRows != nil && a.HeadDim%64 == 0 {
		// An fp16 cache is read where it lies when there are decode
		// kernels for the HeadDim, else from an f32 copy of the KV head.
		if dk, ok := t.k.attnDecode[a.HeadDim]; ok {
			if _, half := s.KV.Key(a.Layer, 0, 0, 1); half != nil {
				ts.runs = halfRuns(ts.runs, s.KV, a, kvh, s.Pos0+s.Rows)
				for i := range s.Rows {
					t.k.attendGroupHalf(out, q, ts.runs, a, i, kvh*group, group, len(ts.scores)/group, ts, dk)
				}
				return
			}
		}
		ts.head.load(t.k, s.KV, a, kvh, s.Pos0+s.Rows)
		for h := kvh * group; h < (kvh+1)*group; h++ {
			for i := range s.Rows {
				t.k.attendRows(out, q, &ts.head, a, i*heads+h, ts.scores, ts.lanes)
			}
		}
		return
	}
	kv := ts.head.view(t.k, s.KV, a, kvh, s.Pos0+s.Rows)
	for h := kvh * group; h < (kvh+1)*group; h++ {
		for i := range s.Rows {
			t.k.attendHead(out, q, kv, a, i*heads+h, ts.scores, ts.lanes, ts.buf)
		}
	}
}
