package main

import (
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// exps generates the blocks of 16 of Softmax and SwiGLU that take the vector
// expf.
func exps(a arch) {
	softmaxExp(a)
	swiglu(a)
}

// expf sets r to expf(x) (simd.go) lane by lane: ggml_v_expf step for step.
// The AVX-512 variant scales by 2ⁿ with VSCALEFPS as ggml does. AVX2 has no
// such instruction; it multiplies by 2^n1 and then by 2^n2, with n1 = n
// clamped to ±100 and n2 = n − n1, both powers normal floats: j lies in
// [0.7, 1.5], so j·2^n1 is exact and the second product is the only rounding,
// the one of j·2ⁿ, subnormal results included. Lanes with n beyond ±192 get
// +Inf or 0, as expf's checks give.
func expf(a arch, x, r reg.VecVirtual) {
	z, n, b, u, p, q := a.reg(), a.reg(), a.reg(), a.reg(), a.reg(), a.reg()
	g.VMOVUPS(cnst("log2e"), z)
	g.VFMADD213PS(cnst("exp_shift"), x, z) // z = fma32(x, log2e, shift)
	g.VSUBPS(cnst("exp_shift"), z, n)      // n = z − shift
	g.VMOVUPS(cnst("ln2hi"), b)
	g.VFNMADD213PS(x, n, b)             // b = fma32(−n, ln2hi, x)
	g.VFNMADD231PS(cnst("ln2lo"), n, b) // b = fma32(−n, ln2lo, b)
	g.VMULPS(b, b, u)
	g.VMOVUPS(cnst("p5"), p)
	g.VFMADD213PS(cnst("p4"), b, p) // fma32(p5, b, p4)
	g.VMOVUPS(cnst("p3"), q)
	g.VFMADD213PS(cnst("p2"), b, q) // fma32(p3, b, p2)
	g.VFMADD213PS(q, u, p)          // fma32(·, u, ·)
	g.VMOVUPS(cnst("p1"), q)
	g.VFMADD213PS(cnst("one"), b, q) // fma32(p1, b, 1)
	g.VFMADD213PS(q, u, p)           // j
	if a.parts == 1 {
		g.VSCALEFPS(n, p, r)
		for _, c := range []struct {
			pred uint64
			lim  string
			val  string
		}{{0x1e, "max_n", "inf"}, {0x11, "min_n", "zero"}} { // n > 192 (GT_OQ), n < −192 (LT_OQ)
			k := g.K()
			g.VCMPPS(operand.Imm(c.pred), cnst(c.lim), n, k)
			g.VBLENDMPS(cnst(c.val), r, k, r)
		}
		return
	}
	n1, n2 := a.reg(), a.reg()
	g.VMINPS(cnst("split_hi"), n, n1)
	g.VMAXPS(cnst("split_lo"), n1, n1)
	g.VSUBPS(n1, n, n2)
	for _, e := range []reg.VecVirtual{n1, n2} {
		g.VCVTTPS2DQ(e, e)
		g.VPADDD(cnst("bias_i"), e, e)
		g.VPSLLD(operand.Imm(23), e, e)
	}
	g.VMULPS(n1, p, r)
	g.VMULPS(n2, r, r)
	for _, c := range []struct {
		pred uint64
		lim  string
		val  string
	}{{0x1e, "max_n", "inf"}, {0x11, "min_n", "zero"}} {
		m := g.YMM()
		g.VCMPPS(operand.Imm(c.pred), cnst(c.lim), n, m)
		g.VBLENDVPS(m, cnst(c.val), r, r)
	}
}

// softmaxExp is the exp-and-sum loop of Softmax over whole blocks of 16:
// x[i] = expf(x[i] − mx), each block's sum by reduce16 added in float64.
func softmaxExp(a arch) {
	name := "softmaxExp" + a.name
	fn(name, "func(x []float32, mx float32) float64",
		name+" sets x[i] = expf(x[i] − mx) for the first len(x) &^ 15 values",
		"and returns the float64 sum of their blocks' reduce16, as Softmax adds them.")
	xp := g.Load(g.Param("x").Base(), g.GP64())
	n := g.Load(g.Param("x").Len(), g.GP64())
	g.SHRQ(operand.Imm(4), n)
	m := a.reg()
	g.VBROADCASTSS(g.Load(g.Param("mx"), g.XMM()), m)
	sum := g.XMM()
	g.VXORPS(sum, sum, sum)
	e := a.vec()
	loop("blocks", n)
	for p, r := range e {
		v := a.reg()
		g.VMOVUPS(a.part(operand.Mem{Base: xp}, p), v)
		g.VSUBPS(m, v, v)
		expf(a, v, r)
		g.VMOVUPS(r, a.part(operand.Mem{Base: xp}, p))
	}
	s := a.reduce16(e)
	g.VCVTSS2SD(s, s, s)
	g.VADDSD(s, sum, sum)
	next("blocks", n, []reg.Register{xp}, []int{64})
	ret(sum)
}

// swiglu is SwiGLU over whole blocks of 16: gate[i] = g/(1 + expf(0 − g))·up[i]
// with g = gate[i], each step rounded.
func swiglu(a arch) {
	name := "swiGLU" + a.name
	fn(name, "func(gate, up []float32)",
		name+" is SwiGLU with the vector expf for the first len(gate) &^ 15 values.")
	gp := g.Load(g.Param("gate").Base(), g.GP64())
	up := g.Load(g.Param("up").Base(), g.GP64())
	n := g.Load(g.Param("gate").Len(), g.GP64())
	g.SHRQ(operand.Imm(4), n)
	loop("blocks", n)
	for p := range a.parts {
		v, t, e := a.reg(), a.reg(), a.reg()
		g.VMOVUPS(a.part(operand.Mem{Base: gp}, p), v)
		a.zero(t)
		g.VSUBPS(v, t, t) // 0 − g
		expf(a, t, e)
		g.VADDPS(cnst("one"), e, e)
		g.VDIVPS(e, v, v)
		g.VMULPS(a.part(operand.Mem{Base: up}, p), v, v)
		g.VMOVUPS(v, a.part(operand.Mem{Base: gp}, p))
	}
	next("blocks", n, []reg.Register{gp, up}, []int{64, 64})
	g.VZEROUPPER()
	g.RET()
}
