package main

import (
	"fmt"

	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// tileShape is the register tile of an arch's tiled dots: rm weight rows by
// up to rn activation rows. AVX-512 keeps 4×6 16-lane accumulators, 4
// widened weight vectors and one activation vector in its 32 registers;
// AVX2, whose 16 lanes take two of its 16 registers, 2×2.
func tileShape(a arch) (rm, rn int) {
	if a.parts == 1 {
		return 4, 6
	}
	return 2, 2
}

// tiles generates the tiled dots of one arch for every element type and for
// every activation row count up to the arch's rn, so that the last rows of a
// batch take a narrower tile.
func tiles(a arch) {
	rm, rn := tileShape(a)
	for _, e := range []elem{f32, f16, bf16} {
		for n := 1; n <= rn; n++ {
			tile(a, e, rm, n)
		}
	}
}

// strided returns the memory operand of row j of rows stride bytes apart
// from base, given registers holding stride, 3·stride and 5·stride (j < 6).
func strided(base, s, s3, s5 reg.Register, j int) operand.Mem {
	switch j {
	case 0:
		return operand.Mem{Base: base}
	case 1:
		return operand.Mem{Base: base, Index: s, Scale: 1}
	case 2:
		return operand.Mem{Base: base, Index: s, Scale: 2}
	case 3:
		return operand.Mem{Base: base, Index: s3, Scale: 1}
	case 4:
		return operand.Mem{Base: base, Index: s, Scale: 4}
	case 5:
		return operand.Mem{Base: base, Index: s5, Scale: 1}
	}
	panic("row out of reach")
}

// tile is dotLanes16 of rm weight rows with rn activation rows, all rm·rn
// outputs at once: output (i, j) has its own 16-lane accumulator, which adds
// the products of weight row i and activation row j block by block exactly
// as lanes16 does, and is folded by reduce16. Each block of a weight row is
// loaded and widened once for the rn activation rows, and each block of an
// activation row loaded once for the rm weight rows.
func tile(a arch, e elem, rm, rn int) {
	name := fmt.Sprintf("dotTile%dx%d%s%s", rm, rn, e, a.name)
	fn(name, "func(out []float32, ldo int, w []byte, ldw int, x []float32, cols int)",
		fmt.Sprintf("%s sets out[j·ldo+i] to dotLanes16 of the %s weight row", name, e),
		fmt.Sprintf("w[i·ldw:] (bytes) and the activation row x[j·cols:] for i < %d, j < %d;", rm, rn),
		"cols is a multiple of 16, and the slices hold what that reaches.")
	wp := g.Load(g.Param("w").Base(), g.GP64())
	xp := g.Load(g.Param("x").Base(), g.GP64())
	ldw := g.Load(g.Param("ldw"), g.GP64())
	n := g.Load(g.Param("cols"), g.GP64())
	// sx is one activation row's bytes; sx3 and sx5 reach rows 3 and 5, lw3
	// weight row 3.
	sx, sx3, sx5, lw3 := g.GP64(), g.GP64(), g.GP64(), g.GP64()
	g.MOVQ(n, sx)
	g.SHLQ(operand.Imm(2), sx)
	g.LEAQ(operand.Mem{Base: sx, Index: sx, Scale: 2}, sx3)
	g.LEAQ(operand.Mem{Base: sx, Index: sx, Scale: 4}, sx5)
	g.LEAQ(operand.Mem{Base: ldw, Index: ldw, Scale: 2}, lw3)
	g.SHRQ(operand.Imm(4), n)
	acc := make([][]vec, rm)
	for i := range acc {
		acc[i] = make([]vec, rn)
		for j := range acc[i] {
			acc[i][j] = a.vec()
			a.zeroVec(acc[i][j])
		}
	}
	w := make([]vec, rm)
	for i := range w {
		w[i] = a.vec()
	}
	xv := a.reg()
	loop("blocks", n)
	for i := range w {
		a.load(e, w[i], strided(wp, ldw, lw3, nil, i))
	}
	for j := range rn {
		for p := range a.parts {
			g.VMOVUPS(a.part(strided(xp, sx, sx3, sx5, j), p), xv)
			for i := range rm {
				g.VFMADD231PS(xv, w[i][p], acc[i][j][p])
			}
		}
	}
	next("blocks", n, []reg.Register{wp, xp}, []int{16 * e.size(), 64})
	op := g.Load(g.Param("out").Base(), g.GP64())
	ldo := g.Load(g.Param("ldo"), g.GP64())
	g.SHLQ(operand.Imm(2), ldo)
	for j := range rn {
		for i := range rm {
			g.VMOVSS(a.reduce16(acc[i][j]), operand.Mem{Base: op, Disp: 4 * i})
		}
		if j < rn-1 {
			g.ADDQ(ldo, op)
		}
	}
	g.VZEROUPPER()
	g.RET()
}
