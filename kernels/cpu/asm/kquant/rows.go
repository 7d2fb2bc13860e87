package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The rows kernels multiply consecutive weight rows, rowBytes apart, with one
// Q8_K activation row and write one result per weight row: a decode step
// (one activation row) costs one call per thread and matrix instead of one
// per weight row. The vecDot kernels (Q4_K unrepacked, Q5_K, Q6_K) run the
// one-row kernel's body row after row; rows are independent, so the CPU
// overlaps one row's float chain with the next row's integer work. The Q4_K
// gemv kernel takes eight rows at a time with row r in lane r, as
// llama.cpp's repacked gemv does: one FMA per super-block adds all eight
// rows' scaled sums, and the same FMA their min sums in other lanes.
//
// A decode step reads each weight byte once, so it runs at the speed of
// memory, and the hardware prefetchers alone leave most of the misses
// exposed: the kernels prefetch the weights they take a little later into
// L2. That is most of the gain in decoding a Q4_K_M model on one thread of
// the development machine, from about 30 to about 55 tokens/s (the same
// prefetching in the one-row kernels reached about 50). Prefetching into L1
// instead (PREFETCHT0) was about 7% slower there, into neither
// (PREFETCHNTA) far slower.

// prefetchAhead is how far ahead of the super-block in hand the rows
// kernels prefetch. MatMul's rows are consecutive in memory, so this is the
// data of rows a little further on, whichever order a kernel takes the
// blocks of its rows in. Decode got about 5% faster from 2 KiB to 8 KiB and
// stayed level at 16 KiB, about 1 µs of the development machine's memory
// bandwidth.
const prefetchAhead = 16384

// Tables of the rows kernels.
var rtab struct {
	// ksShift, ksLow and ksHigh unpack the scale bytes of a Q4_K/Q5_K
	// header in a 128-bit lane (see kscalesVec).
	ksShift, ksLow, ksHigh Mem
	// gemvD (AVX-512) gathers the fp16 d and dmin of eight super-block
	// headers, four per ZMM, as d0..d3, dmin0..dmin3, d4..d7, dmin4..dmin7.
	gemvD Mem
	// gemvD4 (AVX2) turns the words d0, dmin0, …, d3, dmin3 into d0..d3,
	// dmin0..dmin3.
	gemvD4 Mem
}

func rowsData() {
	rtab.ksShift = data("kqRowsKsShift", dwords(repeat4(0, 0, 0, 4)...))
	rtab.ksLow = data("kqRowsKsLow", dwords(repeat4(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f)...))
	rtab.ksHigh = data("kqRowsKsHigh", dwords(repeat4(0, 0x30303030, 0, 0x30303030)...))
	idx := make([]uint16, 32)
	for r := range 8 {
		base := uint16(8*(r%4) + 32*(r/4)) // word 0 of lane r%4 of table r/4
		idx[8*(r/4)+r%4] = base            // d_r
		idx[8*(r/4)+4+r%4] = base + 1      // dmin_r
	}
	rtab.gemvD = data("kqRowsGemvD", words(idx...))
	rtab.gemvD4 = data("kqRowsGemvD4", []byte{0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15})
}

// repeat4 repeats four dwords over 64 bytes.
func repeat4(a, b, c, d uint32) []uint32 {
	var out []uint32
	for range 4 {
		out = append(out, a, b, c, d)
	}
	return out
}

// prefetch fetches the super-block at m into L2, one prefetch per 64
// bytes: with every block of a row prefetched, every line of the row is.
func (g *kgen) prefetch(m Mem) {
	for o := 0; o < g.t.blockBytes(); o += 64 {
		PREFETCHT1(m.Offset(o))
	}
}

// rowLoop holds the registers of a vecDot rows kernel's loop over rows.
type rowLoop struct {
	rows, out, skip Register
}

// rowLoopStart begins the loop over weight rows: g.w walks the super-blocks
// of one row, then skip takes it from past the row's last block to the next
// row.
func (g *kgen) rowLoopStart() *rowLoop {
	rl := &rowLoop{rows: Load(Param("rows"), GP64()), out: Load(Param("out"), GP64()), skip: Load(Param("rowBytes"), GP64())}
	t := GP64()
	IMUL3Q(U32(g.t.blockBytes()), g.nb, t)
	SUBQ(t, rl.skip)
	Label("row")
	Load(Param("nb"), g.nb)
	return rl
}

// rowLoopEnd stores a row's result and closes the loop over rows.
func (g *kgen) rowLoopEnd(rl *rowLoop, res Register) {
	VMOVSS(res, Mem{Base: rl.out})
	ADDQ(U8(4), rl.out)
	ADDQ(rl.skip, g.w)
	DECQ(rl.rows)
	JNZ(LabelRef("row"))
	VZEROUPPER()
	RET()
}

// kscalesVec is kscales for the super-block headers (bytes 0..15: d, dmin
// and the twelve scale bytes) in the 128-bit lanes of v: with the header's
// dwords h0, u0, u1, u2 it returns in the same lane the dwords
//
//	u0 & 0x3f3f3f3f                                 scales 0..3
//	u2 & 0x0f0f0f0f | (u0 >> 2) & 0x30303030        scales 4..7
//	u1 & 0x3f3f3f3f                                 mins 0..3
//	(u2 >> 4) & 0x0f0f0f0f | (u1 >> 2) & 0x30303030 mins 4..7
//
// which are kscales' bytes scale0..7, min0..7.
func (g *kgen) kscalesVec(v Register) Register {
	lo, hi := g.vec(), g.vec()
	VPSHUFD(U8(0xed), v, lo) // u0, u2, u1, u2
	VPSRLVD(g.rc.ksShift, lo, lo)
	VPSHUFD(U8(0xa5), v, hi) // u0, u0, u1, u1
	VPSRLD(U8(2), hi, hi)
	if g.z {
		VPANDD(g.rc.ksHigh, hi, hi)
		VPTERNLOGD(U8(0xec), g.rc.ksLow, hi, lo) // lo = lo&ksLow | hi
		return lo
	}
	VPAND(g.rc.ksLow, lo, lo)
	VPAND(g.rc.ksHigh, hi, hi)
	VPOR(hi, lo, lo)
	return lo
}

// rowsConsts are the tables of rtab a rows kernel uses: registers in the
// AVX-512 kernels, memory operands in the AVX2 ones.
type rowsConsts struct {
	ksShift, ksLow, ksHigh, gemvD Op
}

func (g *kgen) rowsConstants() {
	g.rc = rowsConsts{rtab.ksShift, rtab.ksLow, rtab.ksHigh, rtab.gemvD}
	if !g.z {
		return
	}
	for _, c := range []*Op{&g.rc.ksShift, &g.rc.ksLow, &g.rc.ksHigh, &g.rc.gemvD} {
		z := ZMM()
		VMOVDQU64(*c, z)
		*c = z
	}
}

// gemvRows generates the Q4_K gemv rows kernel: rows must be a multiple of
// 8 (the wrapper takes any rest one row at a time). Per super-block and row
// it makes, as gemvBlock does, the scaled sums and the min sums in integers;
// a transposing reduction then gathers each row's two totals, and one FMA per
// super-block (AVX2: one per four rows) adds them to the row's lanes of the
// accumulator: sum_r = fma(si_r, d_x·d_r, sum_r) and sumMin_r = fma(mi_r,
// d_x·dmin_r, sumMin_r), the Go kernel's chains. The result is
// sum_r − sumMin_r.
func (g *kgen) gemvRows() {
	p := Load(Param("w"), GP64()) // block b of the current row
	rb := Load(Param("rowBytes"), GP64())
	groups := Load(Param("rows"), GP64())
	SHRQ(U8(3), groups)
	g.q = []Register{Load(Param("q"), GP64())}
	g.d = Load(Param("d"), GP64())
	g.bs = Load(Param("bs"), GP64())
	out := Load(Param("out"), GP64())
	g.nb, g.boff = Load(Param("nb"), GP64()), GP64()
	rb3, rb8, skip := GP64(), GP64(), GP64()
	LEAQ(Mem{Base: rb, Index: rb, Scale: 2}, rb3)
	MOVQ(rb, rb8)
	SHLQ(U8(3), rb8)
	// After a group's blocks p is past row 0's last block: skip takes it to
	// row 0 of the next group.
	IMUL3Q(U32(-g.t.blockBytes()), g.nb, skip)
	ADDQ(rb8, skip)
	g.constants()
	var low Register // AVX-512: mask of the lower eight dwords
	g.rowsConstants()
	if g.z {
		t := GP32()
		MOVL(U32(0xff), t)
		low = K()
		KMOVW(t, low)
	}

	Label("group")
	// AVX-512: one accumulator, [sum0..3, sumMin0..3, sum4..7, sumMin4..7];
	// AVX2: two, [sum, sumMin] of rows 0..3 and of rows 4..7.
	accs := []Register{g.vec()}
	if !g.z {
		accs = append(accs, YMM())
	}
	for _, a := range accs {
		g.zero(a)
	}
	XORQ(g.boff, g.boff)
	Load(Param("nb"), g.nb)

	Label("block")
	bsv := YMM()
	VMOVDQU(g.bsMem(0), bsv)
	var hdr [2]Register // AVX-512: the headers of rows 0..3 and 4..7
	var d Register      // AVX2: d_x·[d, dmin] of the current four rows
	var ks Register     // the scales of the current four (AVX2: two) rows
	var part []Register // reduction partials, see reduceRows
	for r := range 8 {
		if g.z && r%4 == 0 {
			h := ZMM()
			VMOVDQU32(Mem{Base: p}, h.AsX())
			VINSERTI32X4(U8(1), Mem{Base: p, Index: rb, Scale: 1}, h, h)
			VINSERTI32X4(U8(2), Mem{Base: p, Index: rb, Scale: 2}, h, h)
			VINSERTI32X4(U8(3), Mem{Base: p, Index: rb3, Scale: 1}, h, h)
			hdr[r/4] = h
			ks = g.kscalesVec(h)
		}
		if !g.z && r%4 == 0 {
			d = g.gemvFactors4(p, rb, rb3)
		}
		if !g.z && r%2 == 0 {
			h := YMM()
			VMOVDQU(Mem{Base: p}, h.AsX())
			VINSERTI128(U8(1), Mem{Base: p, Index: rb, Scale: 1}, h, h)
			ks = g.kscalesVec(h)
		}
		b := &block{ssrc: g.vec()}
		if g.z {
			k := uint8(r % 4)
			VSHUFI64X2(U8(k|k<<2|k<<4|k<<6), ks, ks, b.ssrc)
		} else {
			VPERMQ(U8([]uint8{0x44, 0xee}[r%2]), ks, b.ssrc)
		}
		g.w = p
		g.prefetch(Mem{Base: p, Disp: prefetchAhead})
		var acc Register
		for c := range 4 {
			wv, sv := g.weights(b, c), g.scales(b, c)
			if c == 0 {
				acc = g.vec()
			}
			g.mac(acc, wv, sv, 0, c, c == 0)
		}
		wm, m := YMM(), YMM()
		VPSHUFB(tab.minsK4, b.ssrc.(Vec).AsY(), wm)
		VPMADDWD(bsv, wm, m)
		part = g.reduceRows(part, g.rowSums(acc, m, low), r)
		ADDQ(rb, p)
		if !g.z && r%4 == 3 {
			// [si, mi] of the four rows: one FMA into their accumulator.
			s := part[len(part)-1]
			part = part[:len(part)-1]
			VCVTDQ2PS(s, s)
			VFMADD231PS(d, s, accs[r/4])
		}
	}
	if g.z {
		// part holds rows 0..3 and rows 4..7, each with the lane totals
		// of si in 128-bit lanes 0 and 1 and of mi in lanes 2 and 3.
		r0, r1 := part[0], part[1]
		x, y := ZMM(), ZMM()
		VSHUFI64X2(U8(0x88), r1, r0, x) // lanes 0 and 2 of each
		VSHUFI64X2(U8(0xdd), r1, r0, y) // lanes 1 and 3
		VPADDD(y, x, x)
		VCVTDQ2PS(x, x)
		f := hdr[0]
		VPERMT2W(hdr[1], g.rc.gemvD, f)
		df := ZMM()
		VCVTPH2PS(f.(Vec).AsY(), df)
		VMULPS_BCST(g.dMem(0), df, df)
		VFMADD231PS(df, x, accs[0])
	}
	SUBQ(rb8, p)
	ADDQ(U32(g.t.blockBytes()), p)
	ADDQ(U32(256), g.boff)
	DECQ(g.nb)
	JNZ(LabelRef("block"))

	if g.z {
		a, s := ZMM(), ZMM()
		VSHUFF64X2(U8(0x08), accs[0], accs[0], a) // sums: lanes 0, 2
		VSHUFF64X2(U8(0x0d), accs[0], accs[0], s) // min sums: lanes 1, 3
		VSUBPS(s.AsY(), a.AsY(), a.AsY())
		VMOVUPS(a.AsY(), Mem{Base: out})
	} else {
		for h, a := range accs {
			s, res := XMM(), XMM()
			VEXTRACTF128(U8(1), a, s)
			VSUBPS(s, a.(Vec).AsX(), res)
			VMOVUPS(res, Mem{Base: out, Disp: 16 * h})
		}
	}
	ADDQ(U8(32), out)
	ADDQ(skip, p)
	DECQ(groups)
	JNZ(LabelRef("group"))
	VZEROUPPER()
	RET()
}

// gemvFactors4 (AVX2) returns d_x·[d0, d1, d2, d3, dmin0, dmin1, dmin2,
// dmin3] for the super-blocks at p, p+rb, p+2rb and p+rb3.
func (g *kgen) gemvFactors4(p, rb, rb3 Register) Register {
	x, f, dx := XMM(), YMM(), YMM()
	VMOVD(Mem{Base: p}, x)
	VPINSRD(U8(1), Mem{Base: p, Index: rb, Scale: 1}, x, x)
	VPINSRD(U8(2), Mem{Base: p, Index: rb, Scale: 2}, x, x)
	VPINSRD(U8(3), Mem{Base: p, Index: rb3, Scale: 1}, x, x)
	VPSHUFB(rtab.gemvD4, x, x)
	VCVTPH2PS(x, f)
	VBROADCASTSS(g.dMem(0), dx)
	VMULPS(dx, f, f)
	return f
}

// rowSums packs one row's scaled sums acc and min products m for
// reduceRows: four dwords summing to si and four summing to mi in each
// 128-bit lane pair, as [si, si, mi, mi] (AVX-512, lanes) or [si, mi]
// (AVX2).
func (g *kgen) rowSums(acc, m, low Register) Register {
	if g.z {
		t := ZMM()
		VSHUFI64X2(U8(0x4e), m.(Vec).AsZ(), acc, t) // acc lanes 2, 3; m lanes 0, 1
		VPADDD(acc, t, low, t)                      // plus acc lanes 0, 1 below
		return t
	}
	a, b := YMM(), YMM()
	VPBLENDD(U8(0xf0), m, acc, a)   // acc lane 0, m lane 1
	VPERM2I128(U8(0x21), m, acc, b) // acc lane 1, m lane 0
	VPADDD(b, a, a)
	return a
}

// reduceRows adds row r's packed sums v (rowSums) to the partials of a
// transposing reduction over four rows: after an odd row it pairs it with
// the row before (dword e of a lane becomes the sums of dwords e and e+2 of
// either row, interleaved), after row 4k+3 it pairs the two pairs, which
// leaves in each 128-bit lane the lane's totals of rows 4k..4k+3 in dwords
// 0..3.
func (g *kgen) reduceRows(part []Register, v Register, r int) []Register {
	merge := func(unpackLo, unpackHi func(a, b, dst Op)) {
		a, b := part[len(part)-2], part[len(part)-1]
		lo, hi := g.vec(), g.vec()
		unpackLo(b, a, lo)
		unpackHi(b, a, hi)
		VPADDD(hi, lo, lo)
		part = append(part[:len(part)-2], lo)
	}
	part = append(part, v)
	if r%2 == 1 {
		merge(func(a, b, dst Op) { VPUNPCKLDQ(a, b, dst) }, func(a, b, dst Op) { VPUNPCKHDQ(a, b, dst) })
	}
	if r%4 == 3 {
		merge(func(a, b, dst Op) { VPUNPCKLQDQ(a, b, dst) }, func(a, b, dst Op) { VPUNPCKHQDQ(a, b, dst) })
	}
	return part
}
