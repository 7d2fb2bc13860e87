package main

import (
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// rounding generates the conversions of MatMul's activations to the
// precision of F16 and BF16 weights.
func rounding(a arch) {
	roundFP16(a)
	roundBF16(a)
}

// unaryLoop emits the pointer setup and loop of an elementwise kernel
// func(dst, src []float32) int over whole registers, calling body with the
// source and destination of each, and returns how many values it did.
func unaryLoop(a arch, body func(src, dst operand.Mem)) {
	dp := g.Load(g.Param("dst").Base(), g.GP64())
	sp := g.Load(g.Param("src").Base(), g.GP64())
	n := g.Load(g.Param("src").Len(), g.GP64())
	done := countRegs(a, n)
	loop("regs", n)
	body(operand.Mem{Base: sp}, operand.Mem{Base: dp})
	next("regs", n, []reg.Register{sp, dp}, []int{4 * a.lanes(), 4 * a.lanes()})
	g.VZEROUPPER()
	g.Store(done, g.ReturnIndex(0))
	g.RET()
}

// nanBlend replaces the lanes of r where v is NaN by nan, where mask is
// scratch.
func nanBlend(a arch, v, r, nan reg.VecVirtual) {
	if a.parts == 1 {
		k := g.K()
		g.VCMPPS(operand.Imm(3), v, v, k) // unordered: v is NaN
		g.VBLENDMPS(nan, r, k, r)
		return
	}
	m := g.YMM()
	g.VCMPPS(operand.Imm(3), v, v, m)
	g.VBLENDVPS(m, nan, r, r)
}

// roundFP16 rounds to fp16 and back with VCVTPS2PH (immediate rounding
// mode 0, nearest-even, as FP32ToFP16). For a NaN, FP32ToFP16 gives the quiet
// NaN 0x7e00 with the sign and drops the payload, which VCVTPS2PH would keep
// in part; those lanes take sign | 0x7fc00000 instead, what FP16ToFP32 makes
// of 0x7e00.
func roundFP16(a arch) {
	name := "roundFP16" + a.name
	fn(name, "func(dst, src []float32) int",
		name+" sets dst[i] = FP16ToFP32(FP32ToFP16(src[i])) for whole registers",
		"of src and returns how many values it did.")
	unaryLoop(a, func(src, dst operand.Mem) {
		v, r, nan := a.reg(), a.reg(), a.reg()
		g.VMOVUPS(src, v)
		// The halves fill half a register: a YMM for a ZMM, an XMM for a YMM.
		var h reg.VecVirtual = g.XMM()
		if a.parts == 1 {
			h = g.YMM()
		}
		g.VCVTPS2PH(operand.Imm(0), v, h)
		g.VCVTPH2PS(h, r)
		a.and(cnst("sign"), v, nan)
		a.or(cnst("qnan"), nan, nan)
		nanBlend(a, v, r, nan)
		g.VMOVUPS(r, dst)
	})
}

// roundBF16 rounds to bf16 and back in integers as FP32ToBF16 does: add
// 0x7fff plus the lowest kept bit, clear the low 16 bits; a NaN keeps its top
// 16 bits and is made quiet.
func roundBF16(a arch) {
	name := "roundBF16" + a.name
	fn(name, "func(dst, src []float32) int",
		name+" sets dst[i] = BF16ToFP32(FP32ToBF16(src[i])) for whole registers",
		"of src and returns how many values it did.")
	unaryLoop(a, func(src, dst operand.Mem) {
		v, r, nan := a.reg(), a.reg(), a.reg()
		g.VMOVUPS(src, v)
		g.VPSRLD(operand.Imm(16), v, r)
		a.and(cnst("one_i"), r, r)
		g.VPADDD(cnst("bf16_bias"), r, r)
		g.VPADDD(v, r, r)
		a.and(cnst("hi16"), r, r)
		a.and(cnst("hi16"), v, nan)
		a.or(cnst("bf16_quiet"), nan, nan)
		nanBlend(a, v, r, nan)
		g.VMOVUPS(r, dst)
	})
}
