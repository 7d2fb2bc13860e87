package cpu

import (
	"fmt"
	"unsafe"

	"github.com/godwit-ai/godwit/models/gguf"
)

// Packed is a weight matrix repacked once, when a model is loaded, into the
// layout of a tile kernel, so that products with it need no packing per call.
// It is what llama.cpp's CPU_REPACK buffer is to ggml: the same bytes in
// another order. Only types whose packed tile is no bigger than their stored
// rows are packed (Q8_0): a product of one activation row reads every
// weight byte once, and must not read more than the stored layout.
type Packed struct {
	t          gguf.Type
	rows, cols int
	w          []byte // the stored layout, for a variant without k
	tiles      []byte // ⌈rows/16⌉ tiles of 16 rows, the last padded with zero rows
	k          *packedKernels
}

// packedKernels pack one type and multiply it in two float orders: orders[0]
// is llama.cpp's for a product of that shape, orders[1] the one of
// batch-invariant products (Scratch.Invariant).
type packedKernels struct {
	tileBytes func(nb int) int // a tile's size
	pack      func(dst, w []byte, rowBytes, rows, nb int)
	orders    [2]packedOrder
}

// packedOrder is a set of tile kernels of one float order: each sets
// out[16i+r] to weight row r of a tile times activation row i of a packed
// group of four, for the group's first 1, 2 or 4 activation rows.
type packedOrder struct {
	// packActs packs activation rows in groups of four, the last group
	// padded with zero rows.
	packActs   func(buf []byte, acts []act) []byte
	actBytes   func(nb int) int // a packed group's size
	x1, x2, x4 func(w, a *byte, nb int, out *float32, ldo int, pf *[5]uintptr)
}

// simdPacked[t], where set, packs and multiplies weights of type t (filled
// by the variant hooks of the assembly files).
var simdPacked = map[gguf.Type]*packedKernels{}

// Pack returns the rows×cols weight w of type t packed for this CPU's tile
// kernels, or nil when it has none for t (MatMul then takes w as stored).
// w stays referenced, for a later change of variant.
func Pack(t gguf.Type, w []byte, rows, cols int) *Packed {
	k := simdPacked[t]
	if k == nil || rows <= 0 || cols <= 0 || cols%t.BlockSize() != 0 {
		return nil
	}
	rowBytes := t.RowSize(cols)
	if len(w) != rows*rowBytes {
		panic(fmt.Sprintf("cpu: Pack: %d×%d %v weights need %d bytes, got %d", rows, cols, t, rows*rowBytes, len(w)))
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
func (s *Scratch) MatMulPacked(out []float32, p *Packed, x []float32, n int) {
	if simdPacked[p.t] != p.k {
		s.MatMul(out, p.t, p.w, p.rows, p.cols, x, n)
		return
	}
	if len(x) != n*p.cols || len(out) != n*p.rows {
		panic(fmt.Sprintf("cpu: MatMulPacked: %d×%d %v weights, %d activation rows: want len(x)=%d len(out)=%d, got %d %d",
			p.rows, p.cols, p.t, n, n*p.cols, n*p.rows, len(x), len(out)))
	}
	if n == 0 {
		return
	}
	o := &p.k.orders[b2i(s.Invariant)]
	acts := s.quantizeActs(p.t, x, p.cols, n)
	s.tiled = o.packActs(s.tiled, acts)
	s.task = matMulTask{out: out, t: p.t, rows: p.rows, cols: p.cols, n: n, packed: p, order: o, tiled: s.tiled}
	s.run()
}

// packedClaims is about how many chunks of tiles each thread claims in a
// product with packed weights: threads take chunks as they finish, so that
// a thread slowed by other work on its core leaves its share to the others.
const packedClaims = 8

// packedTiles is Run for packed weights. A thread claims its next chunk
// before it starts on the last tile of this one, so that it knows which tile
// to prefetch.
func (m *matMulTask) packedTiles(thread, threads int) {
	p, ts := m.packed, &m.threads[thread]
	tiles := (p.rows + tileRows - 1) / tileRows
	chunk := max(1, tiles/(threads*packedClaims))
	claim := func() int { return int(m.claimed.Add(1)-1) * chunk }
	for c := claim(); c < tiles; {
		end, next := min(c+chunk, tiles), tiles
		for t := c; t < end; t++ {
			if t+1 < end {
				next = t + 1
			} else {
				next = claim()
			}
			m.packedTile(t, min(next, tiles), ts)
		}
		c = next
	}
}

// packedTile multiplies tile t with every activation row, prefetching tile
// next (none when it is past the last).
func (m *matMulTask) packedTile(t, next int, ts *threadScratch) {
	p, k := m.packed, m.order
	nb := p.cols / p.t.BlockSize()
	tb, ab := p.k.tileBytes(nb), k.actBytes(nb)
	w := p.tiles[t*tb : (t+1)*tb]
	// The kernels prefetch the next tile as they go (see tile32.mul).
	ts.tilePF = [5]uintptr{}
	if next*tb < len(p.tiles) {
		ts.tilePF = [5]uintptr{uintptr(unsafe.Pointer(&p.tiles[next*tb])), 0, uintptr(tb / 64), uintptr(tb), uintptr(tb)}
	}
	r0 := t * tileRows
	rows := min(tileRows, p.rows-r0)
	for g := 0; 4*g < m.n; g++ {
		kern, n, kn := k.x4, min(4, m.n-4*g), 4
		switch n {
		case 1:
			kern, kn = k.x1, 1
		case 2:
			kern, kn = k.x2, 2
		}
		// A whole tile's results go straight to out, unless the kernel
		// writes rows past it.
		if rows == tileRows && kn == n {
			kern(&w[0], &m.tiled[g*ab], nb, &m.out[4*g*p.rows+r0], p.rows, &ts.tilePF)
			continue
		}
		kern(&w[0], &m.tiled[g*ab], nb, &ts.tileOut[0], tileRows, &ts.tilePF)
		for i := range n {
			o := (4*g+i)*p.rows + r0
			copy(m.out[o:o+rows], ts.tileOut[tileRows*i:tileRows*i+rows])
		}
	}
}
