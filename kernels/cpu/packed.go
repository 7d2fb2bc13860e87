package cpu

import (
	"fmt"
	"unsafe"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// Packed is a weight matrix repacked once, when a model is loaded, into the
// layout of a tile kernel, so that products with it need no packing per call.
// It is what llama.cpp's CPU_REPACK buffer is to ggml: the same bytes in
// another order. Only types whose packed tile is no bigger than their stored
// rows are packed (Q8_0, and Q4_0 with its nibbles kept in their bytes): a
// product of one activation row reads every weight byte once, and must not
// read more than the stored layout. The tiles of a weight follow one
// another, so a thread's share of a decode product is one sequential stream.
type Packed struct {
	t          gguf.Type
	rows, cols int
	w          []byte // the stored layout, for a kernel set without k
	tiles      []byte // ⌈rows/16⌉ tiles of 16 rows, the last padded with zero rows
	k          *packedKernels
}

// packedKernels pack one type and multiply it in two float orders: orders[0]
// is llama.cpp's for a product of that shape (kernels.OrderLlama), orders[1]
// the one of batch-invariant products (kernels.OrderBatchInvariant).
type packedKernels struct {
	tileBytes func(nb int) int // a tile's size
	pack      func(dst, w []byte, rowBytes, rows, nb int)
	// packs, where set, says which row counts are packed (else all).
	packs func(t gguf.Type, rows int) bool
	// unpack, where set, rewrites a tile into the layout the orders' x1,
	// x2, x4 and x4s take, of unpackedBytes; their decode kernels take
	// the tile as packed.
	unpack        func(w *byte, nb int, dst *byte)
	unpackedBytes func(nb int) int
	orders        [2]packedOrder
}

// packedOrder is a set of tile kernels of one float order: each sets
// out[ldo·i+r] to weight row r of a tile times activation row i of a packed
// group of four, for the group's first 1, 2 or 4 activation rows.
type packedOrder struct {
	// packActs packs activation rows in groups of four, the last group
	// padded with zero rows.
	packActs   func(buf []byte, acts []act) []byte
	actBytes   func(nb int) int // a packed group's size
	x1, x2, x4 func(w, a *byte, nb int, out *float32, ldo int, pf *[5]uintptr)
	// decode, set where the kernels' packedKernels unpack, is x1 for a
	// tile as packed: a product of one activation row.
	decode func(w, a *byte, nb int, out *float32, ldo int, pf *[5]uintptr)
	// x4s, where set, is x4 for tiles consecutive whole tiles and groups
	// groups ab bytes apart in one call, the last tile prefetching pf's.
	x4s func(w, a *byte, nb int, out *float32, ldo int, pf *[5]uintptr, groups, ab, tiles int)
}

// pack returns the rows×cols weight w of type t packed for ks's tile
// kernels, or nil when it has none for t (MatMul then takes w as stored).
// w stays referenced, for products under a set without those kernels.
func (ks *kernelSet) pack(t gguf.Type, w []byte, rows, cols int) *Packed {
	k := ks.packed[t]
	if k == nil || rows <= 0 || cols <= 0 || cols%t.BlockSize() != 0 || k.packs != nil && !k.packs(t, rows) {
		return nil
	}
	rowBytes := t.RowSize(cols)
	if len(w) != rows*rowBytes {
		panic(fmt.Sprintf("cpu: pack: %d×%d %v weights need %d bytes, got %d", rows, cols, t, rows*rowBytes, len(w)))
	}
	nb := cols / t.BlockSize()
	tb := k.tileBytes(nb)
	n := (rows + tileRows - 1) / tileRows
	p := &Packed{t: t, rows: rows, cols: cols, w: w, tiles: make([]byte, n*tb), k: k}
	for i := range n {
		r := min(tileRows, rows-i*tileRows)
		k.pack(p.tiles[i*tb:(i+1)*tb], w[i*tileRows*rowBytes:], rowBytes, r, nb)
	}
	return p
}

// Bytes is the memory the packed copy takes.
func (p *Packed) Bytes() int { return len(p.tiles) }

// MatMulPacked is MatMul with a packed weight.
func (s *Scratch) MatMulPacked(out []float32, p *Packed, x []float32, n int, o kernels.Order) {
	s.one = [1]packedProduct{{p: p, out: out}}
	s.matMulsPacked(s.one[:], x, n, o)
	s.one = [1]packedProduct{}
}

// MatMulsPacked sets outs[i] to the product of ps[i] with x, as MatMulPacked
// would, for weights of one type and width: the activations are prepared
// once for all of them, and the threads take the tiles of all of them as
// one product (the query, key and value projections of a layer, or its gate
// and up projections).
func (s *Scratch) MatMulsPacked(outs [][]float32, ps []*Packed, x []float32, n int, o kernels.Order) {
	if len(outs) != len(ps) {
		panic(fmt.Sprintf("cpu: MatMulsPacked: %d outputs for %d weights", len(outs), len(ps)))
	}
	s.prods = s.prods[:0]
	for i, p := range ps {
		if p.t != ps[0].t || p.cols != ps[0].cols {
			panic(fmt.Sprintf("cpu: MatMulsPacked: weights of types %v and %v, widths %d and %d", ps[0].t, p.t, ps[0].cols, p.cols))
		}
		s.prods = append(s.prods, packedProduct{p: p, out: outs[i]})
	}
	s.matMulsPacked(s.prods, x, n, o)
	clear(s.prods)
}

// packedProduct is one weight of a packed product, where its results go,
// and the number of the product's tiles before its own.
type packedProduct struct {
	p     *Packed
	out   []float32
	first int
}

// matMulsPacked runs prods with x as one task, or, for weights packed for
// another kernel set, each product with the stored rows.
func (s *Scratch) matMulsPacked(prods []packedProduct, x []float32, n int, o kernels.Order) {
	p, k := prods[0].p, s.kernels()
	for _, pr := range prods {
		if k.packed[pr.p.t] != pr.p.k {
			// Packed for another set: the stored rows, one by one.
			for _, pr := range prods {
				s.MatMul(pr.out, pr.p.t, pr.p.w, pr.p.rows, pr.p.cols, x, n, o)
			}
			return
		}
		if len(x) != n*pr.p.cols || len(pr.out) != n*pr.p.rows {
			panic(fmt.Sprintf("cpu: MatMulPacked: %d×%d %v weights, %d activation rows: want len(x)=%d len(out)=%d, got %d %d",
				pr.p.rows, pr.p.cols, pr.p.t, n, n*pr.p.cols, n*pr.p.rows, len(x), len(pr.out)))
		}
	}
	if n == 0 {
		return
	}
	tiles := 0
	for i := range prods {
		prods[i].first = tiles
		tiles += (prods[i].p.rows + tileRows - 1) / tileRows
	}
	po := &p.k.orders[b2i(o == kernels.OrderBatchInvariant)]
	nb := p.cols / p.t.BlockSize()
	s.tiled = grow(s.tiled, (n+3)/4*po.actBytes(nb))
	s.task = matMulTask{k: k, t: p.t, cols: p.cols, n: n, x: x, acts: s.actRows(p.t, p.cols, n),
		packed: prods, nTiles: tiles, order: po, tiled: s.tiled,
		nb: nb, tileBytes: p.k.tileBytes(nb), groupBytes: po.actBytes(nb)}
	s.run()
}

// packedClaims is about how many chunks of tiles each thread claims in a
// product with packed weights: threads take chunks as they finish, so that
// a thread slowed by other work on its core leaves its share to the others.
const packedClaims = 8

// packedTiles is Run for packed weights. A thread claims its next chunk
// before it starts on the last tile (or run of tiles) of this one, so that
// it knows which tile to prefetch.
func (m *matMulTask) packedTiles(thread, threads int) {
	m.prepareActs(threads)
	ts, tiles := &m.threads[thread], m.nTiles
	chunk := max(1, tiles/(threads*packedClaims))
	claim := func() int { return int(m.claimed.Add(1)-1) * chunk }
	for c := claim(); c < tiles; {
		end, next := min(c+chunk, tiles), tiles
		for t := c; t < end; {
			// A run of whole tiles of one product goes in one call where
			// the order has a kernel for it and the groups are whole; any
			// other tile alone.
			pr, lt := m.product(t)
			n := 0
			if m.order.x4s != nil && m.n%4 == 0 {
				n = min(end-t, pr.p.rows/tileRows-lt)
			}
			step := max(n, 1)
			if t+step < end {
				next = t + step
			} else {
				next = claim()
			}
			if n > 0 {
				m.packedRun(pr, lt, n, min(next, tiles), ts)
			} else {
				m.packedTile(t, min(next, tiles), ts)
			}
			t += step
		}
		c = next
	}
}

// packedRun multiplies tiles lt..lt+n-1 of pr, all whole, with every
// activation row (whole groups of four) in one call, prefetching tile next
// of the task after them.
func (m *matMulTask) packedRun(pr *packedProduct, lt, n, next int, ts *threadScratch) {
	p, tb := pr.p, m.tileBytes
	m.setPF(next, ts)
	w := p.tiles[lt*tb : (lt+n)*tb]
	m.order.x4s(&w[0], &m.tiled[0], m.nb, &pr.out[lt*tileRows], p.rows, &ts.tilePF, m.n/4, m.groupBytes, n)
}

// setPF points ts's prefetch cursor at tile next of the task (none when it
// is the task's tile count).
func (m *matMulTask) setPF(next int, ts *threadScratch) {
	ts.tilePF = [5]uintptr{}
	if next < m.nTiles {
		tb := m.tileBytes
		np, nt := m.product(next)
		ts.tilePF = [5]uintptr{uintptr(unsafe.Pointer(&np.p.tiles[nt*tb])), 0, uintptr(tb / 64), uintptr(tb), uintptr(tb)}
	}
}

// prepareActs quantizes and packs the activation rows, the threads taking
// groups of four as they come, and returns when all threads are done with
// them.
func (m *matMulTask) prepareActs(threads int) {
	gb := m.groupBytes
	for {
		g := int(m.groups.Add(1) - 1)
		if 4*g >= m.n {
			break
		}
		rows := m.acts[4*g : min(4*g+4, m.n)]
		for i := range rows {
			r := 4*g + i
			m.k.quantizeAct(m.t, m.x[r*m.cols:(r+1)*m.cols], &rows[i])
		}
		m.order.packActs(m.tiled[g*gb:(g+1)*gb], rows)
	}
	m.met.Add(1)
	for m.met.Load() < int32(threads) {
	}
}

// product finds the weight that tile t of the task belongs to, and t's
// number among its tiles.
func (m *matMulTask) product(t int) (*packedProduct, int) {
	i := len(m.packed) - 1
	for m.packed[i].first > t {
		i--
	}
	return &m.packed[i], t - m.packed[i].first
}

// packedTile multiplies tile t with every activation row, prefetching tile
// next (none when it is the task's tile count).
func (m *matMulTask) packedTile(t, next int, ts *threadScratch) {
	pr, t := m.product(t)
	p, k := pr.p, m.order
	nb, tb, ab := m.nb, m.tileBytes, m.groupBytes
	w := p.tiles[t*tb : (t+1)*tb]
	// The kernels prefetch the next tile as they go (see tile32.mul).
	m.setPF(next, ts)
	x1 := k.x1
	if p.k.unpack != nil {
		if m.n == 1 {
			x1 = k.decode
		} else {
			// Unpacked once, the tile serves every group from L1 or L2.
			ts.tile = grow(ts.tile, p.k.unpackedBytes(nb))
			p.k.unpack(&w[0], nb, &ts.tile[0])
			w = ts.tile
		}
	}
	r0 := t * tileRows
	rows := min(tileRows, p.rows-r0)
	for g := 0; 4*g < m.n; g++ {
		kern, n, kn := k.x4, min(4, m.n-4*g), 4
		switch n {
		case 1:
			kern, kn = x1, 1
		case 2:
			kern, kn = k.x2, 2
		}
		// A whole tile's results go straight to out, unless the kernel
		// writes rows past it.
		if rows == tileRows && kn == n {
			kern(&w[0], &m.tiled[g*ab], nb, &pr.out[4*g*p.rows+r0], p.rows, &ts.tilePF)
			continue
		}
		kern(&w[0], &m.tiled[g*ab], nb, &ts.tileOut[0], tileRows, &ts.tilePF)
		for i := range n {
			o := (4*g+i)*p.rows + r0
			copy(pr.out[o:o+rows], ts.tileOut[tileRows*i:tileRows*i+rows])
		}
	}
}
