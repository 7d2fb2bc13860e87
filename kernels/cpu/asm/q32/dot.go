package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// kernel holds what the code of one dot-product kernel is built from.
type kernel struct {
	f  format
	is isa
	w  GPVirtual // the weight block
	k  GPVirtual // 4·(block − nb): indexes the activation arrays, moved past their end
	x  []GPVirtual
	d  []GPVirtual
	s  []GPVirtual
	o  VecVirtual // the _0 offset in every byte
}

// levels is a weight block unpacked for multiplication: u holds the 32
// levels as unsigned bytes (the stored 4/5-bit values, without the _0
// offset); for Q8_0, u holds |q| and q the signed levels, whose signs go onto
// the activations.
type levels struct{ u, q VecVirtual }

func (g *kernel) xMem(i int) Mem { return Mem{Base: g.x[i], Index: g.k, Scale: 8} }
func (g *kernel) dMem(i int) Mem { return Mem{Base: g.d[i], Index: g.k, Scale: 1} }
func (g *kernel) sMem(i int) Mem { return Mem{Base: g.s[i], Index: g.k, Scale: 1} }
func (g *kernel) wMem(off int) Mem {
	return Mem{Base: g.w, Disp: off}
}

// unpack loads the weight levels of the current block.
func (g *kernel) unpack() levels { return g.unpackAt(g.wMem(0)) }

// unpackAt loads the weight levels of the block at blk.
func (g *kernel) unpackAt(blk Mem) levels {
	f := g.f
	if f.bits == 8 {
		q, u := YMM(), YMM()
		VMOVDQU(blk.Offset(f.qs), q)
		VPABSB(q, u)
		return levels{u: u, q: q}
	}
	// Element j < 16 is the low nibble of byte j, element j+16 its high
	// nibble: both halves get the 16 bytes, the upper one shifted by 4.
	u := YMM()
	VBROADCASTI128(blk.Offset(f.qs), u)
	VPSRLVD(nibbleSh, u, u)
	VPAND(nibbleMask, u, u)
	if f.bits == 5 {
		if g.is.vnni {
			// Mask bit j is the fifth bit of element j.
			k := K()
			KMOVD(blk.Offset(f.qh), k)
			VPADDB(offsets[16], u, k, u)
		} else {
			// ggml's bytes_from_bits_32: byte j gets byte j/8 of the mask,
			// is or'ed with all bits but j%8, and so becomes 0xff exactly
			// when bit j is set.
			h := YMM()
			VPBROADCASTD(blk.Offset(f.qh), h)
			VPSHUFB(bitShuf, h, h)
			VPOR(bitSel, h, h)
			VPCMPEQB(allBits, h, h)
			VPAND(offsets[16], h, h)
			VPOR(h, u, u)
		}
	}
	return levels{u: u}
}

// xblock is an activation block as lanes reads it: its address and what
// every weight block multiplied with it shares, loaded once: for Q8_0 the
// levels, in a register for VPSIGNB; for the _0 types with an offset, the
// product of the offset with the levels (int16 pair sums for AVX2, int32
// lanes for VNNI).
type xblock struct {
	m    Mem
	r, c VecVirtual
}

// loadX prepares the activation block at xm for lanes.
func (g *kernel) loadX(xm Mem) xblock {
	x := xblock{m: xm}
	switch {
	case g.f.bits == 8:
		x.r = YMM()
		VMOVDQU(xm, x.r)
	case g.f.offset != 0:
		// Σ(u−o)·x = Σu·x − Σo·x, both exact for every signed x; the
		// AVX2 pair sums stay within ±2·31·128, so int16 holds them.
		x.c = YMM()
		if g.is.vnni {
			VPXOR(x.c, x.c, x.c)
			VPDPBUSD(xm, g.o, x.c)
		} else {
			VPMADDUBSW(xm, g.o, x.c)
		}
	}
	return x
}

// lanes returns the eight int32 lane sums of the weight levels times the
// activation block x: lane t = Σ w_j·x_j over j = 4t..4t+3.
func (g *kernel) lanes(lv levels, x xblock) VecVirtual {
	f, vnni := g.f, g.is.vnni
	l := YMM()
	switch {
	case f.bits == 8:
		// |w|·(x·sign w) = w·x; x is never −128 (quantizeAct32 gives levels
		// in [−127, 127] for finite input), so the sign flip is exact.
		sx := YMM()
		VPSIGNB(lv.q, x.r, sx)
		if vnni {
			VPXOR(l, l, l)
			VPDPBUSD(sx, lv.u, l)
		} else {
			VPMADDUBSW(sx, lv.u, l)
			VPMADDWD(ones16, l, l)
		}
	case f.offset != 0:
		if vnni {
			VPXOR(l, l, l)
			VPDPBUSD(x.m, lv.u, l)
			VPSUBD(x.c, l, l)
		} else {
			VPMADDUBSW(x.m, lv.u, l)
			VPSUBW(x.c, l, l)
			VPMADDWD(ones16, l, l)
		}
	default:
		if vnni {
			VPXOR(l, l, l)
			VPDPBUSD(x.m, lv.u, l)
		} else {
			VPMADDUBSW(x.m, lv.u, l)
			VPMADDWD(ones16, l, l)
		}
	}
	return l
}

// hsum8 folds the eight lanes of acc as package cpu's hsum8 does and returns
// the sum in lane 0 of an XMM register.
func hsum8(acc Register) VecVirtual {
	lo, hi, t := XMM(), XMM(), XMM()
	VEXTRACTF128(U8(1), acc, hi)
	VADDPS(hi, acc.(VecVirtual).AsX(), lo) // lanes t and t+4
	VMOVHLPS(lo, lo, t)
	VADDPS(t, lo, lo) // lanes 0+2 and 1+3
	VMOVSHDUP(lo, t)
	VADDSS(t, lo, lo)
	return lo
}

// hsumInt adds the eight int32 lanes of l into lane 0 of an XMM register.
func hsumInt(l VecVirtual) VecVirtual {
	s, t := XMM(), XMM()
	VEXTRACTI128(U8(1), l, s)
	VPADDD(l.AsX(), s, s)
	VPSHUFD(U8(0x4e), s, t)
	VPADDD(t, s, s)
	VPSHUFD(U8(0x55), s, t)
	VPADDD(t, s, s)
	return s
}

// result is the address of result i (avo's Store would write it with the SSE
// MOVSS, which mixed with VEX code can cost a state transition).
func result(i int) Mem {
	b, err := ReturnIndex(i).Resolve()
	if err != nil {
		fatal(err)
	}
	return b.Addr
}

// dotKernel generates the product of one weight row with nact (1 or 4)
// activation rows, in eight lanes or, if one, in one lane.
func dotKernel(f format, is isa, nact int, one bool) {
	name := "dot"
	if one {
		name += "One"
	}
	if nact == 4 {
		name += "4"
	}
	name += f.name + is.name
	if nact == 1 {
		TEXT(name, NOSPLIT, "func(w *byte, x *int8, d, s *float32, nb int) float32")
	} else {
		TEXT(name, NOSPLIT, "func(w *byte, x0, x1, x2, x3 *int8, d0, d1, d2, d3, s0, s1, s2, s3 *float32, nb int) (r0, r1, r2, r3 float32)")
	}
	order := "eight lanes (ggml_vec_dot, tinyBLAS_Q0_AVX)"
	if one {
		order = "one lane (the repacked Q4_0 gemv and gemm)"
	}
	what := "one weight row of nb " + f.name + " blocks at w with the Q8_0/Q8_1 activation row x, d, s"
	if nact == 4 {
		what = "one weight row of nb " + f.name + " blocks at w with four Q8_0/Q8_1 activation rows"
	}
	Doc(fmt.Sprintf("%s multiplies %s, adding in %s; %s.", name, what, order, is.name))

	g := &kernel{f: f, is: is}
	g.w = Load(Param("w"), GP64()).(GPVirtual)
	nb := Load(Param("nb"), GP64())
	g.k = GP64()
	MOVQ(nb, g.k)
	SHLQ(U8(2), g.k)
	param := func(base string, i int) string {
		if nact == 1 {
			return base
		}
		return fmt.Sprintf("%s%d", base, i)
	}
	// Block b of activation row i has its levels at x_i+32b and its scale
	// (and sum) at d_i+4b (s_i+4b): with k = 4b − 4nb the bases move to the
	// end and k, counting up to zero, indexes them.
	for i := range nact {
		x := Load(Param(param("x", i)), GP64()).(GPVirtual)
		LEAQ(Mem{Base: x, Index: g.k, Scale: 8}, x)
		g.x = append(g.x, x)
		d := Load(Param(param("d", i)), GP64()).(GPVirtual)
		ADDQ(g.k, d)
		g.d = append(g.d, d)
		if f.min {
			s := Load(Param(param("s", i)), GP64()).(GPVirtual)
			ADDQ(g.k, s)
			g.s = append(g.s, s)
		}
	}
	if f.offset != 0 {
		g.o = YMM()
		VMOVDQU(offsets[f.offset], g.o)
	}
	switch {
	case one && nact == 1:
		g.oneLane1()
	case one:
		g.oneLane4()
	case nact == 1:
		g.lanes8x1()
	default:
		g.lanes8x4()
	}
	VZEROUPPER()
	RET()
}

// loop emits the loop over the blocks around body; it expects k = 4·nb.
func (g *kernel) loop(body func()) {
	NEGQ(g.k)
	JZ(LabelRef("done"))
	Label("block")
	body()
	ADDQ(U32(g.f.size), g.w)
	ADDQ(U8(4), g.k)
	JNZ(LabelRef("block"))
	Label("done")
}

// lanes8x1 is the eight-lane product with one activation row: each block
// one FMA per lane after float32(d_w·d_x), the min terms of the _1 types in
// a separate FMA chain, then hsum8 and their sum.
func (g *kernel) lanes8x1() {
	acc, summs := YMM(), XMM()
	VXORPS(acc, acc, acc)
	VXORPS(summs, summs, summs)
	g.loop(func() {
		lv := g.unpack()
		lf := g.lanes(lv, g.loadX(g.xMem(0)))
		VCVTDQ2PS(lf, lf)
		// d_w in lane 0 and, for the _1 types, m in lane 1.
		dm, d := XMM(), YMM()
		VCVTPH2PS(g.wMem(0), dm)
		VMULSS(g.dMem(0), dm, d.AsX())
		VBROADCASTSS(d.AsX(), d)
		VFMADD231PS(lf, d, acc)
		if g.f.min {
			VMOVSHDUP(dm, dm)
			VFMADD231SS(g.sMem(0), dm, summs)
		}
	})
	r := hsum8(acc)
	if g.f.min {
		VADDSS(summs, r, r)
	}
	VMOVSS(r, result(0))
}

// lanes8x4 is lanes8x1 for four activation rows, each weight block unpacked
// once.
func (g *kernel) lanes8x4() {
	var acc, summs [4]VecVirtual
	for i := range acc {
		acc[i], summs[i] = YMM(), XMM()
		VXORPS(acc[i], acc[i], acc[i])
		VXORPS(summs[i], summs[i], summs[i])
	}
	g.loop(func() {
		lv := g.unpack()
		dm, dw := XMM(), YMM()
		VCVTPH2PS(g.wMem(0), dm)
		VBROADCASTSS(dm, dw)
		for i := range acc {
			lf := g.lanes(lv, g.loadX(g.xMem(i)))
			VCVTDQ2PS(lf, lf)
			d := YMM()
			if g.is.vnni {
				VMULPS_BCST(g.dMem(i), dw, d)
			} else {
				VBROADCASTSS(g.dMem(i), d)
				VMULPS(d, dw, d)
			}
			VFMADD231PS(lf, d, acc[i])
		}
		if g.f.min {
			VMOVSHDUP(dm, dm)
			for i := range summs {
				VFMADD231SS(g.sMem(i), dm, summs[i])
			}
		}
	})
	for i := range acc {
		r := hsum8(acc[i])
		if g.f.min {
			VADDSS(summs[i], r, r)
		}
		VMOVSS(r, result(i))
	}
}

// gather4 returns the four rows' values at mem(0..3) in lanes 0..3.
func (g *kernel) gather4(mem func(i int) Mem) VecVirtual {
	v := XMM()
	VMOVSS(mem(0), v)
	for i := 1; i < 4; i++ {
		VINSERTPS(U8(i<<4), mem(i), v, v)
	}
	return v
}

// oneLane1 is the repacked kernels' order for one activation row: per block
// one FMA of the block's integer sum. The FMA chain allows one block per
// FMA latency; the integer reduction, the dearest part, is shared by two
// blocks at a time.
func (g *kernel) oneLane1() {
	sum := XMM()
	VXORPS(sum, sum, sum)
	// k+8 ≤ 0 while two blocks remain; the pair's blocks sit at k−8 and k−4.
	NEGQ(g.k)
	JZ(LabelRef("done"))
	ADDQ(U8(8), g.k)
	JG(LabelRef("single"))
	Label("pair")
	var l [2]VecVirtual
	for j := range l {
		lv := g.unpackAt(g.wMem(j * g.f.size))
		l[j] = g.lanes(lv, g.loadX(g.xMem(0).Offset(32*j-64)))
	}
	VPHADDD(l[1], l[0], l[0])
	s := XMM()
	VEXTRACTI128(U8(1), l[0], s)
	VPADDD(l[0].AsX(), s, s)
	VPHADDD(s, s, s) // block sums in lanes 0 and 1
	VCVTDQ2PS(s, s)
	for j := range 2 {
		d := XMM()
		VCVTPH2PS(g.wMem(j*g.f.size), d)
		VMULSS(g.dMem(0).Offset(4*j-8), d, d)
		if j == 1 {
			VMOVSHDUP(s, s)
		}
		VFMADD231SS(d, s, sum)
	}
	ADDQ(U32(2*g.f.size), g.w)
	ADDQ(U8(8), g.k)
	JLE(LabelRef("pair"))
	Label("single")
	SUBQ(U8(8), g.k)
	JZ(LabelRef("done"))
	t := hsumInt(g.lanes(g.unpack(), g.loadX(g.xMem(0))))
	VCVTDQ2PS(t, t)
	d := XMM()
	VCVTPH2PS(g.wMem(0), d)
	VMULSS(g.dMem(0), d, d)
	VFMADD231SS(d, t, sum)
	Label("done")
	VMOVSS(sum, result(0))
}

// oneLane4 is the repacked kernels' order for four activation rows: the
// rows' block sums go to lanes 0..3 of one register, so that their four FMA
// chains run side by side.
func (g *kernel) oneLane4() {
	sum := XMM()
	VXORPS(sum, sum, sum)
	g.loop(func() {
		lv := g.unpack()
		var l [4]VecVirtual
		for i := range l {
			l[i] = g.lanes(lv, g.loadX(g.xMem(i)))
		}
		VPHADDD(l[1], l[0], l[0])
		VPHADDD(l[3], l[2], l[2])
		VPHADDD(l[2], l[0], l[0]) // per 128-bit half, row i in dword i
		s := XMM()
		VEXTRACTI128(U8(1), l[0], s)
		VPADDD(l[0].AsX(), s, s)
		VCVTDQ2PS(s, s)
		dm := XMM()
		VCVTPH2PS(g.wMem(0), dm)
		VBROADCASTSS(dm, dm)
		d := g.gather4(g.dMem)
		VMULPS(dm, d, d)
		VFMADD231PS(d, s, sum)
	})
	VMOVSS(sum, result(0))
	for i := 1; i < 4; i++ {
		VEXTRACTPS(U8(i), sum, result(i))
	}
}
