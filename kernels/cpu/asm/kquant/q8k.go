package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

var q8k struct {
	abs, magic, mant, half, c127, cFF, ones16 Mem // 8 dwords (16 words) each
	ones8, perm, neg127, one                  Mem
}

func q8KData() {
	d8 := func(name string, v uint32) Mem { return data(name, dwords(v, v, v, v, v, v, v, v)) }
	q8k.abs = d8("q8kAbs", 0x7fffffff)
	q8k.magic = d8("q8kMagic", math.Float32bits(12582912))
	q8k.mant = d8("q8kMant", 0x7fffff)
	q8k.half = d8("q8kHalf", 0x400000)
	q8k.c127 = d8("q8kC127", 127)
	q8k.cFF = d8("q8kCFF", 0xff)
	q8k.ones16 = d8("q8kOnes16", 0x00010001)
	q8k.ones8 = d8("q8kOnes8", 0x01010101)
	q8k.perm = data("q8kPerm", dwords(0, 4, 1, 5, 2, 6, 3, 7))
	q8k.neg127 = data("q8kNeg127", dwords(math.Float32bits(-127), 0))
	q8k.one = data("q8kOne", dwords(math.Float32bits(1), 0))
}

// quantizeQ8K generates quantizeQ8KAVX2, quantize_row_q8_K_ref as
// quantizeActQ8_K writes it, vectorized. Per 256 values: amax = the largest
// |x| not NaN (VMAXPS keeps the accumulator when x is NaN, as Go's a > amax
// does), maxv the first x with |x| = amax, iscale = −127/maxv and d =
// 1/iscale in scalar float32, then every level by nearestInt's own steps:
// the product iscale·x rounded, plus 1.5·2²³, the low 23 bits less 2²²,
// min 127, truncated to 8 bits. The same steps give the same level for
// every input, NaN and infinities included, not only for the ordinary ones
// where VCVTPS2DQ would agree.
func quantizeQ8K() {
	TEXT("quantizeQ8KAVX2", NOSPLIT, "func(x *float32, q *int8, d *float32, bs *int16, nb int)")
	Doc("quantizeQ8KAVX2 is quantizeActQ8_K over nb blocks of 256 values, with AVX2.")
	Pragma("noescape")
	x := Load(Param("x"), GP64())
	q := Load(Param("q"), GP64())
	d := Load(Param("d"), GP64())
	bs := Load(Param("bs"), GP64())
	nb := Load(Param("nb"), GP64())
	abs := YMM()
	VMOVDQU(q8k.abs, abs)

	Label("block")
	var m [4]Register
	for i := range m {
		m[i] = YMM()
		VPXOR(m[i], m[i], m[i])
	}
	for k := range 32 {
		v := YMM()
		VANDPS(Mem{Base: x, Disp: 32 * k}, abs, v)
		VMAXPS(m[k%4], v, m[k%4])
	}
	VMAXPS(m[1], m[0], m[0])
	VMAXPS(m[3], m[2], m[2])
	VMAXPS(m[2], m[0], m[0])
	amax := XMM()
	VEXTRACTF128(U8(1), m[0], amax)
	VMAXPS(amax, m[0].(Vec).AsX(), amax)
	t := XMM()
	VPERMILPS(U8(0x4e), amax, t)
	VMAXPS(t, amax, amax)
	VPERMILPS(U8(0xb1), amax, t)
	VMAXPS(t, amax, amax)
	bits := GP32()
	VMOVD(amax, bits)
	TESTL(bits, bits)
	JZ(LabelRef("zero"))

	// maxv: the first value whose magnitude is amax.
	amaxY := YMM()
	VBROADCASTSS(amax, amaxY)
	off, mask := GP64(), GP64()
	XORQ(off, off)
	Label("find")
	v := YMM()
	VANDPS(Mem{Base: x, Index: off, Scale: 1}, abs, v)
	VCMPPS(U8(0), amaxY, v, v) // EQ_OQ
	VMOVMSKPS(v, mask.As32())
	TESTL(mask.As32(), mask.As32())
	JNZ(LabelRef("found"))
	ADDQ(U8(32), off)
	JMP(LabelRef("find"))
	Label("found")
	BSFL(mask.As32(), mask.As32())
	LEAQ(Mem{Base: off, Index: mask, Scale: 4}, off)
	maxv, iscale, dv := XMM(), XMM(), XMM()
	VMOVSS(Mem{Base: x, Index: off, Scale: 1}, maxv)
	VMOVSS(q8k.neg127, iscale)
	VDIVSS(maxv, iscale, iscale)
	VMOVSS(q8k.one, dv)
	VDIVSS(iscale, dv, dv)
	VMOVSS(dv, Mem{Base: d})

	is, perm, ones8 := YMM(), YMM(), YMM()
	VBROADCASTSS(iscale, is)
	VMOVDQU(q8k.perm, perm)
	VMOVDQU(q8k.ones8, ones8)
	var sums [2]Register
	var quads [4]Register
	for g := range 8 {
		// 32 levels: four vectors of dwords packed to bytes (all in 0..255
		// after the mask, so the unsigned packs keep them), then put back
		// in order (the packs interleave the 128-bit lanes).
		var v [4]Register
		for i := range v {
			v[i] = YMM()
			VMULPS(Mem{Base: x, Disp: 128*g + 32*i}, is, v[i])
			VADDPS(q8k.magic, v[i], v[i])
			VPAND(q8k.mant, v[i], v[i])
			VPSUBD(q8k.half, v[i], v[i])
			VPMINSD(q8k.c127, v[i], v[i])
			VPAND(q8k.cFF, v[i], v[i])
		}
		VPACKUSDW(v[1], v[0], v[0])
		VPACKUSDW(v[3], v[2], v[2])
		VPACKUSWB(v[2], v[0], v[0])
		VPERMD(v[0], perm, v[0])
		VMOVDQU(v[0], Mem{Base: q, Disp: 32 * g})
		// bsums: pairs (VPMADDUBSW with ones), then quads (VPMADDWD with ones):
		// the low lane holds the four quads of group 2g, the high of 2g+1.
		quads[g%4] = YMM()
		VPMADDUBSW(v[0], ones8, quads[g%4])
		VPMADDWD(q8k.ones16, quads[g%4], quads[g%4])
		if g%4 == 3 {
			// Sum the quads: lane 0 holds groups 4h, 4h+2, 4h+4, 4h+6 and
			// lane 1 groups 4h+1, …, 4h+7 (h = g/4, in groups of 8).
			VPHADDD(quads[1], quads[0], quads[0])
			VPHADDD(quads[3], quads[2], quads[2])
			VPHADDD(quads[2], quads[0], quads[0])
			sums[g/4] = quads[0]
		}
	}
	// Words g0, g2, …, g14 in lane 0 and g1, …, g15 in lane 1, interleaved.
	VPACKSSDW(sums[1], sums[0], sums[0])
	hi := XMM()
	VEXTRACTI128(U8(1), sums[0], hi)
	lo := XMM()
	VPUNPCKLWD(hi, sums[0].(Vec).AsX(), lo)
	VPUNPCKHWD(hi, sums[0].(Vec).AsX(), hi)
	VMOVDQU(lo, Mem{Base: bs})
	VMOVDQU(hi, Mem{Base: bs, Disp: 16})
	JMP(LabelRef("next"))

	Label("zero")
	z := YMM()
	VPXOR(z, z, z)
	for g := range 8 {
		VMOVDQU(z, Mem{Base: q, Disp: 32 * g})
	}
	VMOVDQU(z, Mem{Base: bs})
	MOVL(U32(0), Mem{Base: d})

	Label("next")
	ADDQ(U32(1024), x)
	ADDQ(U32(256), q)
	ADDQ(U8(4), d)
	ADDQ(U8(32), bs)
	DECQ(nb)
	JNZ(LabelRef("block"))
	VZEROUPPER()
	RET()
}
