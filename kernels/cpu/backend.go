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
	ropes   []ropeTable                // RoPE's rotations of the positions seen, one table per Rope
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

// Resident is the bytes of w that b's products read: the copy Prepare
// made, else w.Data as stored.
func (b *Backend) Resident(w *models.Weight) []byte {
	if p := b.packed[w]; p != nil {
		return p.tiles
	}
	return w.Data
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
	t := b.ropeTable(r)
	t.cover(r, int(last)+1)
	b.rows = rowsTask{k: b.k, op: opRoPE, x: x, pos: pos, heads: heads, width: heads * headDim, table: t}
	b.runRows(len(pos))
}

// maxRopeTables bounds the tables kept: a model has one Rope, or two where
// its sliding-window layers rotate by another base (Gemma 3).
const maxRopeTables = 4

// ropeTable is the table of r, made empty if there was none; past
// maxRopeTables the first gives way.
func (b *Backend) ropeTable(r *models.Rope) *ropeTable {
	for i := range b.ropes {
		if b.ropes[i].of(r) {
			return &b.ropes[i]
		}
	}
	if len(b.ropes) == maxRopeTables {
		b.ropes = b.ropes[1:]
	}
	b.ropes = append(b.ropes, ropeTable{rope: *r})
	return &b.ropes[len(b.ropes)-1]
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
	opGEGLU
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
	case opGEGLU:
		geGLU(t.x[lo*w:hi*w], t.w[lo*w:hi*w])
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

func (b *Backend) Attention(out, q []float32, kv *kernels.KVCache, blocks []int32, a kernels.Attn) {
	b.one[0] = kernels.AttnSeq{Blocks: blocks, Pos0: a.Pos0, Rows: len(q) / (a.Heads * a.HeadDim)}
	b.AttentionBatch(out, q, kv, b.one[:], a)
	b.one[0] = kernels.AttnSeq{}
}

// AttentionBatch runs all the sequences' heads as one task: the threads
// take (sequence, KV head) units, or whole sequences when there are many
// (attnSeqUnits), from a shared counter, which keeps them evenly loaded
// however the sequences' lengths differ, and costs one hand-off per call
// instead of one per sequence.
func (b *Backend) AttentionBatch(out, q []float32, kv *kernels.KVCache, seqs []kernels.AttnSeq, a kernels.Attn) {
	t := &b.attn
	t.out, t.q, t.kv, t.seqs, t.a = out, q, kv, seqs, a
	t.first = t.first[:0]
	longest, row := 0, 0
	for _, s := range seqs {
		t.first = append(t.first, row)
		row += s.Rows
		longest = max(longest, s.Pos0+s.Rows)
	}
	if row*a.Heads*a.HeadDim != len(q) || len(out) != len(q) || kv.Width != a.KVHeads*a.HeadDim {
		panic(fmt.Sprintf("cpu: AttentionBatch: %d rows in the sequences, %d values of q, %d of out, cache rows of %d", row, len(q), len(out), kv.Width))
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
	t.out, t.q, t.kv, t.seqs = nil, nil, nil, nil
}

func (b *Backend) ToHalf(dst []uint16, src []float32) { b.k.toHalf(dst, src) }

// SwiGLU runs each row apart: ggml restarts its 16-value blocks at each
// row, which matters when width is not a multiple of 16.
func (b *Backend) SwiGLU(gate, up []float32, width int) {
	b.rows = rowsTask{k: b.k, op: opSwiGLU, x: gate, w: up, width: width}
	b.runRows(len(gate) / width)
}

// GEGLU splits its rows across the threads, as SwiGLU does.
func (b *Backend) GEGLU(gate, up []float32, width int) {
	b.rows = rowsTask{k: b.k, op: opGEGLU, x: gate, w: up, width: width}
	b.runRows(len(gate) / width)
}

// Scale and SoftCap are cheap next to the products around them and run on
// the caller's thread.
func (b *Backend) Scale(x []float32, s float32)   { b.k.scaleRow(x, s) }
func (b *Backend) SoftCap(x []float32, c float32) { softCap(x, c) }
func (b *Backend) Add(dst, src []float32)         { b.k.add(dst, src) }
func (b *Backend) AddBias(x, bias []float32)      { b.k.addBias(x, bias) }

// attnTask is attention over a batch of sequences, split into units of one
// KV head of one sequence with all its query rows (under the causal mask
// later rows attend to more positions, so splitting by rows would load the
// threads unevenly), which threads claim in turn.
type attnTask struct {
	k       *kernelSet
	out, q  []float32
	kv      *kernels.KVCache
	seqs    []kernels.AttnSeq
	first   []int // each sequence's first row
	a       kernels.Attn
	next    atomic.Int64 // the next unit to claim
	threads []attnScratch
}

type attnScratch struct {
	scores, lanes []float32
	buf           []float32 // a key and a value of one head, converted from fp16 (attnTiles.load)
	tiles         attnTiles
	head          headKV
	runs          []halfRun // an fp16 cache's runs of the unit's KV head
	kb            []float32 // 16 key rows converted to f32 (attendGroupHalf)
}

// seqKV is one sequence's keys and values in one layer of a cache.
type seqKV struct {
	c      *kernels.KVCache
	layer  int
	blocks []int32
}

// run returns how many of positions [p, n) lie one after another from p
// on (to the end of p's block), and where p's row starts in the layer's
// storage.
func (s seqKV) run(p, n int) (m, at int) {
	bs := s.c.BlockSize
	o := p % bs
	return min(bs-o, n-p), (int(s.blocks[p/bs])*bs + o) * s.c.Width
}

// headKV holds one KV head's keys and values of positions [base, n) as f32
// rows, row p at k[(p−base)·stride:] and v[(p−base)·stride:]: in the cache
// itself where it stores f32 in one block (view), else rows of HeadDim one
// after another in buffers of its own, converted from fp16 once for all the
// query heads that share the KV head, where converting per query head and
// position would repeat the work for each of them. Rows before a sliding
// window's start (lo) are zeros: they are summed with weight 0, and the
// cache may no longer hold them.
type headKV struct {
	k, v       []float32
	stride     int
	base       int
	ownK, ownV []float32 // load's rows
}

// view points h at KV head kvh of s's positions [0, n) where the cache
// holds them as f32 rows in one block, else loads them from lo on.
func (h *headKV) view(ks *kernelSet, s seqKV, a kernels.Attn, kvh, lo, n int) {
	if s.c.Type == kernels.KVF32 && lo == 0 {
		if m, at := s.run(0, n); m == n {
			at += kvh * a.HeadDim
			h.k, h.v, h.stride, h.base = s.c.K32[s.layer][at:], s.c.V32[s.layer][at:], s.c.Width, 0
			return
		}
	}
	h.load(ks, s, a, kvh, lo, n)
}

// load fills h's own rows with KV head kvh of s's positions [lo, n), a
// block's run of rows at a time, converting fp16 with ks, and zeros from
// the multiple of 64 below lo (the base).
func (h *headKV) load(ks *kernelSet, s seqKV, a kernels.Attn, kvh, lo, n int) {
	hd, width := a.HeadDim, s.c.Width
	h.base = lo &^ 63
	h.ownK, h.ownV = grow(h.ownK, (n-h.base)*hd), grow(h.ownV, (n-h.base)*hd)
	h.k, h.v, h.stride = h.ownK, h.ownV, hd
	clear(h.k[:(lo-h.base)*hd])
	clear(h.v[:(lo-h.base)*hd])
	for p := lo; p < n; {
		m, at := s.run(p, n)
		at += kvh * hd
		span := (m-1)*width + hd
		r := p - h.base
		dk, dv := h.k[r*hd:(r+m)*hd], h.v[r*hd:(r+m)*hd]
		if s.c.Type == kernels.KVF32 {
			kf, vf := s.c.K32[s.layer][at:at+span], s.c.V32[s.layer][at:at+span]
			for r := range m {
				copy(dk[r*hd:(r+1)*hd], kf[r*width:])
				copy(dv[r*hd:(r+1)*hd], vf[r*width:])
			}
		} else {
			ks.fromHalfRows(dk, s.c.K16[s.layer][at:at+span], hd, width)
			ks.fromHalfRows(dv, s.c.V16[s.layer][at:at+span], hd, width)
		}
		p += m
	}
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
	kv, n := seqKV{t.kv, a.Layer, s.Blocks}, s.Pos0+s.Rows
	lo := windowStart(s.Pos0, a) // the first row's window: no row reads before it
	if tiled && s.Rows >= attnTileMinRows {
		t.k.attendTiled(out, q, kv, a, ts, kvh, tiles)
		return
	}
	if t.k.attnRows != nil && a.HeadDim%64 == 0 {
		// An fp16 cache is read where it lies when there are decode
		// kernels for the HeadDim, else from an f32 copy of the KV head.
		if dk, ok := t.k.attnDecode[a.HeadDim]; ok && t.kv.Type == kernels.KVF16 {
			ts.runs = halfRuns(ts.runs, kv, a, kvh, lo, n)
			for i := range s.Rows {
				t.k.attendGroupHalf(out, q, ts.runs, lo, a, i, kvh*group, group, len(ts.scores)/group, ts, dk)
			}
			return
		}
		ts.head.load(t.k, kv, a, kvh, lo, n)
		for h := kvh * group; h < (kvh+1)*group; h++ {
			for i := range s.Rows {
				t.k.attendRows(out, q, &ts.head, a, i*heads+h, ts.scores, ts.lanes)
			}
		}
		return
	}
	ts.head.view(t.k, kv, a, kvh, lo, n)
	for h := kvh * group; h < (kvh+1)*group; h++ {
		for i := range s.Rows {
			t.k.attendHead(out, q, &ts.head, a, i*heads+h, ts.scores, ts.lanes)
		}
	}
}
