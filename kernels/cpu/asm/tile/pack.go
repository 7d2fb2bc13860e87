package main

import (
	"fmt"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The packers write a tile of 16 whole weight rows in the packed layout:
// each block's rows are loaded a register per row (or per few rows),
// transposed with unpacks and two-table permutes so that each register ends
// up holding one group of four levels for all 16 rows, and the fp16 scales
// gathered as they are. Which register holds which group after the shuffles
// is worked out here by following the lanes through them.

// lanes follows where each dword came from: lane i of a register holds
// dword word of row row.
type lanes [16]struct{ row, word int }

func unpack(a, b lanes, hi, quad bool) lanes {
	var out lanes
	for c := 0; c < 16; c += 4 { // each 128-bit chunk on its own
		if quad {
			h := 0
			if hi {
				h = 2
			}
			out[c], out[c+1], out[c+2], out[c+3] = a[c+h], a[c+h+1], b[c+h], b[c+h+1]
		} else {
			h := 0
			if hi {
				h = 2
			}
			out[c], out[c+1], out[c+2], out[c+3] = a[c+h], b[c+h], a[c+h+1], b[c+h+1]
		}
	}
	return out
}

// permQ is VPERMT2Q: qword i of the result is qword idx[i] of a (< 8) or
// of b (8 and up).
func permQ(a, b lanes, idx [8]int) lanes {
	var out lanes
	for i, x := range idx {
		src, q := a, x
		if x >= 8 {
			src, q = b, x-8
		}
		out[2*i], out[2*i+1] = src[2*q], src[2*q+1]
	}
	return out
}

// tracked is a register with the provenance of its lanes.
type tracked struct {
	r VecVirtual
	l lanes
}

func unpackOp(a, b tracked, hi, quad bool) tracked {
	t := tracked{r: ZMM(), l: unpack(a.l, b.l, hi, quad)}
	switch {
	case quad && hi:
		VPUNPCKHQDQ(b.r, a.r, t.r)
	case quad:
		VPUNPCKLQDQ(b.r, a.r, t.r)
	case hi:
		VPUNPCKHDQ(b.r, a.r, t.r)
	default:
		VPUNPCKLDQ(b.r, a.r, t.r)
	}
	return t
}

// group finds which of regs holds level group g for rows 0..15 in order.
func group(regs []tracked, word int) VecVirtual {
	for _, t := range regs {
		ok := true
		for i, l := range t.l {
			if l.row != i || l.word != word {
				ok = false
				break
			}
		}
		if ok {
			return t.r
		}
	}
	panic(fmt.Sprintf("pack: no register holds dword %d of every row", word))
}

// packKernel generates tile32Pack<name>AVX512(w *byte, rowBytes, nb int,
// dst *byte) for Q8_0 (bits 8) or Q4_0 (bits 4); with nibbles, Q4_0 keeps
// its bytes whole: in the layout of the nibble kernels.
func packKernel(name string, size, bits int, nibbles bool) {
	fn := "tile32Pack" + name + "AVX512"
	TEXT(fn, NOSPLIT, "func(w *byte, rowBytes, nb int, dst *byte)")
	layout := "the tile kernels: unsigned levels in eight groups of 64 bytes"
	levels := levelBytes
	if nibbles {
		layout, levels = "the nibble kernels: the stored level bytes in four groups of 64 bytes", nibbleBytes
	}
	Doc(fmt.Sprintf("%s packs 16 %s weight rows, rowBytes apart from w, of nb blocks each into dst "+
		"in the layout of %s, then the fp16 d_w.", fn, strings.TrimSuffix(name, "Nibbles"), layout))
	p0 := Load(Param("w"), GP64())
	rb := Load(Param("rowBytes"), GP64())
	n := Load(Param("nb"), GP64())
	dst := Load(Param("dst"), GP64())
	rb3 := GP64()
	LEAQ(Mem{Base: rb, Index: rb, Scale: 2}, rb3)
	// Rows 4k..4k+3 from base[k] at 0, rb, 2rb, 3rb.
	base := [4]GPVirtual{p0.(GPVirtual), GP64(), GP64(), GP64()}
	for k := 1; k < 4; k++ {
		LEAQ(Mem{Base: base[k-1], Index: rb, Scale: 4}, base[k])
	}
	row := func(r, disp int) Mem {
		m := Mem{Base: base[r/4], Disp: disp}
		switch r % 4 {
		case 1:
			m.Index, m.Scale = rb, 1
		case 2:
			m.Index, m.Scale = rb, 2
		case 3:
			m.Index, m.Scale = rb3, 1
		}
		return m
	}
	// Gather indices: row r's offset r·rowBytes.
	idx, step := ZMM(), ZMM()
	t := GP32()
	MOVL(U32(0), t)
	VPBROADCASTD(t, idx)
	VPBROADCASTD(rb.(GPVirtual).As32(), step)
	VPMULLD(ramp, step, idx)
	TESTQ(n, n)
	JZ(LabelRef("done"))
	Label("block")
	// The rows stream from memory once per product: prefetching each
	// ahead keeps more lines in flight than the hardware's own prefetch.
	for r := range 16 {
		PREFETCHT0(row(r, packAhead))
	}
	var regs []tracked
	if bits == 8 {
		// Z_r: row r's 32 levels in the low half, row r+8's in the high.
		var z [8]tracked
		for r := range 8 {
			z[r].r = ZMM()
			VMOVDQU32(row(r, 2), z[r].r.AsY())
			VINSERTI64X4(U8(1), row(r+8, 2), z[r].r, z[r].r)
			for i := range 16 {
				z[r].l[i].row, z[r].l[i].word = r+8*(i/8), i%8
			}
		}
		var u1, u2 []tracked
		for p := 0; p < 8; p += 2 {
			u1 = append(u1, unpackOp(z[p], z[p+1], false, false), unpackOp(z[p], z[p+1], true, false))
		}
		for p := 0; p < 8; p += 4 {
			for _, hi := range []bool{false, true} {
				for j := range 2 {
					u2 = append(u2, unpackOp(u1[p+j], u1[p+2+j], hi, true))
				}
			}
		}
		for i := range 4 {
			for h, ix := range halves {
				o := tracked{r: ZMM(), l: permQ(u2[i].l, u2[i+4].l, ix)}
				VMOVDQU64(halfIdx[h], o.r)
				VPERMI2Q(u2[i+4].r, u2[i].r, o.r)
				regs = append(regs, o)
			}
		}
		for g := range 8 {
			r := group(regs, g)
			VPXORD_BCST(flip, r, r)
			VMOVDQU32(r, Mem{Base: dst, Disp: 64 * g})
		}
	} else {
		// Z_k: rows k, k+4, k+8, k+12's 16 bytes in its four chunks.
		var z [4]tracked
		for k := range 4 {
			z[k].r = ZMM()
			VMOVDQU32(row(k, 2), z[k].r.AsX())
			for c := 1; c < 4; c++ {
				VINSERTI32X4(U8(c), row(k+4*c, 2), z[k].r, z[k].r)
			}
			for i := range 16 {
				z[k].l[i].row, z[k].l[i].word = k+4*(i/4), i%4
			}
		}
		t0, t1 := unpackOp(z[0], z[1], false, false), unpackOp(z[0], z[1], true, false)
		t2, t3 := unpackOp(z[2], z[3], false, false), unpackOp(z[2], z[3], true, false)
		regs = []tracked{unpackOp(t0, t2, false, true), unpackOp(t0, t2, true, true), unpackOp(t1, t3, false, true), unpackOp(t1, t3, true, true)}
		for j := range 4 {
			r := group(regs, j)
			if nibbles {
				VMOVDQU32(r, Mem{Base: dst, Disp: 64 * j})
				continue
			}
			h := ZMM()
			VPSRLD(U8(4), r, h)
			VPANDD_BCST(nibble, r, r)
			VPANDD_BCST(nibble, h, h)
			VMOVDQU32(r, Mem{Base: dst, Disp: 64 * j})
			VMOVDQU32(h, Mem{Base: dst, Disp: 64 * (j + 4)})
		}
	}
	// The scales: a dword gathered from each row's block start, its low
	// word the fp16 d.
	k := K()
	KXNORW(k, k, k)
	d := ZMM()
	VPXORD(d, d, d)
	VPGATHERDD(Mem{Base: base[0], Index: idx, Scale: 1}, k, d)
	VPMOVDW(d, Mem{Base: dst, Disp: levels})
	for _, b := range base {
		ADDQ(U8(size), b)
	}
	ADDQ(U32(levels+scaleBytes), dst)
	DECQ(n)
	JNZ(LabelRef("block"))
	Label("done")
	VZEROUPPER()
	RET()
}

// packAhead is how far ahead of the block being packed each row is
// prefetched, in bytes.
var packAhead = 768

// Constants for the packers: the byte flip making Q8_0 levels unsigned,
// the nibble mask, the gather's row numbers, and the VPERMI2Q indices
// joining the low and the high 128-bit lanes of two registers' halves.
var (
	flip, nibble, ramp Mem
	halves             = [2][8]int{{0, 1, 8, 9, 4, 5, 12, 13}, {2, 3, 10, 11, 6, 7, 14, 15}}
	halfIdx            [2]Mem
)

func packConstants() {
	flip = GLOBL("tile32flip", RODATA|NOPTR)
	DATA(0, U32(0x80808080))
	nibble = GLOBL("tile32nibble", RODATA|NOPTR)
	DATA(0, U32(0x0f0f0f0f))
	ramp = GLOBL("tile32ramp", RODATA|NOPTR)
	for i := range 16 {
		DATA(4*i, U32(uint32(i)))
	}
	for h, ix := range halves {
		halfIdx[h] = GLOBL(fmt.Sprintf("tile32half%d", h), RODATA|NOPTR)
		for i, x := range ix {
			DATA(8*i, U64(uint64(x)))
		}
	}
}

// packActsOne generates tile32PackActsOneAVX512(q *int8, cols int, d
// *float32, nb, rows int, dst *byte): the group of rows (1 to 4) activation
// rows of Q8_0 levels at q (row i at q+i·cols) and scales at d (row i at
// d+i·nb) packed for the one-lane kernels, rows past rows zero: per block
// the four rows' 32 levels, their d_x, and −128 times each row's level sum
// (VPSADBW of the levels made unsigned gives the sum plus 32·128).
func packActsOne() {
	TEXT("tile32PackActsOneAVX512", NOSPLIT, "func(q *int8, cols int, d *float32, nb, rows int, dst *byte)")
	Doc("tile32PackActsOneAVX512 packs rows (1 to 4) Q8_0 activation rows, levels cols apart from q and scales nb apart from d, for the one-lane tile kernels, as tile32.packActs does.")
	q := Load(Param("q"), GP64())
	cols := Load(Param("cols"), GP64())
	d := Load(Param("d"), GP64())
	nb := Load(Param("nb"), GP64())
	rows := Load(Param("rows"), GP64())
	dst := Load(Param("dst"), GP64())
	n, t, qi, di := GP64(), GP64(), GP64(), GP64()
	MOVQ(nb, n)
	SHLQ(U8(2), nb) // a row of scales, in bytes
	zero, lv, u, sum, hi, flipY := YMM(), YMM(), YMM(), YMM(), YMM(), YMM()
	VPXOR(zero, zero, zero)
	VPBROADCASTD(flip, flipY)
	TESTQ(n, n)
	JZ(LabelRef("acts_done"))
	Label("acts_block")
	MOVQ(q, qi)
	MOVQ(d, di)
	for i := range 4 {
		skip := fmt.Sprintf("acts_zero%d", i)
		next := fmt.Sprintf("acts_next%d", i)
		CMPQ(rows, U8(i))
		JLE(LabelRef(skip))
		VMOVDQU(Mem{Base: qi}, lv)
		VMOVDQU(lv, Mem{Base: dst, Disp: 32 * i})
		VPXOR(flipY, lv, u)
		VPSADBW(zero, u, sum)
		VEXTRACTI128(U8(1), sum, hi.AsX())
		VPADDQ(hi.AsX(), sum.AsX(), sum.AsX())
		VPSHUFD(U8(0x4e), sum.AsX(), hi.AsX())
		VPADDQ(hi.AsX(), sum.AsX(), sum.AsX())
		VMOVD(sum.AsX(), t.As32())
		// −128·(Σu − 4096) = 524288 − 128·Σu.
		SHLL(U8(7), t.As32())
		NEGL(t.As32())
		ADDL(U32(524288), t.As32())
		MOVL(t.As32(), Mem{Base: dst, Disp: actLevels + 16 + 4*i})
		MOVL(Mem{Base: di}, t.As32())
		MOVL(t.As32(), Mem{Base: dst, Disp: actLevels + 4*i})
		ADDQ(cols, qi)
		ADDQ(nb, di)
		JMP(LabelRef(next))
		Label(skip)
		VMOVDQU(zero, Mem{Base: dst, Disp: 32 * i})
		MOVL(U32(0), Mem{Base: dst, Disp: actLevels + 4*i})
		MOVL(U32(0), Mem{Base: dst, Disp: actLevels + 16 + 4*i})
		Label(next)
	}
	ADDQ(U8(32), q)
	ADDQ(U8(4), d)
	ADDQ(U32(actLevels+32), dst)
	DECQ(n)
	JNZ(LabelRef("acts_block"))
	Label("acts_done")
	VZEROUPPER()
	RET()
}

// unpackNibbles generates tile32UnpackQ4_0AVX512(w *byte, nb int, dst
// *byte): a tile in the nibble kernels' layout rewritten in the tile
// kernels' (group j's low nibbles are levels group j, its high ones group
// j+4), for products of several activation rows, which read a tile once per
// group of four.
func unpackNibbles() {
	TEXT("tile32UnpackQ4_0AVX512", NOSPLIT, "func(w *byte, nb int, dst *byte)")
	Doc("tile32UnpackQ4_0AVX512 rewrites the nb blocks of a Q4_0 tile at w, in the nibble kernels' layout, into dst in the tile kernels' layout.")
	w := Load(Param("w"), GP64())
	n := Load(Param("nb"), GP64())
	dst := Load(Param("dst"), GP64())
	nib, lo, hi, d := ZMM(), ZMM(), ZMM(), YMM()
	VPBROADCASTD(nibble, nib)
	TESTQ(n, n)
	JZ(LabelRef("unpack_done"))
	Label("unpack_block")
	for j := range 4 {
		VMOVDQU32(Mem{Base: w, Disp: 64 * j}, lo)
		VPSRLD(U8(4), lo, hi)
		VPANDD(nib, lo, lo)
		VPANDD(nib, hi, hi)
		VMOVDQU32(lo, Mem{Base: dst, Disp: 64 * j})
		VMOVDQU32(hi, Mem{Base: dst, Disp: 64 * (j + 4)})
	}
	VMOVDQU(Mem{Base: w, Disp: nibbleBytes}, d)
	VMOVDQU(d, Mem{Base: dst, Disp: levelBytes})
	ADDQ(U32(nibbleBytes+scaleBytes), w)
	ADDQ(U32(levelBytes+scaleBytes), dst)
	DECQ(n)
	JNZ(LabelRef("unpack_block"))
	Label("unpack_done")
	VZEROUPPER()
	RET()
}
