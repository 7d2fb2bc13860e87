package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The kernels for several weight rows times one activation row (decode).
// One row's block sums feed one FMA chain, which allows one block per FMA
// latency; a group of rows gives as many independent chains, and so runs at
// the throughput of the integer work instead. Each row's float operations
// stay those of the one-row kernels, in the same order.

// rowsKernel generates the product of rows weight rows, stride bytes apart,
// with one activation row, writing row r's result to out[r]. rows is a
// multiple of the group: 4 rows with an FMA chain each in the eight-lane
// order, 8 rows in the lanes of one register in the one-lane order.
func rowsKernel(f format, is isa, one bool) {
	group, name, order := 4, "dotRows4", "eight lanes, four rows at a time"
	if one {
		group, name, order = 8, "dotOneRows8", "one lane, eight rows at a time in the lanes of one register"
	}
	name += f.name + is.name
	TEXT(name, NOSPLIT, "func(w *byte, stride int, x *int8, d, s *float32, nb, rows int, out *float32)")
	Doc(fmt.Sprintf("%s multiplies rows (a multiple of %d) weight rows of nb %s blocks, stride bytes apart from w, "+
		"with the Q8_0/Q8_1 activation row x, d, s and writes row r's result to out[r], adding in %s; %s.",
		name, group, f.name, order, is.name))

	g := &kernel{f: f, is: is}
	wg := Load(Param("w"), GP64())
	stride := Load(Param("stride"), GP64())
	rows := Load(Param("rows"), GP64())
	out := Load(Param("out"), GP64())
	// As in dotKernel, the activation bases move past their end and k, from
	// −4nb up to zero, indexes them; n4 keeps −4nb for each group.
	n4 := Load(Param("nb"), GP64())
	SHLQ(U8(2), n4)
	g.k = GP64()
	x := Load(Param("x"), GP64()).(GPVirtual)
	LEAQ(Mem{Base: x, Index: n4, Scale: 8}, x)
	g.x = []GPVirtual{x}
	d := Load(Param("d"), GP64()).(GPVirtual)
	ADDQ(n4, d)
	g.d = []GPVirtual{d}
	if f.min {
		s := Load(Param("s"), GP64()).(GPVirtual)
		ADDQ(n4, s)
		g.s = []GPVirtual{s}
	}
	NEGQ(n4)
	if f.offset != 0 {
		g.o = YMM()
		VMOVDQU(offsets[f.offset], g.o)
	}
	// Row t of a group sits at p + t·stride: rows 0, 1, 2, 4 and 3, 6 from
	// p with stride or 3·stride as the index, rows 5 and 7 from p5 = p +
	// 5·stride, so that two pointers move from block to block.
	s3 := GP64()
	LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, s3)
	p := GP64()
	var p5 GPVirtual
	blk := []Mem{{Base: p}, {Base: p, Index: stride, Scale: 1}, {Base: p, Index: stride, Scale: 2}, {Base: p, Index: s3, Scale: 1}}
	if one {
		p5 = GP64()
		blk = append(blk, Mem{Base: p, Index: stride, Scale: 4}, Mem{Base: p5}, Mem{Base: p, Index: s3, Scale: 2}, Mem{Base: p5, Index: stride, Scale: 2})
	}

	// Decode reads each weight once per token, from memory: prefetching
	// every row this many bytes ahead, on top of the hardware's prefetch,
	// took a fifth off the products of a 0.35B model's decode step
	// (BenchmarkQ32Decode; PREFETCHNTA gained nothing), and costs 5–8%
	// when the rows are in L1. The distances are the best measured. A
	// prefetch past the end of w is harmless: PREFETCH never faults.
	ahead := 512
	if one {
		ahead = 768
	}

	TESTQ(rows, rows)
	JZ(LabelRef("done"))
	Label("group")
	MOVQ(wg, p)
	if one {
		LEAQ(Mem{Base: wg, Index: stride, Scale: 4}, p5)
		ADDQ(stride, p5)
	}
	// blocks emits the loop over the blocks around body.
	blocks := func(body func()) {
		MOVQ(n4, g.k)
		TESTQ(g.k, g.k)
		JZ(LabelRef("store"))
		Label("block")
		for _, b := range blk {
			PREFETCHT0(b.Offset(ahead))
		}
		body()
		ADDQ(U32(f.size), p)
		if one {
			ADDQ(U32(f.size), p5)
		}
		ADDQ(U8(4), g.k)
		JNZ(LabelRef("block"))
		Label("store")
	}
	if one {
		g.oneLaneRows8(blk, blocks, Mem{Base: out})
	} else {
		g.lanes8Rows4(blk, blocks, Mem{Base: out})
	}
	LEAQ(Mem{Base: wg, Index: stride, Scale: uint8(group)}, wg)
	ADDQ(U8(4*group), out)
	SUBQ(U8(group), rows)
	JNZ(LabelRef("group"))
	Label("done")
	VZEROUPPER()
	RET()
}

// lanes8Rows4 is lanes8x1 for the four rows at blk: the activation block
// (for Q8_0 its levels, for the _0 types its offset product) is loaded once
// for the four, and so are the four rows' scales: their d_w·d_x are formed
// in one register and stored to the stack, from where each row's FMA reads
// its own broadcast to eight lanes (converting, multiplying and broadcasting
// per row took a third of the vector instructions). For the _1 types the
// mins come along, and the four min terms' FMA chains run in the odd lanes
// of one register.
func (g *kernel) lanes8Rows4(blk []Mem, blocks func(func()), out Mem) {
	f, vnni := g.f, g.is.vnni
	var acc [4]VecVirtual
	for t := range acc {
		acc[t] = YMM()
		VXORPS(acc[t], acc[t], acc[t])
	}
	summs := YMM()
	if f.min {
		VXORPS(summs, summs, summs)
	}
	// dd holds row t's d_w·d_x at 4t (the _0 types) or 8t (the _1 types,
	// with m_w·d_x after it); later, the min terms.
	dd := AllocLocal(32)
	step := 4
	if f.min {
		step = 8
	}
	// mulBcast multiplies dst by the float at src in every lane.
	mulBcast := func(src Mem, dst VecVirtual) {
		if vnni {
			VMULPS_BCST(src, dst, dst)
		} else {
			t := YMM()
			if dst.Size() == 16 {
				t = XMM()
			}
			VBROADCASTSS(src, t)
			VMULPS(t, dst, dst)
		}
	}
	blocks(func() {
		// Word 0 of each row's first dword is d_w, word 1 m_w for the _1
		// types; only those are converted. The lanes that no row uses (m_w
		// times d_x, d_w times s_x) are products of fp16 scales too, which
		// are never subnormal in float32 (level bytes taken for scales
		// could make subnormal products, which cost microcode assists).
		var h [4]VecVirtual
		for t := range h {
			h[t] = XMM()
			VMOVD(blk[t], h[t])
		}
		if f.min {
			VPUNPCKLDQ(h[1], h[0], h[0])
			VPUNPCKLDQ(h[3], h[2], h[2])
			VPUNPCKLQDQ(h[2], h[0], h[0])
			dm := YMM()
			VCVTPH2PS(h[0], dm)
			if vnni {
				VFMADD231PS_BCST(g.sMem(0), dm, summs)
			} else {
				s := YMM()
				VBROADCASTSS(g.sMem(0), s)
				VFMADD231PS(s, dm, summs)
			}
			mulBcast(g.dMem(0), dm)
			VMOVUPS(dm, dd)
		} else {
			VPUNPCKLWD(h[1], h[0], h[0])
			VPUNPCKLWD(h[3], h[2], h[2])
			VPUNPCKLDQ(h[2], h[0], h[0])
			d := XMM()
			VCVTPH2PS(h[0], d)
			mulBcast(g.dMem(0), d)
			VMOVUPS(d, dd)
		}
		x := g.loadX(g.xMem(0))
		for t, b := range blk {
			lf := g.lanes(g.unpackAt(b), x)
			VCVTDQ2PS(lf, lf)
			if vnni {
				VFMADD231PS_BCST(dd.Offset(step*t), lf, acc[t])
			} else {
				d := YMM()
				VBROADCASTSS(dd.Offset(step*t), d)
				VFMADD231PS(lf, d, acc[t])
			}
		}
	})
	if f.min {
		VMOVUPS(summs, dd)
	}
	for t := range acc {
		r := hsum8(acc[t])
		if f.min {
			VADDSS(dd.Offset(8*t+4), r, r)
		}
		VMOVSS(r, out.Offset(4*t))
	}
}

// oneLaneRows8 is the repacked kernels' order for the eight Q4_0 rows at
// blk: their block sums go to lanes 0..7 of one register, which takes one
// FMA per block for the eight. The sums come without a horizontal add:
// the rows' level bytes are transposed so that register m holds bytes
// 4m..4m+3 of row t in dword t (the low nibbles are elements 4m..4m+3, the
// high ones 16+4m..19+4m), and each is multiplied with those four
// activation levels broadcast to every dword. The offset 8 comes off as
// 8·Σx, the same for every row.
func (g *kernel) oneLaneRows8(blk []Mem, blocks func(func()), out Mem) {
	f, vnni := g.f, g.is.vnni
	acc, nib := YMM(), YMM()
	VXORPS(acc, acc, acc)
	VMOVDQU(nibbleMask, nib)
	blocks(func() {
		// Rows t and t+4 in the halves of a[t], then a 4×4 dword
		// transpose within each half.
		var a, t [4]VecVirtual
		for i := range a {
			a[i] = YMM()
			VMOVDQU(blk[i].Offset(f.qs), a[i].AsX())
			VINSERTI128(U8(1), blk[i+4].Offset(f.qs), a[i], a[i])
		}
		for i := range t {
			t[i] = YMM()
		}
		VPUNPCKLDQ(a[1], a[0], t[0])
		VPUNPCKHDQ(a[1], a[0], t[1])
		VPUNPCKLDQ(a[3], a[2], t[2])
		VPUNPCKHDQ(a[3], a[2], t[3])
		m := a
		VPUNPCKLQDQ(t[2], t[0], m[0])
		VPUNPCKHQDQ(t[2], t[0], m[1])
		VPUNPCKLQDQ(t[3], t[1], m[2])
		VPUNPCKHQDQ(t[3], t[1], m[3])

		sum := YMM()
		if vnni {
			// The high nibbles stay in place, as 16 times their value
			// (at most 240·127 a product, far from overflowing the
			// lanes); their sum is shifted back, exactly, at the end.
			hi := YMM()
			VPXOR(sum, sum, sum)
			VPXOR(hi, hi, hi)
			for i, v := range m {
				l, h := YMM(), YMM()
				VPAND(nib, v, l)
				VPDPBUSD_BCST(g.xMem(0).Offset(4*i), l, sum)
				VPANDN(v, nib, h)
				VPDPBUSD_BCST(g.xMem(0).Offset(16+4*i), h, hi)
			}
			VPSRAD(U8(4), hi, hi)
			VPADDD(hi, sum, sum)
		} else {
			// VPMADDUBSW's pair sums (at most 2·15·127) summed over the
			// eight registers stay below 2¹⁵, so they add as int16.
			for i, v := range m {
				l, h, xb := YMM(), YMM(), YMM()
				VPAND(nib, v, l)
				VPBROADCASTD(g.xMem(0).Offset(4*i), xb)
				VPMADDUBSW(xb, l, l)
				VPSRLD(U8(4), v, h)
				VPAND(nib, h, h)
				VPBROADCASTD(g.xMem(0).Offset(16+4*i), xb)
				VPMADDUBSW(xb, h, h)
				if i == 0 {
					VPADDW(h, l, sum)
				} else {
					VPADDW(l, sum, sum)
					VPADDW(h, sum, sum)
				}
			}
			VPMADDWD(ones16, sum, sum)
		}
		VPSUBD(g.offsetSum(), sum, sum)
		VCVTDQ2PS(sum, sum)

		// The eight rows' d_w: word 0 of a dword load, gathered by unpacks.
		var h [8]VecVirtual
		for i := range h {
			h[i] = XMM()
			VMOVD(blk[i], h[i])
		}
		for i := 0; i < 8; i += 2 {
			VPUNPCKLWD(h[i+1], h[i], h[i])
		}
		VPUNPCKLDQ(h[2], h[0], h[0])
		VPUNPCKLDQ(h[6], h[4], h[4])
		VPUNPCKLQDQ(h[4], h[0], h[0])
		dw := YMM()
		VCVTPH2PS(h[0], dw)
		if vnni {
			VMULPS_BCST(g.dMem(0), dw, dw)
		} else {
			dx := YMM()
			VBROADCASTSS(g.dMem(0), dx)
			VMULPS(dx, dw, dw)
		}
		VFMADD231PS(dw, sum, acc)
	})
	VMOVUPS(acc, out)
}

// offsetSum returns o·Σx over the current activation block (o the _0
// offset) in every int32 lane.
func (g *kernel) offsetSum() VecVirtual {
	c, t := YMM(), YMM()
	if g.is.vnni {
		VPXOR(c, c, c)
		VPDPBUSD(g.xMem(0), g.o, c)
	} else {
		VPMADDUBSW(g.xMem(0), g.o, c)
		VPMADDWD(ones16, c, c)
	}
	VPSHUFD(U8(0x4e), c, t)
	VPADDD(t, c, c)
	VPSHUFD(U8(0xb1), c, t)
	VPADDD(t, c, c)
	VPERMQ(U8(0x4e), c, t)
	VPADDD(t, c, c)
	return c
}
