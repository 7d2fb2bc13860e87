package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The K-quant kernels multiply one weight row, as stored in GGUF, with one
// Q8_K activation row (levels q, scales d, sums of 16 levels bsums), or with
// four rows at once so that each weight super-block is unpacked once for all
// four. Every super-block of 256 weights is taken as four chunks of 64
// elements, two 32-element sub-blocks each, matching 64 consecutive
// activation levels: AVX2 holds a chunk in two YMM registers (one per
// sub-block), AVX-512 in one ZMM register. A chunk's levels (unsigned: 0..15,
// 0..31 or 0..63) times the activations go through VPMADDUBSW, which cannot
// saturate at these ranges, then VPMADDWD with the sub-block scale (or
// VPDPWSSD, which also adds), which leaves in dword t of each sub-block
// scale·(q·x summed over elements 4t..4t+3), the Go kernels' g[8j+t] times
// its scale. Summed over the sub-blocks, dword t is lane t of
// ggml_vec_dot_*_q8_K; the repacked Q4_K kernels instead need the sum over
// whole super-blocks (gemv) or chunks (gemm). The float steps then follow
// dot_k.go exactly.

type ktype int

const (
	q4K ktype = iota
	q5K
	q6K
)

func (t ktype) String() string  { return [...]string{"q4K", "q5K", "q6K"}[t] }
func (t ktype) blockBytes() int { return [...]int{144, 176, 210}[t] }

// kpath is the float order (cpu.path): Q5_K and Q6_K always use vecDot.
type kpath int

const (
	vecDot kpath = iota // ggml_vec_dot_*_q8_K: eight lanes
	gemv                // repacked q4_K, one activation row: one FMA per super-block
	gemm                // repacked q4_K, rows in fours: one FMA per 64 elements
)

// Tables shared by the kernels.
var tab struct {
	m0F, m10, m30 Mem // every byte 0x0f, 0x10, 0x30
	// scaleK4 holds eight 32-byte VPSHUFB masks: mask j makes every word the
	// zero-extended byte j (scale j of a Q4_K/Q5_K super-block). Masks 2c and
	// 2c+1 together are the 64-byte mask of chunk c.
	scaleK4 Mem
	// minsK4 makes the words min0, min0, min1, min1, …, min7, min7 from the
	// decoded mins in bytes 8..15, so that VPMADDWD with the bsums gives
	// min_j·(bsums[2j] + bsums[2j+1]) in dword j.
	minsK4 Mem
	// scaleQ6 (AVX2): for sub-block j, mask j mod 4 picks scale word 2j for
	// the lower 16 elements (lane 0) and 2j+1 for the upper (lane 1) out of a
	// register holding eight scale words in both lanes.
	scaleQ6 Mem
	// idxQ6 (AVX-512): VPERMW indices giving chunk c the scale words 4c,
	// 4c+1, 4c+2, 4c+3, eight times each (one per 16 elements).
	idxQ6 Mem
	// VPSRLVW/VPSLLVW counts: the lower 256 bits by a, the upper by b.
	sh04, sh01, sh42, sh02 Mem
}

func kquantData() {
	tab.m0F = data("kqMask0F", repeat(64, 0x0f))
	tab.m10 = data("kqMask10", repeat(64, 0x10))
	tab.m30 = data("kqMask30", repeat(64, 0x30))
	var sk []byte
	for j := range 8 {
		sk = append(sk, repeat(16, byte(j), 0x80)...)
	}
	tab.scaleK4 = data("kqScaleK4", sk)
	var mk []byte
	for j := range 8 {
		mk = append(mk, byte(8+j), 0x80, byte(8+j), 0x80)
	}
	tab.minsK4 = data("kqMinsK4", mk)
	var sq []byte
	for k := range 4 {
		sq = append(sq, repeat(8, byte(4*k), byte(4*k+1))...)
		sq = append(sq, repeat(8, byte(4*k+2), byte(4*k+3))...)
	}
	tab.scaleQ6 = data("kqScaleQ6", sq)
	var iq []uint16
	for c := range 4 {
		for k := range 4 {
			for range 8 {
				iq = append(iq, uint16(4*c+k))
			}
		}
	}
	tab.idxQ6 = data("kqIdxQ6", words(iq...))
	sh := func(name string, a, b uint16) Mem {
		w := make([]uint16, 32)
		for i := range w {
			w[i] = a
			if i >= 16 {
				w[i] = b
			}
		}
		return data(name, words(w...))
	}
	tab.sh04 = sh("kqShift04", 0, 4)
	tab.sh01 = sh("kqShift01", 0, 1)
	tab.sh42 = sh("kqShift42", 4, 2)
	tab.sh02 = sh("kqShift02", 0, 2)
}

func kquantKernels(s isa) {
	for _, p := range []kpath{vecDot, gemv, gemm} {
		(&kgen{isa: s, t: q4K, p: p, rows: 1}).gen()
	}
	for _, p := range []kpath{vecDot, gemm} {
		(&kgen{isa: s, t: q4K, p: p, rows: 4}).gen()
	}
	for _, t := range []ktype{q5K, q6K} {
		for _, rows := range []int{1, 4} {
			(&kgen{isa: s, t: t, p: vecDot, rows: rows}).gen()
		}
	}
	for _, p := range []kpath{vecDot, gemv} {
		(&kgen{isa: s, t: q4K, p: p, rows: 1, wrows: true}).gen()
	}
	for _, t := range []ktype{q5K, q6K} {
		(&kgen{isa: s, t: t, p: vecDot, rows: 1, wrows: true}).gen()
	}
}

// kgen generates one kernel.
type kgen struct {
	isa
	t    ktype
	p    kpath
	rows int // activation rows: 1 or 4
	// wrows: the kernel takes consecutive weight rows with one activation
	// row (rows.go).
	wrows bool

	w, nb, boff Register   // weight block pointer, blocks left, 256·block index
	q           []Register // per row: its activation levels
	d, bs       Register   // one row: its d and bsums (four rows load them when needed)

	// Constants: registers in the AVX-512 kernels (there are 32), memory
	// operands in the AVX2 ones.
	m0F, m10, m30, shA, shB Op
	chunkTab                [4]Op // Q4_K/Q5_K: chunk scale masks; Q6_K: VPERMW indices

	// scaleStack holds the eight sub-block scale vectors of the current
	// super-block in the AVX2 four-row kernels, which lack the registers to
	// keep them.
	scaleStack Mem
	onStack    bool

	rc rowsConsts // the rows kernels' tables
}

func (g *kgen) name() string {
	n := g.t.String()
	if g.t == q4K {
		n += [...]string{"VecDot", "Gemv", "Gemm"}[g.p]
	}
	if g.rows == 4 {
		n += "4"
	}
	if g.wrows {
		n += "Rows"
	}
	return n + g.isa.name
}

// vec allocates a register of the chunk width.
func (g *kgen) vec() VecVirtual {
	if g.z {
		return ZMM()
	}
	return YMM()
}

func (g *kgen) gen() {
	what := map[ktype]string{q4K: "Q4_K", q5K: "Q5_K", q6K: "Q6_K"}[g.t]
	order := map[kpath]string{
		vecDot: "ggml_vec_dot's eight lanes",
		gemv:   "the repacked gemv's order",
		gemm:   "the repacked gemm's order",
	}[g.p]
	switch {
	case g.wrows:
		TEXT(g.name(), NOSPLIT, "func(w *byte, rowBytes, rows int, q *int8, d *float32, bs *int16, nb int, out *float32)")
		Doc(fmt.Sprintf("%s sets out[r] to the %s dot product of nb super-blocks of %s weight row r", g.name(), g.isa.name, what),
			fmt.Sprintf("(at w + r·rowBytes) with a Q8_K activation row, for r < rows, in %s.", order))
	case g.rows == 1:
		TEXT(g.name(), NOSPLIT, "func(w *byte, q *int8, d *float32, bs *int16, nb int) float32")
		Doc(fmt.Sprintf("%s is the %s dot product of nb super-blocks of a %s weight row with a Q8_K", g.name(), g.isa.name, what),
			fmt.Sprintf("activation row (levels q, scales d, sums bs), in %s.", order))
	default:
		// The rows come as separate pointers rather than arrays of them: a
		// Go array would have to escape to the heap when the kernel is
		// called through a func value.
		TEXT(g.name(), NOSPLIT, "func(w *byte, q0, q1, q2, q3 *int8, d0, d1, d2, d3 *float32, bs0, bs1, bs2, bs3 *int16, nb int) (r0, r1, r2, r3 float32)")
		Doc(fmt.Sprintf("%s is the %s dot product of nb super-blocks of a %s weight row with four Q8_K", g.name(), g.isa.name, what),
			fmt.Sprintf("activation rows, each in %s.", order))
	}
	Pragma("noescape")
	if g.wrows && g.p == gemv {
		g.gemvRows()
		return
	}

	g.w = Load(Param("w"), GP64())
	if g.rows == 1 {
		g.q = []Register{Load(Param("q"), GP64())}
		g.d = Load(Param("d"), GP64())
		g.bs = Load(Param("bs"), GP64())
	} else {
		for r := range g.rows {
			g.q = append(g.q, Load(Param(fmt.Sprintf("q%d", r)), GP64()))
		}
	}
	g.nb = Load(Param("nb"), GP64())
	g.boff = GP64()
	g.constants()
	if g.onStack = !g.z && g.rows == 4; g.onStack {
		g.scaleStack = AllocLocal(8 * 32)
	}
	var rl *rowLoop
	if g.wrows {
		rl = g.rowLoopStart()
	}
	XORQ(g.boff, g.boff)
	f := g.accumulators()

	Label("block")
	if g.wrows {
		g.prefetch(Mem{Base: g.w, Disp: prefetchAhead})
	}
	g.block(f)
	ADDQ(U32(g.t.blockBytes()), g.w)
	ADDQ(U32(256), g.boff)
	DECQ(g.nb)
	JNZ(LabelRef("block"))

	res := g.results(f)
	if g.wrows {
		g.rowLoopEnd(rl, res[0])
		return
	}
	VZEROUPPER()
	for r, v := range res {
		Store(v, ReturnIndex(r))
	}
	RET()
}

func (g *kgen) constants() {
	g.m0F, g.m10, g.m30 = tab.m0F, tab.m10, tab.m30
	switch g.t {
	case q4K:
		g.shA = tab.sh04
	case q5K:
		g.shA, g.shB = tab.sh04, tab.sh01
	case q6K:
		g.shA, g.shB = tab.sh42, tab.sh02
	}
	for c := range g.chunkTab {
		if g.t == q6K {
			g.chunkTab[c] = tab.idxQ6.Offset(64 * c)
		} else {
			g.chunkTab[c] = tab.scaleK4.Offset(64 * c)
		}
	}
	if !g.z {
		return
	}
	reg := func(m Op) Op {
		if m == nil {
			return nil
		}
		z := ZMM()
		VMOVDQU64(m, z)
		return z
	}
	g.m0F = reg(g.m0F)
	switch g.t {
	case q5K:
		g.m10 = reg(g.m10)
	case q6K:
		g.m30 = reg(g.m30)
	}
	g.shA, g.shB = reg(g.shA), reg(g.shB)
	for c := range g.chunkTab {
		g.chunkTab[c] = reg(g.chunkTab[c])
	}
}

// faccs are the float accumulators, which live across super-blocks.
type faccs struct {
	lanes    []Register // vecDot: per row, eight lanes (YMM)
	lanesMin []Register // Q4_K vecDot: per row, ggml's four min lanes (YMM, each twice)
	// lanesMinMem keeps lanesMin on the stack instead in the AVX2 four-row
	// Q4_K kernel, whose chunk loop needs the sixteen registers otherwise.
	lanesMinMem Mem
	summs       Register // Q5_K: the min sum, lane r for row r (XMM)
	sum, sumMin Register // gemm: lane r for row r; gemv: sum and sumMin in lanes 0, 1 of sum (XMM)
}

func (g *kgen) accumulators() *faccs {
	f := &faccs{}
	x := func() Register {
		r := XMM()
		g.zero(r)
		return r
	}
	switch g.p {
	case gemv:
		f.sum = x()
		return f
	case gemm:
		f.sum, f.sumMin = x(), x()
		return f
	}
	spill := g.t == q4K && !g.z && g.rows == 4
	if spill {
		f.lanesMinMem = AllocLocal(32 * g.rows)
		z := YMM()
		g.zero(z)
		for r := range g.rows {
			VMOVUPS(z, f.lanesMinMem.Offset(32*r))
		}
	}
	for range g.rows {
		y := YMM()
		g.zero(y)
		f.lanes = append(f.lanes, y)
		if g.t == q4K && !spill {
			y := YMM()
			g.zero(y)
			f.lanesMin = append(f.lanesMin, y)
		}
	}
	if g.t == q5K {
		f.summs = x()
	}
	return f
}

// Memory operands of the current super-block.

func (g *kgen) wMem(off int) Mem { return Mem{Base: g.w, Disp: off} }

func (g *kgen) xMem(r, off int) Mem { return Mem{Base: g.q[r], Index: g.boff, Scale: 1, Disp: off} }

// dMem and bsMem address the current super-block's entries of row r's d
// and bsums. The offsets are derived from boff at each use rather than kept,
// which would take two more of the few general registers.
func (g *kgen) dMem(r int) Mem  { return g.rowMem(g.d, "d", r, 6) }
func (g *kgen) bsMem(r int) Mem { return g.rowMem(g.bs, "bs", r, 3) }

// rowMem addresses row r's entry of array p (parameter name), at
// boff>>shift.
func (g *kgen) rowMem(p Register, name string, r int, shift int) Mem {
	off := GP64()
	MOVQ(g.boff, off)
	SHRQ(U8(shift), off)
	if g.rows == 4 {
		p = Load(Param(fmt.Sprintf("%s%d", name, r)), GP64())
	}
	return Mem{Base: p, Index: off, Scale: 1}
}

// block holds what the kernel derives once per super-block.
type block struct {
	dwB, dminB Register // YMM: the fp16 d and dmin as float32, in every lane
	wm         Register // Q4_K/Q5_K: minsK4 applied to ssrc
	ssrc       Register // Q4_K/Q5_K: bytes scale0..7, min0..7 in every 128-bit lane
	qh         Register // Q5_K: the fifth bits (AVX-512: upper half pre-shifted by 1)
	sc         Register // Q6_K: the sixteen scales as words (YMM)
	scLo, scHi Register // Q6_K AVX2: scale words 0..7, 8..15 in both lanes

	dx, d, dm Register // XMM: lane r for row r: d_x, d_x·d, d_x·dmin
}

func (g *kgen) block(f *faccs) {
	b := &block{}
	g.prologue(b)
	if g.onStack {
		for j := range 8 {
			v := g.scale(b, j/2, j%2)
			VMOVDQU(v, g.scaleStack.Offset(32*j))
		}
	}

	switch {
	case g.p == gemm && g.rows == 4:
		// Per chunk, the four rows' integer sums in the lanes of one XMM
		// and one FMA into lane r of sum; then the min sums likewise.
		g.factors(b)
		for c := range 4 {
			wv, sv := g.weights(b, c), g.scales(b, c)
			var accs [4]Register
			for r := range accs {
				accs[r] = g.vec()
				g.mac(accs[r], wv, sv, r, c, true)
			}
			s := g.reduce4(accs)
			VCVTDQ2PS(s, s)
			VFMADD231PS(b.d, s, f.sum)
		}
		g.minsQ4Gemm4(b, f)
	case g.p == gemm:
		// One row: the four chunk sums, then one scalar FMA per chunk in
		// chunk order, for the scaled sums and for the min sums.
		var accs [4]Register
		for c := range accs {
			wv, sv := g.weights(b, c), g.scales(b, c)
			accs[c] = g.vec()
			g.mac(accs[c], wv, sv, 0, c, true)
		}
		s := g.reduce4(accs)
		VCVTDQ2PS(s, s)
		g.factors(b)
		for c := range 4 {
			VFMADD231SS(b.d, lane(s, c), f.sum)
		}
		m := g.pairs(g.minProducts(b, 0))
		VCVTDQ2PS(m, m)
		for c := range 4 {
			VFMADD231SS(b.dm, lane(m, c), f.sumMin)
		}
	case g.p == gemv:
		g.gemvBlock(b, f)
	default:
		// vecDot: per row, the eight lanes summed over the super-block.
		accs := make([]Register, g.rows)
		for c := range 4 {
			wv, sv := g.weights(b, c), g.scales(b, c)
			for r := range accs {
				if c == 0 {
					accs[r] = g.vec()
				}
				g.mac(accs[r], wv, sv, r, c, c == 0)
			}
		}
		dms := make([]Register, g.rows)
		for r, acc := range accs {
			v := g.fold(acc)
			if g.t == q6K {
				// Levels are unsigned: take 32·scale·bsum off each lane.
				c := YMM()
				VPMADDWD(g.bsMem(r), b.sc, c)
				VPSLLD(U8(5), c, c)
				VPSUBD(c, v, v)
			}
			VCVTDQ2PS(v, v)
			var d Register
			d, dms[r] = g.rowFactors(b, r)
			VFMADD231PS(d, v, f.lanes[r])
		}
		g.mins(b, f, dms)
	}
}

// prologue decodes the super-block header but for d and dmin (halves).
func (g *kgen) prologue(b *block) {
	if g.t == q6K {
		b.sc = YMM()
		VPMOVSXBW(g.wMem(192), b.sc)
		if !g.z {
			b.scLo, b.scHi = YMM(), YMM()
			VPERMQ(U8(0x44), b.sc, b.scLo)
			VPERMQ(U8(0xee), b.sc, b.scHi)
		}
		return
	}
	b.ssrc = g.kscales()
	if g.t == q5K {
		if g.z {
			b.qh = ZMM()
			VBROADCASTI64X4(g.wMem(16), b.qh)
			VPSRLVW(g.shB, b.qh, b.qh)
		} else {
			b.qh = YMM()
			VMOVDQU(g.wMem(16), b.qh)
		}
	}
}

// kscales unpacks the twelve scale bytes of a Q4_K/Q5_K super-block into
// scale0..7 and min0..7 (get_scale_min_k4, as ggml's AVX2 kernels do it with
// 32-bit masks) and returns them in every 128-bit lane of a YMM (ZMM).
func (g *kgen) kscales() Register {
	u0, u1, u2, s, t := GP64(), GP64(), GP64(), GP64(), GP64()
	MOVL(g.wMem(4), u0.As32())
	MOVL(g.wMem(8), u1.As32())
	MOVL(g.wMem(12), u2.As32())
	// Scales 4..7: low nibbles of bytes 8..11, bits 4-5 from bits 6-7 of bytes 0..3.
	MOVL(u0.As32(), t.As32())
	SHRL(U8(6), t.As32())
	ANDL(U32(0x03030303), t.As32())
	SHLL(U8(4), t.As32())
	MOVL(u2.As32(), s.As32())
	ANDL(U32(0x0f0f0f0f), s.As32())
	ORL(t.As32(), s.As32())
	ANDL(U32(0x3f3f3f3f), u0.As32())
	SHLQ(U8(32), s)
	ORQ(u0, s)
	// Mins 4..7: high nibbles of bytes 8..11, bits 4-5 from bits 6-7 of bytes 4..7.
	MOVL(u1.As32(), t.As32())
	SHRL(U8(6), t.As32())
	ANDL(U32(0x03030303), t.As32())
	SHLL(U8(4), t.As32())
	SHRL(U8(4), u2.As32())
	ANDL(U32(0x0f0f0f0f), u2.As32())
	ORL(t.As32(), u2.As32())
	ANDL(U32(0x3f3f3f3f), u1.As32())
	SHLQ(U8(32), u2)
	ORQ(u1, u2)
	xs, xm := XMM(), XMM()
	VMOVQ(s, xs)
	VMOVQ(u2, xm)
	VPUNPCKLQDQ(xm, xs, xs)
	if g.z {
		z := ZMM()
		VSHUFI64X2(U8(0), xs.(Vec).AsZ(), xs.(Vec).AsZ(), z)
		return z
	}
	y := YMM()
	VINSERTI128(U8(1), xs, xs.(Vec).AsY(), y)
	return y
}

// weights unpacks chunk c of the super-block's levels: two YMM (AVX2) or one
// ZMM (AVX-512) of unsigned bytes in element order.
func (g *kgen) weights(b *block, c int) []Register {
	if g.z {
		v := ZMM()
		switch g.t {
		case q4K:
			VBROADCASTI64X4(g.wMem(16+32*c), v)
			VPSRLVW(g.shA, v, v)
			VPANDD(g.m0F, v, v)
		case q5K:
			VBROADCASTI64X4(g.wMem(48+32*c), v)
			VPSRLVW(g.shA, v, v)
			h := ZMM()
			VPANDD(g.m10, shiftBytes(b.qh, h, 2*c, 4), h)
			VPTERNLOGD(U8(0xec), g.m0F, h, v) // v = v&0x0f | h
		case q6K:
			// Chunk c: sub-blocks 2c, 2c+1 are the low (c even) or high
			// nibbles of ql[64h:64h+64], with 2-bit fields of qh[32h:32h+32].
			h := c / 2
			VMOVDQU64(g.wMem(64*h), v)
			hb := ZMM()
			VBROADCASTI64X4(g.wMem(128+32*h), hb)
			if c%2 == 0 {
				VPSLLVW(g.shA, hb, hb) // fields 0 and 1 to bits 4-5
			} else {
				VPSRLW(U8(4), v, v)
				VPSRLVW(g.shB, hb, hb) // fields 2 and 3 to bits 4-5
			}
			VPANDD(g.m30, hb, hb)
			VPTERNLOGD(U8(0xec), g.m0F, hb, v)
		}
		return []Register{v}
	}
	lo, hi := YMM(), YMM()
	switch g.t {
	case q4K, q5K:
		raw := YMM()
		off := 16
		if g.t == q5K {
			off = 48
		}
		VMOVDQU(g.wMem(off+32*c), raw)
		VPAND(g.m0F, raw, lo)
		VPSRLW(U8(4), raw, hi)
		VPAND(g.m0F, hi, hi)
		if g.t == q5K {
			for k, v := range []Register{lo, hi} {
				h := YMM()
				VPAND(g.m10, shiftBytes(b.qh, h, 2*c+k, 4), h)
				VPOR(h, v, v)
			}
		}
	case q6K:
		h := c / 2
		qh := YMM()
		VMOVDQU(g.wMem(128+32*h), qh)
		for k, v := range []Register{lo, hi} {
			VMOVDQU(g.wMem(64*h+32*k), v)
			if c%2 == 1 {
				VPSRLW(U8(4), v, v)
			}
			VPAND(g.m0F, v, v)
			t := YMM()
			VPAND(g.m30, shiftBytes(qh, t, 2*(2*(c%2)+k), 4), t)
			VPOR(t, v, v)
		}
	}
	return []Register{lo, hi}
}

// scale returns the scale words of chunk c (AVX2: of its sub-block 2c+k).
func (g *kgen) scale(b *block, c, k int) Op {
	v := g.vec()
	switch {
	case g.z && g.t == q6K:
		VPERMW(b.sc.(Vec).AsZ(), g.chunkTab[c], v)
	case g.z:
		VPSHUFB(g.chunkTab[c], b.ssrc, v)
	case g.t == q6K:
		j := 2*c + k
		src := b.scLo
		if j >= 4 {
			src = b.scHi
		}
		VPSHUFB(tab.scaleQ6.Offset(32*(j%4)), src, v)
	default:
		VPSHUFB(tab.scaleK4.Offset(32*(2*c+k)), b.ssrc, v)
	}
	return v
}

// scales returns the scale words of chunk c, one operand per register of
// the chunk.
func (g *kgen) scales(b *block, c int) []Op {
	switch {
	case g.z:
		return []Op{g.scale(b, c, 0)}
	case g.onStack:
		return []Op{g.scaleStack.Offset(64 * c), g.scaleStack.Offset(64*c + 32)}
	}
	return []Op{g.scale(b, c, 0), g.scale(b, c, 1)}
}

// mac adds the scaled products of chunk c (levels wv, scales sv) with row r
// to acc, or sets acc when first.
func (g *kgen) mac(acc Register, wv []Register, sv []Op, r, c int, first bool) {
	if g.z {
		s := sv[0]
		p := ZMM()
		VPMADDUBSW(g.xMem(r, 64*c), wv[0], p)
		switch {
		case first:
			VPMADDWD(s, p, acc)
		case g.vnni:
			VPDPWSSD(s, p, acc)
		default:
			VPMADDWD(s, p, p)
			VPADDD(p, acc, acc)
		}
		return
	}
	for k, v := range wv {
		s := sv[k]
		p := YMM()
		VPMADDUBSW(g.xMem(r, 64*c+32*k), v, p)
		if first && k == 0 {
			VPMADDWD(s, p, acc)
			continue
		}
		VPMADDWD(s, p, p)
		VPADDD(p, acc, acc)
	}
}

// fold adds the two sub-block halves of an AVX-512 accumulator, leaving the
// eight lanes.
func (g *kgen) fold(acc Register) Register {
	if !g.z {
		return acc
	}
	y := YMM()
	VEXTRACTI64X4(U8(1), acc, y)
	VPADDD(y, acc.(Vec).AsY(), y)
	return y
}

// halves converts the super-block's d and dmin, broadcast: a broadcast load
// of both fp16 values, one conversion and in-lane permutes, cheaper than
// broadcasting converted scalars.
func (g *kgen) halves(b *block) {
	if b.dwB != nil {
		return
	}
	x, y := XMM(), YMM()
	b.dwB = y
	if g.t == q6K {
		VPBROADCASTW(g.wMem(208), x)
		VCVTPH2PS(x, y)
		return
	}
	VPBROADCASTD(g.wMem(0), x) // d, dmin, d, dmin, …
	VCVTPH2PS(x, y)
	b.dwB, b.dminB = YMM(), YMM()
	VPERMILPS(U8(0x00), y, b.dwB)
	VPERMILPS(U8(0x55), y, b.dminB)
}

// rowFactors returns row r's d_x·d and d_x·dmin (nil for Q6_K) in every
// lane of a YMM: float32 products, as Go rounds them.
func (g *kgen) rowFactors(b *block, r int) (d, dm Register) {
	g.halves(b)
	dx := YMM()
	VBROADCASTSS(g.dMem(r), dx)
	d = YMM()
	VMULPS(b.dwB, dx, d)
	if b.dminB != nil {
		dm = YMM()
		VMULPS(b.dminB, dx, dm)
	}
	return d, dm
}

// factors computes d_x·d and d_x·dmin with lane r for row r.
func (g *kgen) factors(b *block) {
	if b.d != nil {
		return
	}
	g.halves(b)
	b.dx = XMM()
	for r := range g.rows {
		m := g.dMem(r)
		if r == 0 {
			VMOVSS(m, b.dx)
		} else {
			VINSERTPS(U8(r<<4), m, b.dx, b.dx)
		}
	}
	b.d = XMM()
	VMULPS(b.dwB.(Vec).AsX(), b.dx, b.d)
	if b.dminB != nil {
		b.dm = XMM()
		VMULPS(b.dminB.(Vec).AsX(), b.dx, b.dm)
	}
}

// minProducts returns dword j = min_j·(bsums[2j] + bsums[2j+1]) of row r
// (exact in int32 for any bsums).
func (g *kgen) minProducts(b *block, r int) Register {
	if b.wm == nil {
		b.wm = YMM()
		VPSHUFB(tab.minsK4, b.ssrc.(Vec).AsY(), b.wm)
	}
	p := YMM()
	VPMADDWD(g.bsMem(r), b.wm, p)
	return p
}

// gemvBlock adds one super-block along Q4_K's gemv: one FMA for the total
// of the scaled sums into sum, one for the total of the min sums into
// sumMin. Both totals come out of one reduction as [si, mi, si, mi], and
// one FMA with d_x·[d, dmin, d, dmin] adds them to lanes 0 and 1 of f.sum,
// which hold sum and sumMin.
func (g *kgen) gemvBlock(b *block, f *faccs) {
	var acc Register
	for c := range 4 {
		wv, sv := g.weights(b, c), g.scales(b, c)
		if c == 0 {
			acc = g.vec()
		}
		g.mac(acc, wv, sv, 0, c, c == 0)
	}
	half := func(y Register) Register {
		x := XMM()
		g.hi128(y, x)
		VPADDD(x, y.(Vec).AsX(), x)
		return x
	}
	s, m := half(g.fold(acc)), half(g.minProducts(b, 0))
	t, u := XMM(), XMM()
	VPUNPCKLDQ(m, s, t) // s0 m0 s1 m1
	VPUNPCKHDQ(m, s, u) // s2 m2 s3 m3
	VPADDD(u, t, t)
	VPSHUFD(U8(0x4e), t, u)
	VPADDD(u, t, t)
	VCVTDQ2PS(t, t)
	d, dx := XMM(), XMM()
	VPBROADCASTD(g.wMem(0), d)
	VCVTPH2PS(d, d)
	VBROADCASTSS(g.dMem(0), dx)
	VMULPS(dx, d, d)
	VFMADD231PS(d, t, f.sum)
}

// mins adds the min terms of the vecDot path; dms holds each row's
// d_x·dmin broadcast.
func (g *kgen) mins(b *block, f *faccs, dms []Register) {
	switch {
	case g.t == q6K:
	case g.t == q4K:
		// Lane u of ggml's min accumulator gets the mins of sub-blocks
		// 2u and 2u+1, times −d_x·dmin. It is kept twice, in lanes 2u
		// and 2u+1 of a YMM, which spares packing the four sums.
		for r, dm := range dms {
			m, t := g.minProducts(b, r), YMM()
			VPSHUFD(U8(0xb1), m, t)
			VPADDD(t, m, m)
			VCVTDQ2PS(m, m)
			if f.lanesMin == nil {
				l := YMM()
				VMOVUPS(f.lanesMinMem.Offset(32*r), l)
				VFNMADD231PS(dm, m, l)
				VMOVUPS(l, f.lanesMinMem.Offset(32*r))
				continue
			}
			VFNMADD231PS(dm, m, f.lanesMin[r])
		}
	case g.rows == 1:
		m := g.hsumF(g.minProducts(b, 0))
		VFNMADD231SS(dms[0].(Vec).AsX(), m, f.summs)
	default:
		var ps [4]Register
		for r := range ps {
			ps[r] = g.minProducts(b, r)
		}
		m := g.reduce4(ps)
		VCVTDQ2PS(m, m)
		g.factors(b)
		VFNMADD231PS(b.dm, m, f.summs)
	}
}

// minsQ4Gemm4 adds the gemm min terms of four rows: per chunk c, lane r
// gets row r's mins of sub-blocks 2c and 2c+1. After the pair sums, dword
// 2c mod 4 of 128-bit lane c/2 holds chunk c's; two rounds of unpacking
// gather them as [chunk 0 | chunk 2] and [chunk 1 | chunk 3] over the rows.
func (g *kgen) minsQ4Gemm4(b *block, f *faccs) {
	var m [4]Register
	for r := range m {
		m[r] = g.minProducts(b, r)
		t := YMM()
		VPSHUFD(U8(0xb1), m[r], t)
		VPADDD(t, m[r], m[r])
	}
	lo01, hi01, lo23, hi23 := YMM(), YMM(), YMM(), YMM()
	VPUNPCKLDQ(m[1], m[0], lo01) // lane 0: row 0, row 1 of chunk 0; lane 1: chunk 2
	VPUNPCKHDQ(m[1], m[0], hi01) // chunks 1 and 3
	VPUNPCKLDQ(m[3], m[2], lo23)
	VPUNPCKHDQ(m[3], m[2], hi23)
	even, odd := YMM(), YMM()
	VPUNPCKLQDQ(lo23, lo01, even)
	VPUNPCKLQDQ(hi23, hi01, odd)
	VCVTDQ2PS(even, even)
	VCVTDQ2PS(odd, odd)
	c2, c3 := XMM(), XMM()
	g.hi128(even, c2)
	g.hi128(odd, c3)
	for _, t := range []Register{even.AsX(), odd.AsX(), c2, c3} {
		VFMADD231PS(b.dm, t, f.sumMin)
	}
}

// results folds the accumulators into the results, one per row in lane 0
// of an XMM.
func (g *kgen) results(f *faccs) []Register {
	res := make([]Register, g.rows)
	if g.p == vecDot {
		for r := range res {
			res[r] = g.hsum8(f.lanes[r])
			switch g.t {
			case q4K:
				var l Register
				if f.lanesMin == nil {
					l = YMM()
					VMOVUPS(f.lanesMinMem.Offset(32*r), l)
				} else {
					l = f.lanesMin[r]
				}
				// Lanes 0, 2, 4, 6 hold the four min lanes.
				h, m := XMM(), XMM()
				g.hi128(l, h)
				VSHUFPS(U8(0x88), h, l.(Vec).AsX(), m)
				VADDSS(g.hsum4(m), res[r], res[r])
			case q5K:
				VADDSS(lane(f.summs, r), res[r], res[r])
			}
		}
	} else {
		res[0] = XMM()
		sumMin := f.sumMin
		if g.p == gemv {
			sumMin = XMM()
			VMOVSHDUP(f.sum, sumMin)
		}
		VSUBPS(sumMin, f.sum, res[0])
	}
	if g.p != vecDot && g.rows == 4 {
		for r := 1; r < 4; r++ {
			res[r] = lane(res[0], r)
		}
	}
	return res
}

// Horizontal sums.

// hsum8 is hsum8 of simd.go on a YMM: upper half onto lower, then hsum4.
func (g *kgen) hsum8(y Register) Register {
	h, s := XMM(), XMM()
	g.hi128(y, h)
	VADDPS(h, y.(Vec).AsX(), s)
	return g.hsum4(s)
}

// hsum4 is hsum4 of simd.go: (a0+a2) + (a1+a3), in lane 0.
func (g *kgen) hsum4(x Register) Register {
	h, s := XMM(), XMM()
	VMOVHLPS(x, x, h)
	VADDPS(h, x, s)
	VMOVSHDUP(s, h)
	VADDSS(h, s, s)
	return s
}

// hsumF sums the eight dwords of y and converts the sum to float32 in lane
// 0.
func (g *kgen) hsumF(y Register) Register {
	s, t := XMM(), XMM()
	g.hi128(y, t)
	VPADDD(t, y.(Vec).AsX(), s)
	VPSHUFD(U8(0x4e), s, t)
	VPADDD(t, s, s)
	VPSHUFD(U8(0xb1), s, t)
	VPADDD(t, s, s)
	VCVTDQ2PS(s, s)
	return s
}

// pairs returns [y0+y1, y2+y3, y4+y5, y6+y7] of the eight dwords of y.
func (g *kgen) pairs(y Register) Register {
	p := XMM()
	if g.z {
		t := YMM()
		VPSHUFD(U8(0xb1), y, t)
		VPADDD(t, y, t)
		VPMOVQD(t, p)
		return p
	}
	h := XMM()
	VEXTRACTI128(U8(1), y, h)
	VPHADDD(h, y.(Vec).AsX(), p)
	return p
}

// reduce4 returns the dword sums of four vectors (YMM or ZMM) in the lanes
// of an XMM.
func (g *kgen) reduce4(a [4]Register) Register {
	wide := func() Register {
		if a[0].Size() == 64 {
			return ZMM()
		}
		return YMM()
	}
	half := func(x, y Register) Register {
		l, h := wide(), wide()
		VPUNPCKLDQ(y, x, l)
		VPUNPCKHDQ(y, x, h)
		VPADDD(h, l, l)
		return l
	}
	t0, t1 := half(a[0], a[1]), half(a[2], a[3])
	l, h := wide(), wide()
	VPUNPCKLQDQ(t1, t0, l)
	VPUNPCKHQDQ(t1, t0, h)
	VPADDD(h, l, l)
	y := l
	if l.Size() == 64 {
		y = YMM()
		VEXTRACTI64X4(U8(1), l, y)
		VPADDD(y, l.(Vec).AsY(), y)
	}
	x, t := XMM(), XMM()
	g.hi128(y, t)
	VPADDD(t, y.(Vec).AsX(), x)
	return x
}

// lane returns an XMM whose lane 0 is lane i of x.
func lane(x Register, i int) Register {
	if i == 0 {
		return x
	}
	t := XMM()
	VPERMILPS(U8(i), x, t)
	return t
}
