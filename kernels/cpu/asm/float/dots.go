package main

import (
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// dots generates the row dots of MatMul's float weights (and of attention's
// q·k) for one arch.
func dots(a arch) {
	for _, e := range []elem{f32, f16, bf16} {
		lanes16(a, e)
		lanes16x4(a, e)
	}
	tiles(a)
	vec64(a, f32, "w []byte")
	vec64(a, f16, "w []byte")
	vec64Rows(a, f32)
	vec64Rows(a, f16)
	vec64(a, f32, "w []float32")
	vec32BF16(a)
}

// loop emits the head of a counted loop: it jumps to done when n is zero,
// else falls into the body, which ends with next.
func loop(name string, n reg.Register) {
	g.TESTQ(n, n)
	g.JZ(operand.LabelRef(name + "_done"))
	g.Label(name)
}

// next ends a loop body: it advances each pointer by its step, counts n down
// and jumps back while it is not zero.
func next(name string, n reg.Register, ptrs []reg.Register, steps []int) {
	for i, p := range ptrs {
		g.ADDQ(operand.U32(steps[i]), p)
	}
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name))
	g.Label(name + "_done")
}

// ret stores the float result in an XMM register and returns, clearing the
// upper register halves first so the SSE code of the Go caller pays no AVX
// transition.
func ret(x reg.VecVirtual) {
	g.VZEROUPPER()
	g.Store(x, g.ReturnIndex(0))
	g.RET()
}

// lanes16 is dotLanes16: one 16-lane FMA accumulator over blocks of 16,
// folded by reduce16.
func lanes16(a arch, e elem) {
	fn("dotLanes16"+e.String()+a.name, "func(w []byte, x []float32) float32",
		"dotLanes16"+e.String()+a.name+" is dotLanes16 of the "+e.String()+" row w and x;",
		"len(x) is a multiple of 16 and w holds at least len(x) values.")
	wp := g.Load(g.Param("w").Base(), g.GP64())
	xp := g.Load(g.Param("x").Base(), g.GP64())
	n := g.Load(g.Param("x").Len(), g.GP64())
	g.SHRQ(operand.Imm(4), n)
	acc, w := a.vec(), a.vec()
	a.zeroVec(acc)
	loop("blocks", n)
	a.load(e, w, operand.Mem{Base: wp})
	a.fma(acc, w, operand.Mem{Base: xp})
	next("blocks", n, []reg.Register{wp, xp}, []int{16 * e.size(), 64})
	ret(a.reduce16(acc))
}

// lanes16x4 is dotLanes16 of one weight row with four activation rows at
// once: each has its own accumulator, in the same order as lanes16, but the
// weights are loaded and widened once for all four, and the four FMA chains
// overlap, where one row's chain waits on each FMA before the next.
func lanes16x4(a arch, e elem) {
	name := "dotLanes16x4" + e.String() + a.name
	fn(name, "func(out *[4]float32, w []byte, x []float32)",
		name+" sets out[i] to dotLanes16 of the "+e.String()+" row w and row i of",
		"the four rows in x; their length, len(x)/4, is a multiple of 16 and w",
		"holds at least that many values.")
	wp := g.Load(g.Param("w").Base(), g.GP64())
	xp := g.Load(g.Param("x").Base(), g.GP64())
	n := g.Load(g.Param("x").Len(), g.GP64())
	// stride is one row's bytes, 4·len(x)/4; stride3 reaches the fourth.
	stride, stride3 := g.GP64(), g.GP64()
	g.MOVQ(n, stride)
	g.LEAQ(operand.Mem{Base: stride, Index: stride, Scale: 2}, stride3)
	g.SHRQ(operand.Imm(6), n)
	rows := [4]operand.Mem{
		{Base: xp},
		{Base: xp, Index: stride, Scale: 1},
		{Base: xp, Index: stride, Scale: 2},
		{Base: xp, Index: stride3, Scale: 1},
	}
	acc := [4]vec{a.vec(), a.vec(), a.vec(), a.vec()}
	for _, v := range acc {
		a.zeroVec(v)
	}
	w := a.vec()
	loop("blocks", n)
	a.load(e, w, operand.Mem{Base: wp})
	for i, v := range acc {
		a.fma(v, w, rows[i])
	}
	next("blocks", n, []reg.Register{wp, xp}, []int{16 * e.size(), 64})
	op := g.Load(g.Param("out"), g.GP64())
	for i, v := range acc {
		g.VMOVSS(a.reduce16(v), operand.Mem{Base: op, Disp: 4 * i})
	}
	g.VZEROUPPER()
	g.RET()
}

// prefetchAhead is how far ahead in the weight row vec64 prefetches, on top
// of the hardware's prefetch: decode reads each weight once per token from
// memory. On the 0.35B F16 model's decode (tokens/s, two threads / one):
// 512 bytes 32.5 / 18.3, 2048 36.5 / 20.6, 3072 36.9, 4096 36.4 / 20.5,
// 8192 36.3. A prefetch past the end of w is harmless: PREFETCH never
// faults.
const prefetchAhead = 3072

// vec64 is vecDot64: four 16-lane FMA accumulators over blocks of 64 (lanes
// 16j..16j+15 of the Go code's acc are accumulator j), folded by fold64. The
// caller adds the len(x) mod 64 leftovers.
func vec64(a arch, e elem, wParam string) {
	name := "vecDot64" + e.String() + a.name
	what := "the " + e.String() + " row w"
	if wParam == "w []float32" {
		name = "vecDot64F32s" + a.name
		what = "w"
	}
	fn(name, "func("+wParam+", x []float32) float32",
		name+" is vecDot64 of "+what+" and x: the sum of the first",
		"len(x) &^ 63 products, which w holds at least.")
	wp := g.Load(g.Param("w").Base(), g.GP64())
	xp := g.Load(g.Param("x").Base(), g.GP64())
	n := g.Load(g.Param("x").Len(), g.GP64())
	g.SHRQ(operand.Imm(6), n)
	acc := [4]vec{a.vec(), a.vec(), a.vec(), a.vec()}
	ret(vec64Sum(a, e, acc, a.vec(), wp, xp, n, wParam == "w []byte"))
}

// vec64Sum emits vecDot64 of the row at wp and the n blocks of 64 at xp into
// the accumulators acc (w a scratch register), prefetching ahead in the row
// when prefetch is set, and returns its fold64.
func vec64Sum(a arch, e elem, acc [4]vec, w vec, wp, xp, n reg.Register, prefetch bool) reg.VecVirtual {
	for _, v := range acc {
		a.zeroVec(v)
	}
	loop("blocks", n)
	if prefetch {
		for off := 0; off < 64*e.size(); off += 64 {
			g.PREFETCHT0(operand.Mem{Base: wp, Disp: prefetchAhead + off})
		}
	}
	for j, v := range acc {
		a.load(e, w, operand.Mem{Base: wp, Disp: 16 * e.size() * j})
		a.fma(v, w, operand.Mem{Base: xp, Disp: 64 * j})
	}
	next("blocks", n, []reg.Register{wp, xp}, []int{64 * e.size(), 256})
	// fold64: (acc0 + acc2) + (acc1 + acc3), then reduce16.
	a.add(acc[0], acc[2], acc[0])
	a.add(acc[1], acc[3], acc[1])
	a.add(acc[0], acc[1], acc[0])
	return a.reduce16(acc[0])
}

// vec32BF16 is the SIMD part of vecDotBF16: two 16-lane accumulators over
// blocks of 32, each product rounded before it is added, and the two folded
// sums added in float64.
func vec32BF16(a arch) {
	name := "vecDot32BF16" + a.name
	fn(name, "func(w []byte, x []float32) float64",
		name+" is the SIMD part of vecDotBF16 of the BF16 row w and x: the",
		"float64 sum of its two accumulators over the first len(x) &^ 31 values.")
	wp := g.Load(g.Param("w").Base(), g.GP64())
	xp := g.Load(g.Param("x").Base(), g.GP64())
	n := g.Load(g.Param("x").Len(), g.GP64())
	g.SHRQ(operand.Imm(5), n)
	c := [2]vec{a.vec(), a.vec()}
	a.zeroVec(c[0])
	a.zeroVec(c[1])
	w := a.vec()
	loop("blocks", n)
	for j, v := range c {
		a.load(bf16, w, operand.Mem{Base: wp, Disp: 32 * j})
		for p := range w {
			g.VMULPS(a.part(operand.Mem{Base: xp, Disp: 64 * j}, p), w[p], w[p])
		}
		a.add(v, w, v)
	}
	next("blocks", n, []reg.Register{wp, xp}, []int{64, 128})
	s1 := a.reduce16(c[0])
	s2 := a.reduce16(c[1])
	g.VCVTSS2SD(s1, s1, s1)
	g.VCVTSS2SD(s2, s2, s2)
	g.VADDSD(s2, s1, s1)
	ret(s1)
}

// vec64Rows is vec64 for rows weight rows, stride bytes apart, against one x
// of len(x) a multiple of 64: decode's products, in one call instead of one
// per row, so that the stream of weights from memory does not pause
// between rows.
func vec64Rows(a arch, e elem) {
	name := "vecDot64Rows" + e.String() + a.name
	fn(name, "func(w []byte, stride, rows int, x []float32, out []float32)",
		name+" sets out[r] to vecDot64 of the "+e.String()+" row at w[r·stride:] and x,",
		"for r < rows; len(x) is a multiple of 64.")
	wp := g.Load(g.Param("w").Base(), g.GP64())
	stride := g.Load(g.Param("stride"), g.GP64())
	rows := g.Load(g.Param("rows"), g.GP64())
	x0 := g.Load(g.Param("x").Base(), g.GP64())
	nb := g.Load(g.Param("x").Len(), g.GP64())
	g.SHRQ(operand.Imm(6), nb)
	op := g.Load(g.Param("out").Base(), g.GP64())
	acc := [4]vec{a.vec(), a.vec(), a.vec(), a.vec()}
	w := a.vec()
	rp, xp, n := g.GP64(), g.GP64(), g.GP64()
	loop("rows", rows)
	g.MOVQ(wp, rp)
	g.MOVQ(x0, xp)
	g.MOVQ(nb, n)
	g.VMOVSS(vec64Sum(a, e, acc, w, rp, xp, n, true), operand.Mem{Base: op})
	g.ADDQ(stride, wp)
	g.ADDQ(operand.U8(4), op)
	g.DECQ(rows)
	g.JNZ(operand.LabelRef("rows"))
	g.Label("rows_done")
	g.VZEROUPPER()
	g.RET()
}
