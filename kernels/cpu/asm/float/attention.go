package main

import (
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// attention generates the elementwise steps of attention's score-weighted sum
// of values. The Go code keeps the lane sums of each output d in a row over
// the lanes; the SIMD version transposes that to one row of HeadDim per lane,
// so that adding a value row into its lane and folding the lanes are both
// elementwise over d, which keeps every sum of the Go code.
func attention(a arch) {
	axpy(a)
	addRows(a)
}

// countRegs loads the length n and turns it into a count of whole registers,
// returning the count and the number of values they hold.
func countRegs(a arch, n reg.Register) reg.Register {
	shift := uint64(3)
	if a.parts == 1 {
		shift = 4
	}
	g.SHRQ(operand.Imm(shift), n)
	done := g.GP64()
	g.MOVQ(n, done)
	g.SHLQ(operand.Imm(shift), done)
	return done
}

// axpy sets acc[d] = fma32(v[d], w, acc[d]).
func axpy(a arch) {
	name := "axpyF32" + a.name
	fn(name, "func(acc, v []float32, w float32) int",
		name+" sets acc[d] = fma32(v[d], w, acc[d]) for whole registers of v",
		"and returns how many values it did.")
	ap := g.Load(g.Param("acc").Base(), g.GP64())
	vp := g.Load(g.Param("v").Base(), g.GP64())
	n := g.Load(g.Param("v").Len(), g.GP64())
	done := countRegs(a, n)
	w, t := a.reg(), a.reg()
	ws := g.Load(g.Param("w"), g.XMM())
	g.VBROADCASTSS(ws, w)
	loop("regs", n)
	g.VMOVUPS(operand.Mem{Base: ap}, t)
	g.VFMADD231PS(operand.Mem{Base: vp}, w, t)
	g.VMOVUPS(t, operand.Mem{Base: ap})
	next("regs", n, []reg.Register{ap, vp}, []int{4 * a.lanes(), 4 * a.lanes()})
	g.VZEROUPPER()
	g.Store(done, g.ReturnIndex(0))
	g.RET()
}

// addRows sets dst[d] = x[d] + y[d].
func addRows(a arch) {
	name := "addRows" + a.name
	fn(name, "func(dst, x, y []float32) int",
		name+" sets dst[d] = x[d] + y[d] for whole registers of dst and",
		"returns how many values it did.")
	dp := g.Load(g.Param("dst").Base(), g.GP64())
	xp := g.Load(g.Param("x").Base(), g.GP64())
	yp := g.Load(g.Param("y").Base(), g.GP64())
	n := g.Load(g.Param("dst").Len(), g.GP64())
	done := countRegs(a, n)
	t := a.reg()
	loop("regs", n)
	g.VMOVUPS(operand.Mem{Base: xp}, t)
	g.VADDPS(operand.Mem{Base: yp}, t, t)
	g.VMOVUPS(t, operand.Mem{Base: dp})
	step := 4 * a.lanes()
	next("regs", n, []reg.Register{dp, xp, yp}, []int{step, step, step})
	g.VZEROUPPER()
	g.Store(done, g.ReturnIndex(0))
	g.RET()
}
