package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// quantKernel generates the Q8_0 (or, if q81, Q8_1) activation quantizer of
// nb blocks. It reports whether a NaN was among the inputs, in which case its
// output is not defined and the caller quantizes the row in Go.
func quantKernel(q81 bool) {
	name := "quantQ8_0AVX2"
	sig := "func(x *float32, q *int8, d *float32, nb int) (nan bool)"
	what := "quantizeActQ8_0"
	if q81 {
		name = "quantQ8_1AVX2"
		sig = "func(x *float32, q *int8, d, s *float32, nb int) (nan bool)"
		what = "quantizeActQ8_1"
	}
	TEXT(name, NOSPLIT, sig)
	Doc(name+" is "+what+" for nb blocks of 32 at x, bit for bit, in AVX2;",
		"it reports whether x held a NaN, for which it leaves q, d and s undefined.")
	x := Load(Param("x"), GP64())
	q := Load(Param("q"), GP64())
	d := Load(Param("d"), GP64())
	var s Register
	if q81 {
		s = Load(Param("s"), GP64())
	}
	nb := Load(Param("nb"), GP64())
	nan := XMM()
	VPXOR(nan, nan, nan)
	TESTQ(nb, nb)
	JZ(LabelRef("done"))

	Label("block")
	var v [4]VecVirtual
	mx := YMM()
	for i := range v {
		v[i] = YMM()
		VMOVUPS(Mem{Base: x, Disp: 32 * i}, v[i])
		if i == 0 {
			VANDPS(absMask, v[i], mx)
			continue
		}
		// For floats without sign, the integer order of the bits is the
		// float order, and any NaN is above +Inf.
		a := YMM()
		VANDPS(absMask, v[i], a)
		VPMAXSD(a, mx, mx)
	}
	am, t := XMM(), XMM()
	VEXTRACTI128(U8(1), mx, am)
	VPMAXSD(mx.AsX(), am, am)
	VPSHUFD(U8(0x4e), am, t)
	VPMAXSD(t, am, am)
	VPSHUFD(U8(0xb1), am, t)
	VPMAXSD(t, am, am) // amax in every lane
	VPCMPGTD(infBits, am, t)
	VPOR(t, nan, nan)

	// d = fp16(amax/127) and the multiplier 127/amax. Go takes 0 for the
	// multiplier when amax is 0; here it is +Inf, and each x·Inf (x is ±0)
	// is the default NaN 0xffc00000, whose low byte makes the same level 0.
	exact, id := XMM(), XMM()
	VDIVSS(f127, am, exact)
	VMOVSS(f127, id)
	VDIVSS(am, id, id)
	h := XMM()
	VCVTPS2PH(U8(0), exact, h)
	VCVTPH2PS(h, h)
	VMOVSS(h, Mem{Base: d})

	// q = round-half-even(x·id) by adding 1.5·2²³: the level is the low
	// byte of the sum's bits (nearestInt truncated to int8, as Go converts).
	idb := YMM()
	VBROADCASTSS(id, idb)
	for i := range v {
		VMULPS(idb, v[i], v[i])
		VADDPS(magic, v[i], v[i])
		VPAND(lowByte, v[i], v[i])
	}
	VPACKUSDW(v[1], v[0], v[0])
	VPACKUSDW(v[3], v[2], v[2])
	VPACKUSWB(v[2], v[0], v[0])
	perm := YMM()
	VMOVDQU(packPerm, perm)
	VPERMD(v[0], perm, v[0])
	VMOVDQU(v[0], Mem{Base: q})

	if q81 {
		// s = fp16(amax/127 · Σq), the scale unrounded.
		p := YMM()
		VMOVDQU(ones8, p)
		VPMADDUBSW(v[0], p, p)
		VPMADDWD(ones16, p, p)
		sum := hsumInt(p)
		VCVTDQ2PS(sum, sum)
		VMULSS(exact, sum, sum)
		VCVTPS2PH(U8(0), sum, sum)
		VCVTPH2PS(sum, sum)
		VMOVSS(sum, Mem{Base: s})
		ADDQ(U8(4), s)
	}
	ADDQ(U8(128), x)
	ADDQ(U8(32), q)
	ADDQ(U8(4), d)
	DECQ(nb)
	JNZ(LabelRef("block"))

	Label("done")
	VPTEST(nan, nan)
	r := GP8()
	SETNE(r)
	Store(r, Return("nan"))
	VZEROUPPER()
	RET()
}
