// Command tile generates the amd64 tile kernels of package cpu for the
// 32-element block types (Q8_0, Q4_0, Q5_0, Q4_1, Q5_1): sixteen weight rows,
// packed so that each owns one dword lane of a ZMM register, times groups of
// four activation rows (prompt processing).
//
// Packed weights (tile32.go in package cpu writes them), per block:
// the unsigned levels in eight groups of 64 bytes (group g: for each row r,
// the four levels 4g..4g+3 at 4r), then d_w for the 16 rows as fp16, then
// for the _1 types m_w likewise. A Q8_0 tile thus takes exactly the bytes of
// its 16 stored rows, which lets package cpu keep Q8_0 weights packed. Packed activations, per block of a group of
// four rows: their 32 levels each, their four d_x, for the _1 types their
// four block sums s_x, and for the types with an offset its correction: −o
// times the sum of each row's block (the one-lane kernel) or of each four
// levels (the eight-lane kernel), so that Σ(u−o)·x = Σu·x − o·Σx exactly.
//
// VPDPBUSD with the four activation levels of a group broadcast to every
// lane adds the group's sum for all sixteen rows at once, so the integer
// sums land in lanes with no horizontal reductions. The float operations are
// those of package cpu's dotBlocks32, in its order, lane by lane: per block
// d = float32(d_w·d_x), then one FMA of the whole block sum (the repacked
// Q4_0 order) or one per four-level group (the eight-lane order), folded as
// hsum8, plus the min terms of the _1 types.
package main

import (
	"flag"
	"fmt"
	"os"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// streamAhead is how many blocks ahead in its stream a decode kernel
// prefetches (for Q4_0, 8 and 16 measured 2–5% slower).
const streamAhead = 12

// streams reports whether k prefetches its own stream rather than the next
// tile from the cursor: the Q4_0 decode kernel, whose product's tiles follow
// one another; the cursor took 10% more time a step (BenchmarkPackedDecode,
// 1B Q4_0). The Q8_0 decode kernels measured level both ways.
func (k kind) streams() bool { return k.nibbles }

// streamPrefetch prefetches a block's worth of lines streamAhead blocks on
// from w.
func streamPrefetch(k kind, w Register) {
	for i := range (k.weightBytes() + 63) / 64 {
		PREFETCHT0(Mem{Base: w, Disp: streamAhead*k.weightBytes() + 64*i})
	}
}

// The packed layouts, in bytes per block.
const (
	levelBytes  = 8 * 64 // a weight tile's levels
	nibbleBytes = 4 * 64 // a Q4_0 tile's levels in the nibble kernels' layout
	actRows     = 4      // activation rows per group
	actLevels   = actRows * 32
)

// kind is one of the kernels' float orders and what the packed data holds.
type kind struct {
	name    string
	oneLane bool // one FMA per block, else one per group of four levels
	min     bool // m_w and s_x follow (the _1 types)
	offset  bool // the activations carry offset corrections (the _0 types)
	rows    int  // activation rows 0..rows-1 of the group (0: all four)
	// nibbles: the tile is Q4_0's as stored at load, each group of 64
	// bytes holding levels 4j..4j+3 of the 16 rows in its low nibbles and
	// 16+4j..16+4j+3 in its high ones.
	nibbles bool
}

// levels is the size of a block's weight levels.
func (k kind) levels() int {
	if k.nibbles {
		return nibbleBytes
	}
	return levelBytes
}

// scaleBytes is the size of the 16 rows' fp16 d_w (or m_w).
const scaleBytes = 2 * 16

// weightBytes and actBytes are the packed sizes of a block.
func (k kind) weightBytes() int {
	if k.min {
		return k.levels() + 2*scaleBytes
	}
	return k.levels() + scaleBytes
}

func (k kind) actBytes() int {
	n := actLevels + 4*actRows
	if k.min {
		n += 4 * actRows
	}
	if k.offset && k.oneLane {
		n += 4 * actRows
	} else if k.offset {
		n += 32 * actRows
	}
	return n
}

// Offsets within a packed activation block.
func (k kind) dOff() int { return actLevels }
func (k kind) sOff() int { return actLevels + 4*actRows }
func (k kind) cOff() int {
	if k.min {
		return k.sOff() + 4*actRows
	}
	return k.sOff()
}

// The one- and two-row Q0 kernels serve products of fewer activation rows
// (decode) with Q8_0 weights packed at load.
var kinds = []kind{
	{name: "OneQ0", oneLane: true, offset: true},
	{name: "OneQ0x1", oneLane: true, offset: true, rows: 1},
	{name: "OneQ0x2", oneLane: true, offset: true, rows: 2},
	{name: "Lanes8Q0", offset: true},
	{name: "Lanes8Q0x1", offset: true, rows: 1},
	{name: "Lanes8Q0x2", offset: true, rows: 2},
	{name: "Lanes8Q1", min: true},
	{name: "OneQ4x1", oneLane: true, offset: true, rows: 1, nibbles: true},
}

func main() {
	flag.Parse()
	os.Args = []string{os.Args[0], "-out", "tile_amd64.s", "-stubs", "tile_amd64.go", "-pkg", "cpu"}
	packConstants()
	for _, k := range kinds {
		tileKernel(k)
	}
	tileKernelTiles(kinds[0])
	packKernel("Q8_0", 34, 8, false)
	packKernel("Q4_0", 18, 4, false)
	packKernel("Q4_0Nibbles", 18, 4, true)
	unpackNibbles()
	packActsOne()
	Generate()
}

// tileKernel generates tile32<name>AVX512(w, a *byte, nb int, out *float32,
// ldo int, pf *[5]uintptr): the 16 packed weight rows at w times the packed
// group of four activation rows at a (its first k.rows), nb blocks each;
// out[ldo·i+r] gets row r times activation row i.
func tileKernel(k kind) {
	name := "tile32" + k.name + "AVX512"
	TEXT(name, NOSPLIT, "func(w, a *byte, nb int, out *float32, ldo int, pf *[5]uintptr)")
	order := "one FMA per block"
	if !k.oneLane {
		order = "one FMA per four levels, folded as hsum8"
	}
	which := "a packed group of four activation rows"
	if k.rows != 0 {
		which = fmt.Sprintf("the first %d activation rows of a packed group", k.rows)
	}
	Doc(fmt.Sprintf("%s multiplies 16 packed weight rows with %s, nb blocks each, "+
		"and sets out[ldo·i+r] to weight row r times activation row i, adding in package cpu's order (%s); "+
		"on the way it prefetches cache lines from pf's cursor (see tilePF).", name, which, order))
	w0 := Load(Param("w"), GP64())
	a0 := Load(Param("a"), GP64())
	nb := Load(Param("nb"), GP64())
	out := rowStore{base: Load(Param("out"), GP64()), ldo: Load(Param("ldo"), GP64())}
	SHLQ(U8(2), out.ldo) // in bytes
	pf := loadPF(Load(Param("pf"), GP64()))
	rows := k.rows
	if rows == 0 {
		rows = actRows
	}
	if k.oneLane {
		oneLane(k, w0, a0, nb, out, rows, pf)
	} else {
		// Eight accumulators per activation row: two rows at a time fit the
		// registers, so the blocks are gone through once per two rows.
		for pass := 0; 2*pass < rows; pass++ {
			lanes8(k, w0, a0, nb, out, 2*pass, min(2, rows-2*pass), fmt.Sprint(pass), pf)
		}
	}
	pf.store()
	VZEROUPPER()
	RET()
}

// rowStore is where the kernels store activation row i's 16 results: ldo
// bytes apart from base.
type rowStore struct{ base, ldo Register }

func (o rowStore) store(v VecVirtual, i int) {
	if i == 0 {
		VMOVUPS(v, Mem{Base: o.base})
		return
	}
	t := GP64()
	IMUL3Q(U8(i), o.ldo, t)
	VMOVUPS(v, Mem{Base: o.base, Index: t, Scale: 1})
}

// prefetcher is a tilePF cursor in registers: the kernels walk it through
// the next tile's rows while they compute on this one, so that those rows
// come from memory in the shadow of the arithmetic.
type prefetcher struct {
	ptr                        Register
	p, off, lines, bytes, step GPVirtual
	n                          int // labels emitted
}

// The fields of a tilePF, as package cpu declares them.
const (
	pfP = 8 * iota
	pfOff
	pfLines
	pfBytes
	pfStride
)

func loadPF(ptr Register) *prefetcher {
	f := &prefetcher{ptr: ptr, p: GP64(), off: GP64(), lines: GP64(), bytes: GP64(), step: GP64()}
	f.load()
	return f
}

// load reads the cursor from the tilePF at f.ptr.
func (f *prefetcher) load() {
	MOVQ(Mem{Base: f.ptr, Disp: pfP}, f.p)
	MOVQ(Mem{Base: f.ptr, Disp: pfOff}, f.off)
	MOVQ(Mem{Base: f.ptr, Disp: pfLines}, f.lines)
	MOVQ(Mem{Base: f.ptr, Disp: pfBytes}, f.bytes)
	MOVQ(Mem{Base: f.ptr, Disp: pfStride}, f.step)
}

// fetch prefetches the cursor's next line, if any, and moves it on.
func (f *prefetcher) fetch() {
	f.n++
	skip, same := fmt.Sprintf("pf_skip%d", f.n), fmt.Sprintf("pf_same%d", f.n)
	TESTQ(f.lines, f.lines)
	JZ(LabelRef(skip))
	PREFETCHT1(Mem{Base: f.p, Index: f.off, Scale: 1})
	DECQ(f.lines)
	ADDQ(U8(64), f.off)
	CMPQ(f.off, f.bytes)
	JB(LabelRef(same))
	XORQ(f.off, f.off)
	ADDQ(f.step, f.p)
	Label(same)
	Label(skip)
}

func (f *prefetcher) store() {
	MOVQ(f.p, Mem{Base: f.ptr, Disp: pfP})
	MOVQ(f.off, Mem{Base: f.ptr, Disp: pfOff})
	MOVQ(f.lines, Mem{Base: f.ptr, Disp: pfLines})
}

// oneLane: per block, the block sum of each of activation rows 0..rows-1
// (started from its correction) is converted and added by one FMA with
// d_w·d_x. With four rows the sum is one chain of eight VPDPBUSD: the
// blocks' chains are independent, so the out-of-order core overlaps them,
// and a second chain would cost two more instructions per row. With fewer
// rows, which wait on memory rather than on the vector units, two chains of
// four halve the latency a block takes.
func oneLane(k kind, w0, a0, nb Register, out rowStore, rows int, pf *prefetcher) {
	w, a, n := GP64(), GP64(), GP64()
	MOVQ(w0, w)
	MOVQ(a0, a)
	MOVQ(nb, n)
	acc := make([]VecVirtual, rows)
	for i := range acc {
		acc[i] = ZMM()
		VXORPS(acc[i], acc[i], acc[i])
	}
	// Temporaries are allocated once: avo takes an EVEX destination for an
	// input too (merge masking), so a fresh one per block would be live
	// throughout.
	chains := 1
	if rows < actRows {
		chains = 2
	}
	s := make([][]VecVirtual, chains)
	for c := range s {
		for range rows {
			s[c] = append(s[c], ZMM())
		}
	}
	lv, dw, d := ZMM(), ZMM(), ZMM()
	var nib VecVirtual
	if k.nibbles {
		if chains < 2 {
			panic("tile: the nibble kernels need two chains")
		}
		nib = ZMM()
		VPBROADCASTD(nibble, nib)
	}
	TESTQ(n, n)
	JZ(LabelRef("one_store"))
	Label("one_block")
	// As in lanes8: the kernels of fewer rows fetch more per block.
	fetches := 2
	if k.rows != 0 {
		fetches = 5
	}
	if k.streams() {
		streamPrefetch(k, w)
		fetches = 0
	}
	for range fetches {
		pf.fetch()
	}
	for i := range rows {
		VPBROADCASTD(Mem{Base: a, Disp: k.cOff() + 4*i}, s[0][i])
		if chains > 1 {
			VPXORD(s[1][i], s[1][i], s[1][i])
		}
	}
	if k.nibbles {
		// The low nibbles feed chain 0; the high ones stay in place, as 16
		// times their value (at most 240, still a byte), and feed chain 1,
		// whose sum is shifted back, exactly, at the end.
		hi := ZMM()
		for j := range 4 {
			VMOVDQU32(Mem{Base: w, Disp: 64 * j}, lv)
			VPANDND(lv, nib, hi)
			VPANDD(nib, lv, lv)
			for i := range rows {
				VPDPBUSD_BCST(Mem{Base: a, Disp: 32*i + 4*j}, lv, s[0][i])
				VPDPBUSD_BCST(Mem{Base: a, Disp: 32*i + 16 + 4*j}, hi, s[1][i])
			}
		}
		for i := range rows {
			VPSRAD(U8(4), s[1][i], s[1][i])
		}
	} else {
		for g := range 8 {
			VMOVDQU32(Mem{Base: w, Disp: 64 * g}, lv)
			for i := range rows {
				VPDPBUSD_BCST(Mem{Base: a, Disp: 32*i + 4*g}, lv, s[g%chains][i])
			}
		}
	}
	VCVTPH2PS(Mem{Base: w, Disp: k.levels()}, dw)
	for i := range rows {
		if chains > 1 {
			VPADDD(s[1][i], s[0][i], s[0][i])
		}
		VCVTDQ2PS(s[0][i], s[0][i])
		VMULPS_BCST(Mem{Base: a, Disp: k.dOff() + 4*i}, dw, d)
		VFMADD231PS(d, s[0][i], acc[i])
	}
	ADDQ(U32(k.weightBytes()), w)
	ADDQ(U32(k.actBytes()), a)
	DECQ(n)
	JNZ(LabelRef("one_block"))
	Label("one_store")
	for i := range rows {
		out.store(acc[i], i)
	}
}

// lanes8 does activation rows i0..i0+rows-1 (rows 1 or 2): per block and
// group of four levels, the group sum (started from its correction) is
// converted and added by one FMA with d_w·d_x to that group's accumulator;
// the _1 types' min terms form one more FMA chain per row.
func lanes8(k kind, w0, a0, nb Register, out rowStore, i0, rows int, pass string, pf *prefetcher) {
	w, a, n := GP64(), GP64(), GP64()
	MOVQ(w0, w)
	MOVQ(a0, a)
	MOVQ(nb, n)
	acc := make([][8]VecVirtual, rows)
	summs := make([]VecVirtual, rows)
	for i := range acc {
		for g := range acc[i] {
			acc[i][g] = ZMM()
			VXORPS(acc[i][g], acc[i][g], acc[i][g])
		}
		if k.min {
			summs[i] = ZMM()
			VXORPS(summs[i], summs[i], summs[i])
		}
	}
	// Temporaries are allocated once, as in oneLane.
	dw, mw, lv := ZMM(), ZMM(), ZMM()
	d := []VecVirtual{ZMM(), ZMM()}[:rows]
	s := []VecVirtual{ZMM(), ZMM()}[:rows]
	TESTQ(n, n)
	JZ(LabelRef("lanes_store" + pass))
	Label("lanes_block" + pass)
	// A tile's blocks take about nine lines: the kernels of fewer rows,
	// called once per tile, fetch more of the next tile per block.
	fetches := 1
	if k.rows != 0 {
		fetches = 5
	}
	for range fetches {
		pf.fetch()
	}
	VCVTPH2PS(Mem{Base: w, Disp: levelBytes}, dw)
	for i := range d {
		VMULPS_BCST(Mem{Base: a, Disp: k.dOff() + 4*(i0+i)}, dw, d[i])
	}
	if k.min {
		VCVTPH2PS(Mem{Base: w, Disp: levelBytes + scaleBytes}, mw)
		for i := range summs {
			VFMADD231PS_BCST(Mem{Base: a, Disp: k.sOff() + 4*(i0+i)}, mw, summs[i])
		}
	}
	for g := range 8 {
		VMOVDQU32(Mem{Base: w, Disp: 64 * g}, lv)
		for i, s := range s {
			if k.offset {
				VPBROADCASTD(Mem{Base: a, Disp: k.cOff() + 32*(i0+i) + 4*g}, s)
			} else {
				VPXORD(s, s, s)
			}
			VPDPBUSD_BCST(Mem{Base: a, Disp: 32*(i0+i) + 4*g}, lv, s)
			VCVTDQ2PS(s, s)
			VFMADD231PS(d[i], s, acc[i][g])
		}
	}
	ADDQ(U32(k.weightBytes()), w)
	ADDQ(U32(k.actBytes()), a)
	DECQ(n)
	JNZ(LabelRef("lanes_block" + pass))
	Label("lanes_store" + pass)
	for i := range acc {
		l := acc[i]
		// hsum8: (a0+a4) + (a2+a6), (a1+a5) + (a3+a7), then the two.
		for t := range 4 {
			VADDPS(l[t+4], l[t], l[t])
		}
		VADDPS(l[2], l[0], l[0])
		VADDPS(l[3], l[1], l[1])
		VADDPS(l[1], l[0], l[0])
		if k.min {
			VADDPS(summs[i], l[0], l[0])
		}
		out.store(l[0], i0+i)
	}
}

// tileKernelTiles generates tile32OneQ0TilesAVX512(w, a *byte, nb int,
// out *float32, ldo int, pf *[5]uintptr, groups, ab, tiles int): the
// four-row kernel of kind k for tiles consecutive tiles at w (16 columns of
// out apart) and, for each, groups packed groups of activation rows ab bytes
// apart (the results of group g from row 4g of out on), in one call. Each
// tile prefetches the next, and the last one pf's cursor.
func tileKernelTiles(k kind) {
	name := "tile32" + k.name + "TilesAVX512"
	TEXT(name, NOSPLIT, "func(w, a *byte, nb int, out *float32, ldo int, pf *[5]uintptr, groups, ab, tiles int)")
	Doc(fmt.Sprintf("%s is tile32%sAVX512 for tiles consecutive tiles at w, out 16 columns apart, each times groups "+
		"groups of four activation rows ab bytes apart (group g's results from row 4g of out on); each tile prefetches "+
		"the next one, the last one from pf's cursor (see tilePF).", name, k.name))
	// The tile's weights and results, the tiles left and a tile's size.
	tileW, tileOut, left, size := AllocLocal(8), AllocLocal(8), AllocLocal(8), AllocLocal(8)
	for _, c := range []struct {
		param string
		to    Mem
	}{{"w", tileW}, {"out", tileOut}, {"tiles", left}} {
		r := Load(Param(c.param), GP64())
		MOVQ(r, c.to)
	}
	tb := Load(Param("nb"), GP64())
	IMUL3Q(U32(k.weightBytes()), tb, tb)
	MOVQ(tb, size)
	ldo := Load(Param("ldo"), GP64())
	SHLQ(U8(2), ldo)
	pf := &prefetcher{ptr: Load(Param("pf"), GP64()), p: GP64(), off: GP64(), lines: GP64(), bytes: GP64(), step: GP64()}
	CMPQ(left, U8(0))
	JE(LabelRef("tiles_done"))
	Label("tile")
	// The cursor: the next tile of this call, or pf's for the last one.
	CMPQ(left, U8(1))
	JE(LabelRef("tile_last"))
	MOVQ(size, pf.bytes)
	MOVQ(tileW, pf.p)
	ADDQ(pf.bytes, pf.p)
	XORQ(pf.off, pf.off)
	MOVQ(pf.bytes, pf.lines)
	SHRQ(U8(6), pf.lines)
	MOVQ(pf.bytes, pf.step)
	JMP(LabelRef("tile_go"))
	Label("tile_last")
	pf.load()
	Label("tile_go")
	a0 := Load(Param("a"), GP64())
	out := rowStore{base: GP64(), ldo: ldo}
	MOVQ(tileOut, out.base)
	g := Load(Param("groups"), GP64())
	ab := Load(Param("ab"), GP64())
	Label("group")
	w0 := GP64()
	MOVQ(tileW, w0)
	nb := Load(Param("nb"), GP64())
	oneLane(k, w0, a0, nb, out, actRows, pf)
	ADDQ(ab, a0)
	LEAQ(Mem{Base: out.base, Index: out.ldo, Scale: 4}, out.base)
	DECQ(g)
	JNZ(LabelRef("group"))
	t := GP64()
	MOVQ(size, t)
	ADDQ(t, tileW)
	ADDQ(U8(4*16), tileOut)
	DECQ(left)
	JNZ(LabelRef("tile"))
	pf.store()
	Label("tiles_done")
	VZEROUPPER()
	RET()
}
