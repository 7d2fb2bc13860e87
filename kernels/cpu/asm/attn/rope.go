package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
)

// rope generates the rotations of package cpu's RoPE for one row, given the
// row's position's table (ropeTable): ropeNormAVX512 for pairs (2i, 2i+1),
// ropeNeoxAVX512 for pairs (i, i+dims/2). Each value becomes ggml's
// x0·cos − x1·sin or x0·sin + x1·cos with the first product fused, as GCC
// fuses it: one VFMADD of a rounded product, lane for lane.
func rope() {
	ropeNorm()
	ropeNeox()
}

// ropeNorm: tables a = (cos, sin) and b = (−sin, cos) per pair. With xs the
// row with each pair's members swapped, an even lane is fma(x, cos, xs·−sin)
// and an odd one fma(xs, sin, x·cos): blends pick the factors by lane.
func ropeNorm() {
	TEXT("ropeNormAVX512", NOSPLIT, "func(x []float32, heads, hd int, a, b []float32)")
	Doc("ropeNormAVX512 rotates the pairs (2i, 2i+1), for 2i < len(a) (a multiple of 16), of each of the heads of hd values at x by the tables a and b of ropeTable's normal layout.")
	xp := Load(Param("x").Base(), GP64())
	heads := Load(Param("heads"), GP64())
	hd := Load(Param("hd"), GP64())
	ap := Load(Param("a").Base(), GP64())
	bp := Load(Param("b").Base(), GP64())
	dims := Load(Param("a").Len(), GP64())
	SHLQ(U8(2), hd)
	odd := K()
	t := GP32()
	MOVL(U32(0xaaaa), t)
	KMOVW(t, odd)
	x, xs, p, q, r := ZMM(), ZMM(), ZMM(), ZMM(), ZMM()
	j := GP64()
	Label("norm_head")
	TESTQ(heads, heads)
	JZ(LabelRef("norm_done"))
	XORQ(j, j)
	Label("norm_chunk")
	VMOVUPS(Mem{Base: xp, Index: j, Scale: 4}, x)
	VPERMILPS(U8(0xb1), x, xs)
	VBLENDMPS(xs, x, odd, p)
	VBLENDMPS(x, xs, odd, q)
	VMULPS(Mem{Base: bp, Index: j, Scale: 4}, q, r)
	VFMADD231PS(Mem{Base: ap, Index: j, Scale: 4}, p, r)
	VMOVUPS(r, Mem{Base: xp, Index: j, Scale: 4})
	ADDQ(U8(16), j)
	CMPQ(j, dims)
	JB(LabelRef("norm_chunk"))
	ADDQ(hd, xp)
	DECQ(heads)
	JMP(LabelRef("norm_head"))
	Label("norm_done")
	VZEROUPPER()
	RET()
}

// ropeNeox: tables a = (cos…, sin…) and b = (−sin…, cos…) by half. The
// first half's value is fma(x0, cos, x1·−sin), the second's fma(x0, sin,
// x1·cos).
func ropeNeox() {
	TEXT("ropeNeoxAVX512", NOSPLIT, "func(x []float32, heads, hd int, a, b []float32)")
	Doc("ropeNeoxAVX512 rotates the pairs (i, i+len(a)/2), for i < len(a)/2 (a multiple of 16), of each of the heads of hd values at x by the tables a and b of ropeTable's NEOX layout.")
	xp := Load(Param("x").Base(), GP64())
	heads := Load(Param("heads"), GP64())
	hd := Load(Param("hd"), GP64())
	ap := Load(Param("a").Base(), GP64())
	bp := Load(Param("b").Base(), GP64())
	half := Load(Param("a").Len(), GP64())
	SHRQ(U8(1), half)
	SHLQ(U8(2), hd)
	x0, x1, r0, r1 := ZMM(), ZMM(), ZMM(), ZMM()
	j, k := GP64(), GP64()
	Label("neox_head")
	TESTQ(heads, heads)
	JZ(LabelRef("neox_done"))
	XORQ(j, j)
	Label("neox_chunk")
	LEAQ(Mem{Base: j, Index: half, Scale: 1}, k)
	VMOVUPS(Mem{Base: xp, Index: j, Scale: 4}, x0)
	VMOVUPS(Mem{Base: xp, Index: k, Scale: 4}, x1)
	VMULPS(Mem{Base: bp, Index: j, Scale: 4}, x1, r0)
	VFMADD231PS(Mem{Base: ap, Index: j, Scale: 4}, x0, r0)
	VMULPS(Mem{Base: bp, Index: k, Scale: 4}, x1, r1)
	VFMADD231PS(Mem{Base: ap, Index: k, Scale: 4}, x0, r1)
	VMOVUPS(r0, Mem{Base: xp, Index: j, Scale: 4})
	VMOVUPS(r1, Mem{Base: xp, Index: k, Scale: 4})
	ADDQ(U8(16), j)
	CMPQ(j, half)
	JB(LabelRef("neox_chunk"))
	ADDQ(hd, xp)
	DECQ(heads)
	JMP(LabelRef("neox_head"))
	Label("neox_done")
	VZEROUPPER()
	RET()
}
