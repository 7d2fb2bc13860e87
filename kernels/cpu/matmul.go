package cpu

import (
	"fmt"
	"sync/atomic"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// Scratch holds reusable buffers for the activations converted to a weight
// type's companion format, so that MatMul allocates nothing once warmed up.
// Its zero value is ready to use, with the plain Go kernels; it is not safe
// for concurrent use.
type Scratch struct {
	f     []float32 // activations rounded to fp16 or bf16
	q     []int8    // quantized activation levels
	d     []float32 // per-block activation scales
	s     []float32 // Q8_1 block sums
	bsums []int16   // Q8_K sums of 16 levels
	acts  []act     // the activation rows, views into q, d, s and bsums
	tiled []byte    // the activation rows as a quantTiler packs them

	// Pool, when set, splits the weight rows of each product across its
	// threads; nil runs on the calling goroutine alone.
	Pool *Pool

	// k holds the kernels the products run (nil: the plain Go ones).
	k *kernelSet

	task    matMulTask
	one     [1]packedProduct // MatMulPacked's product
	prods   []packedProduct  // MatMulsPacked's products
	threads []threadScratch
	claimed atomic.Int64 // row chunks of a decode product taken so far
}

// grow returns buf resized to n, reusing its storage when it is big enough,
// else at least doubling it, so that buffers that follow a growing context
// reallocate rarely.
func grow[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n, max(n, 2*cap(buf)))
	}
	return buf[:n]
}

// MatMul computes out[i*rows+r] = Σ_c W[r][c]·x[i*cols+c] for i in [0, n) and
// r in [0, rows), where W is rows×cols stored row-major in type t, each row
// t.RowSize(cols) bytes. As in llama.cpp's CPU backend, each activation row is
// first converted to t's companion format: F32 weights take x as is, F16 and
// BF16 weights take x rounded to fp16 or bf16, Q8_0/Q4_0/Q5_0 take Q8_0
// blocks, Q4_1/Q5_1 take Q8_1 blocks and the K-quants take Q8_K blocks. The
// products are then summed per block in integers and scaled per block, and
// the float sums done in the order of the kernel llama.cpp's x86 build picks
// for t, the shape and n (see matMulFloat and path), so the result rounds
// exactly like llama.cpp's rather than like an exact product.
//
// With o kernels.OrderBatchInvariant, every activation row takes the order
// llama.cpp takes for a batch (pathGemm for repacked weights, tinyBLAS's for
// float weights), whatever n is, so that a row's result does not depend on
// the other rows of the product. Q8_0 takes pathGemm's order too, though
// llama.cpp does not repack it: its own batch order costs three vector
// instructions per four levels of a row, which made a batch of 16
// compute-bound at a fraction of the speed.
//
// It panics when t is not Supported, cols is not a multiple of t's block size,
// or the lengths of w, x and out are not exactly rows·t.RowSize(cols), n·cols
// and n·rows: these are programming errors in the caller, not data errors.
func (s *Scratch) MatMul(out []float32, t gguf.Type, w []byte, rows, cols int, x []float32, n int, o kernels.Order) {
	if !Supported(t) {
		panic(fmt.Sprintf("cpu: MatMul: tensor type %v is not supported", t))
	}
	if rows < 0 || cols < 0 || n < 0 || cols%t.BlockSize() != 0 {
		panic(fmt.Sprintf("cpu: MatMul: bad shape %d×%d (%v) times %d rows", rows, cols, t, n))
	}
	rowBytes := t.RowSize(cols)
	if len(w) != rows*rowBytes || len(x) != n*cols || len(out) != n*rows {
		panic(fmt.Sprintf("cpu: MatMul: %d×%d %v weights, %d activation rows: want len(w)=%d len(x)=%d len(out)=%d, got %d %d %d",
			rows, cols, t, n, rows*rowBytes, n*cols, n*rows, len(w), len(x), len(out)))
	}
	k := s.kernels()
	invariant := o == kernels.OrderBatchInvariant
	task := &s.task
	*task = matMulTask{k: k, out: out, t: t, w: w, rowBytes: rowBytes, rows: rows, cols: cols, n: n, x: x, invariant: invariant}
	switch t {
	case gguf.F32:
	case gguf.F16:
		s.f = grow(s.f, n*cols)
		k.roundFP16(s.f, x)
		task.x = s.f
	case gguf.BF16:
		s.f = grow(s.f, n*cols)
		k.roundBF16(s.f, x)
		task.x = s.f
	default:
		task.acts = s.quantizeActs(t, x, cols, n)
		// Q8_0 takes the repacked order in batch-invariant products: one
		// FMA per block rather than eight, for the many rows of a batch.
		task.rep = repacked(t, rows) || invariant && t == gguf.Q8_0
		if tl := k.quantTile[t][b2i(task.rep)]; tl != nil && n >= tileMinRows {
			task.tiler = tl
			task.nTiled = n &^ 3
			s.tiled = tl.packActs(s.tiled, task.acts[:task.nTiled])
			task.tiled = s.tiled
		}
	}
	s.run()
}

// kernels is the set s computes with.
func (s *Scratch) kernels() *kernelSet {
	if s.k == nil {
		return kernelsFor(VariantGo, false)
	}
	return s.k
}

// run runs s.task on the pool, if any, with s's thread scratch.
func (s *Scratch) run() {
	task := &s.task
	threads := 1
	if s.Pool != nil {
		threads = s.Pool.Threads()
	}
	for len(s.threads) < threads {
		s.threads = append(s.threads, threadScratch{})
	}
	task.threads = s.threads
	s.claimed.Store(0)
	task.claimed = &s.claimed
	if threads == 1 {
		task.Run(0, 1)
	} else {
		s.Pool.Run(task)
	}
	*task = matMulTask{}
}

func roundFP16Go(dst, src []float32) {
	for i, v := range src {
		dst[i] = FP16ToFP32(FP32ToFP16(v))
	}
}

func roundBF16Go(dst, src []float32) {
	for i, v := range src {
		dst[i] = BF16ToFP32(FP32ToBF16(v))
	}
}

// floatTile is a family of register-tiled kernels: k[n-1](out, ldo, w, ldw,
// x, cols) sets out[j·ldo+i] to dotLanes16 of the weight row w[i·ldw:] and
// the activation row x[j·cols:], for i < rows and j < n; cols is a positive
// multiple of 16 and ldw at least a row's bytes.
type floatTile struct {
	rows int
	k    []func(out []float32, ldo int, w []byte, ldw int, x []float32, cols int)
}

// floatChunkBytes is how many bytes of float activations a product takes at a
// time: about half an L2 cache, so they stay near the core across weight
// rows, while big weights are still read few times.
const floatChunkBytes = 1 << 20

// threadScratch is what one thread of a product decodes weight rows into on
// the plain Go path, or the SIMD kernels write to.
type threadScratch struct {
	row  []float32  // an F32/F16/BF16 weight row
	w    wrow       // a quantized weight row
	four [4]float32 // the results of kernelSet.float4, which would escape from the stack
	tile []byte     // a tile of weight rows as a quantTiler packs them
	// tileOut receives a tile kernel's results for four activation rows;
	// tilePF is the cursor of its prefetches (see tile32.mul).
	tileOut [4 * tileRows]float32
	tilePF  [5]uintptr
}

// b2i is 1 for true and 0 for false.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tileRows is how many weight rows a quantTiler multiplies at once: one
// per lane of a 512-bit register.
const tileRows = 16

// tileMinRows is the fewest activation rows a product takes through a
// quantTiler: packing a tile of weights pays off only over many rows.
const tileMinRows = 16

// quantTiler multiplies a quantized weight type in tiles: up to tileRows
// weight rows, packed so that each sits in its own lane, times activation
// rows in groups of four, so that the kernel's sums land in lanes with no
// horizontal reductions. Each output keeps the float order of the path
// llama.cpp takes for it (pathGemm for repacked weights, else pathVecDot);
// the tiles take the first n &^ 3 activation rows, the other kernels the
// rest.
type quantTiler struct {
	// packActs packs the activation rows acts (a multiple of four) into
	// buf, reused when big enough, once per product.
	packActs func(buf []byte, acts []act) []byte
	// mul sets out[i*ldo+r] for r < rows (at most tileRows) and i < n (a
	// multiple of four): weight row r, at w[r*rowBytes:], times activation
	// row i of tiled, as packActs packed them. It packs the weights in
	// ts.tile, and may use ts's other tile buffers.
	mul func(ts *threadScratch, w []byte, rowBytes, rows int, tiled []byte, n int, out []float32, ldo int)
}

// matMulTask is one product, split across threads by weight rows.
type matMulTask struct {
	k             *kernelSet
	out           []float32
	t             gguf.Type
	w             []byte
	rowBytes      int
	rows, cols, n int
	x             []float32 // float activations, rounded to the weight's precision
	acts          []act     // quantized activations
	rep           bool      // llama.cpp repacks this weight
	invariant     bool      // every row takes the batch order (kernels.OrderBatchInvariant)
	threads       []threadScratch
	tiler         *quantTiler // set when the first nTiled activation rows go through tiles
	nTiled        int
	tiled         []byte          // those rows as tiler packs them, or as packed.k does
	claimed       *atomic.Int64   // decodeChunk rows at a time, see Run
	packed        []packedProduct // set instead of w for packed weights
	nTiles        int             // the tiles of packed
	order         *packedOrder    // the kernels for packed
	// A block count, and the bytes of a packed tile and of a packed group
	// of activation rows.
	nb, tileBytes, groupBytes int
	// The threads first quantize and pack x's rows into acts and tiled,
	// a group of four at a time, then meet before the tiles.
	groups, met atomic.Int32
}

// decodeChunk is how many weight rows a thread takes at a time in a product
// with F32, F16 or BF16 weights and one activation row, a multiple of 8.
// Such a product only streams its weights from memory; the threads' shares
// of the bandwidth are uneven, and more so when the cores are shared with
// other work, so a fixed split left one thread waiting on the other.
const decodeChunk = 64

// Run computes the output columns of weight rows [lo, hi) for thread; the
// ranges are multiples of 8 rows, as llama.cpp's repacked kernels take them.
// Float products of one activation row instead hand out chunks of
// decodeChunk rows to whichever thread asks next, and packed weights chunks
// of tiles (see packedTiles).
func (m *matMulTask) Run(thread, threads int) {
	if m.packed != nil {
		m.packedTiles(thread, threads)
		return
	}
	if m.acts == nil && m.n == 1 && threads > 1 {
		for {
			lo := int(m.claimed.Add(1)-1) * decodeChunk
			if lo >= m.rows {
				return
			}
			m.float(lo, min(lo+decodeChunk, m.rows), &m.threads[thread])
		}
	}
	lo, hi := split(m.rows, thread, threads, 8)
	if lo == hi {
		return
	}
	if m.acts == nil {
		m.float(lo, hi, &m.threads[thread])
	} else {
		m.quant(lo, hi, &m.threads[thread])
	}
}

// float multiplies F32, F16 or BF16 weights. Batches of two or more rows go
// through llamafile's tinyBLAS in llama.cpp when cols is a multiple of 16 and
// rows of 4; anything else takes ggml_vec_dot_* one row at a time, which adds
// in another order.
func (m *matMulTask) float(lo, hi int, ts *threadScratch) {
	cols, n := m.cols, m.n
	lanes16 := (n >= 2 || m.invariant) && cols%16 == 0 && m.rows%4 == 0
	if tile := m.k.floatTile[m.t]; lanes16 && tile.k != nil && cols > 0 {
		m.floatTiles(lo, hi, tile)
		return
	}
	if kr := m.k.floatRows[m.t]; kr != nil && n == 1 && !lanes16 && cols%64 == 0 && cols > 0 {
		kr(m.w[lo*m.rowBytes:hi*m.rowBytes], m.rowBytes, m.x, m.out[lo:hi])
		return
	}
	if k := m.k.float[m.t]; k != nil {
		k4 := m.k.float4[m.t]
		// Activation rows in chunks that stay in cache while the thread's
		// weight rows stream past them.
		chunk := max(4, floatChunkBytes/(4*cols)&^3)
		for c0 := 0; c0 < n; c0 += chunk {
			c1 := min(n, c0+chunk)
			for r := lo; r < hi; r++ {
				wr := m.w[r*m.rowBytes : (r+1)*m.rowBytes]
				i := c0
				for ; lanes16 && k4 != nil && i+4 <= c1; i += 4 {
					k4(&ts.four, wr, m.x[i*cols:(i+4)*cols])
					for j, v := range ts.four {
						m.out[(i+j)*m.rows+r] = v
					}
				}
				for ; i < c1; i++ {
					m.out[i*m.rows+r] = k(wr, m.x[i*cols:(i+1)*cols], lanes16)
				}
			}
		}
		return
	}
	ts.row = grow(ts.row, cols)
	for r := lo; r < hi; r++ {
		decodeFloatRow(m.t, m.w[r*m.rowBytes:(r+1)*m.rowBytes], ts.row)
		for i := range n {
			xi := m.x[i*cols : (i+1)*cols]
			var v float32
			switch {
			case lanes16:
				v = dotLanes16(ts.row, xi)
			case m.t == gguf.F32:
				v = vecDotF32(ts.row, xi)
			case m.t == gguf.F16:
				v = vecDotF16(ts.row, xi)
			default:
				v = vecDotBF16(ts.row, xi)
			}
			m.out[i*m.rows+r] = v
		}
	}
}

// floatTiles is float in tinyBLAS's order with the tiled kernels: weight rows
// tile.rows at a time (the last few, if any, one by one) against activation
// rows len(tile.k) at a time, each chunk of activation rows staying in cache
// while the weight rows go past.
func (m *matMulTask) floatTiles(lo, hi int, tile floatTile) {
	cols, rows, rb := m.cols, m.rows, m.rowBytes
	rm, rn := tile.rows, len(tile.k)
	one := m.k.float[m.t]
	chunk := max(rn, floatChunkBytes/(4*cols)/rn*rn)
	for c0 := 0; c0 < m.n; c0 += chunk {
		c1 := min(m.n, c0+chunk)
		r := lo
		for ; r+rm <= hi; r += rm {
			wr := m.w[r*rb : (r+rm)*rb]
			for i := c0; i < c1; i += rn {
				n := min(rn, c1-i)
				tile.k[n-1](m.out[i*rows+r:], rows, wr, rb, m.x[i*cols:(i+n)*cols], cols)
			}
		}
		// A range that is not a multiple of rm: the last rows one at a time.
		for ; r < hi; r++ {
			wr := m.w[r*rb : (r+1)*rb]
			for i := c0; i < c1; i++ {
				m.out[i*rows+r] = one(wr, m.x[i*cols:(i+1)*cols], true)
			}
		}
	}
}

// pathOf is the kernel llama.cpp uses for activation row i of n: for repacked
// weights the rows before the last n mod 4 go through gemm, the rest through
// gemv.
func (m *matMulTask) pathOf(i int) path {
	switch {
	case m.rep && (i < m.n-m.n%4 || m.invariant):
		return pathGemm
	case m.rep:
		return pathGemv
	}
	return pathVecDot
}

// quant multiplies quantized weights with the prepared activation rows.
func (m *matMulTask) quant(lo, hi int, ts *threadScratch) {
	if k := m.k.quant[m.t]; k != nil {
		m.quantSIMD(lo, hi, k, ts)
		return
	}
	var dot func(*wrow, act, path) float32
	switch m.t {
	case gguf.Q8_0, gguf.Q4_0, gguf.Q5_0, gguf.Q4_1, gguf.Q5_1:
		// Only repacked Q4_0 takes another order than the eight lanes.
		dot = dotBlocks32Path
	case gguf.Q4_K:
		dot = dotQ4_K
	case gguf.Q5_K:
		dot = dotQ5_K
	case gguf.Q6_K:
		dot = dotQ6_K
	}
	for r := lo; r < hi; r++ {
		ts.w.decode(m.t, m.w[r*m.rowBytes:(r+1)*m.rowBytes], m.cols)
		for i, a := range m.acts {
			m.out[i*m.rows+r] = dot(&ts.w, a, m.pathOf(i))
		}
	}
}

// rowChunk is how many weight rows quantSIMD runs through all activation
// rows at a time: few enough to stay in the cache from the first activation
// row to the last, and a multiple of 8, so that a chunk of a thread's range
// (which starts at a multiple of 8) keeps the groups of the eight-row
// kernels whole.
const rowChunk = 16

// quantSIMD is quant with the SIMD kernels: activation rows in groups of
// four through quant4, the rest through quantRows, or quant where a table
// has no entry.
func (m *matMulTask) quantSIMD(lo, hi int, k func([]byte, act, path) float32, ts *threadScratch) {
	k4, kr := m.k.quant4[m.t], m.k.quantRows[m.t]
	// Groups of four start at row 0, so a group never straddles the gemm
	// rows and the gemv rest: its rows share one path.
	n4 := 0
	if m.tiler != nil {
		m.quantTiles(lo, hi, ts)
		n4, k4 = m.nTiled, nil
	} else if k4 != nil {
		n4 = m.n &^ 3
	}
	chunk := rowChunk
	if m.n == 1 {
		chunk = hi - lo // each weight row is read once anyway
	}
	rb := m.rowBytes
	for r0 := lo; r0 < hi; r0 += chunk {
		r1 := min(r0+chunk, hi)
		for r := r0; r < r1; r++ {
			wr := m.w[r*rb : (r+1)*rb]
			for i := 0; k4 != nil && i < n4; i += 4 {
				o := k4(wr, (*[4]act)(m.acts[i:i+4]), m.pathOf(i))
				for j, v := range o {
					m.out[(i+j)*m.rows+r] = v
				}
			}
			for i := n4; kr == nil && i < m.n; i++ {
				m.out[i*m.rows+r] = k(wr, m.acts[i], m.pathOf(i))
			}
		}
		for i := n4; kr != nil && i < m.n; i++ {
			kr(m.w[r0*rb:r1*rb], rb, m.acts[i], m.pathOf(i), m.out[i*m.rows+r0:i*m.rows+r1])
		}
	}
}

// quantTiles runs the first nTiled activation rows through the tiler, a
// tile of weight rows at a time.
func (m *matMulTask) quantTiles(lo, hi int, ts *threadScratch) {
	for r0 := lo; r0 < hi; r0 += tileRows {
		rows := min(tileRows, hi-r0)
		m.tiler.mul(ts, m.w[r0*m.rowBytes:], m.rowBytes, rows, m.tiled, m.nTiled, m.out[r0:], m.rows)
	}
}

// dotBlocks32Path is dotBlocks32 along a path: the repacked kernels add in
// one lane, everything else in eight.
func dotBlocks32Path(w *wrow, a act, p path) float32 { return dotBlocks32(w, a, p != pathVecDot) }

// path names the kernel that llama.cpp's x86 build (AVX2/AVX512, llamafile
// and the CPU repack buffer enabled, as by default) runs for one product of a
// quantized weight row and an activation row; it fixes the float order.
type path uint8

const (
	// pathVecDot is ggml_vec_dot_*_q8_*, and for Q8_0, Q4_0 and Q5_0 batches
	// llamafile's tinyBLAS_Q0_AVX, which adds in the same order.
	pathVecDot path = iota
	// pathGemv is a repacked weight (repack.cpp) times one activation row.
	pathGemv
	// pathGemm is a repacked weight times activation rows in groups of four.
	pathGemm
)

// repacked reports whether llama.cpp repacks a weight of type t with rows
// rows into its CPU_REPACK buffer on an AVX2 machine (q4_0 and q4_K 8×8,
// which need rows a multiple of 8). That holds for every multiplied weight:
// token embeddings are looked up from a plain copy, and an output tied to them
// is loaded a second time as an output tensor, which is repacked.
func repacked(t gguf.Type, rows int) bool {
	return (t == gguf.Q4_0 || t == gguf.Q4_K) && rows%8 == 0
}

// quantizeActs converts the n activation rows of x to the companion format of
// weight type t, once for all weight rows.
func (s *Scratch) quantizeActs(t gguf.Type, x []float32, cols, n int) []act {
	acts, k := s.actRows(t, cols, n), s.kernels()
	for i := range acts {
		k.quantizeAct(t, x[i*cols:(i+1)*cols], &acts[i])
	}
	return acts
}

// quantizeAct converts one activation row to a, which actRows laid out.
func (k *kernelSet) quantizeAct(t gguf.Type, x []float32, a *act) {
	switch {
	case t.BlockSize() == qkK:
		k.actQ8_K(x, a.q, a.d, a.bsums)
	case t == gguf.Q4_1 || t == gguf.Q5_1:
		k.actQ8_1(x, a.q, a.d, a.s)
	default:
		k.actQ8_0(x, a.q, a.d)
	}
}

// actRows lays out n activation rows of cols values in t's companion
// format over s's buffers, to be filled by quantizeAct.
func (s *Scratch) actRows(t gguf.Type, cols, n int) []act {
	kquant := t.BlockSize() == qkK
	q81 := t == gguf.Q4_1 || t == gguf.Q5_1
	nb := cols / qk
	if kquant {
		nb = cols / qkK
	}
	s.q = grow(s.q, n*cols)
	s.d = grow(s.d, n*nb)
	switch {
	case kquant:
		s.bsums = grow(s.bsums, n*nb*16)
	case q81:
		s.s = grow(s.s, n*nb)
	}
	s.acts = grow(s.acts, n)
	for i := range n {
		a := act{q: s.q[i*cols : (i+1)*cols], d: s.d[i*nb : (i+1)*nb]}
		switch {
		case kquant:
			a.bsums = s.bsums[i*nb*16 : (i+1)*nb*16]
		case q81:
			a.s = s.s[i*nb : (i+1)*nb]
		}
		s.acts[i] = a
	}
	return s.acts
}
