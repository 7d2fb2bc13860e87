// Command attn generates the amd64 kernels of package cpu's batched
// attention (AVX-512): scores and score-weighted value sums of one query row
// against the keys and values of one KV head, transposed into tiles of 16
// positions (HeadDim rows of 16 floats, one position per lane), so that each
// position's sums run in its own lane.
//
// Both keep the float operations of package cpu's per-position kernels in
// their order, lane by lane: a score is vecDotF32 of the query and the key
// (for each t < 64 an FMA chain over the 64-element blocks, folded as fold64,
// times the scale), and a value sum is kqvGo with 16 lanes (lane p mod 16
// accumulating its positions by FMA in order, folded as reduce16).
package main

import (
	"flag"
	"fmt"
	"os"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func main() {
	flag.Parse()
	os.Args = []string{os.Args[0], "-out", "attn_amd64.s", "-stubs", "attn_amd64.go", "-pkg", "cpu"}
	perm := butterflyConstants()
	for _, hd := range []int{64, 128} {
		scores(hd)
		values(hd, perm)
		decodeScores(hd, perm)
		decodeValues(hd)
	}
	maxRow()
	scaleRow()
	normScale()
	halfRows()
	halfRowsStrided()
	prefetchRows()
	foldLanes16()
	valueRows()
	rope()
	Generate()
}

// scores generates attnScoresD<hd>AVX512(kt, q *float32, tiles int, scale
// float32, s *float32): s[16τ+l] = scale · (q · key 16τ+l) for the tiles
// tiles at kt.
func scores(hd int) {
	name := fmt.Sprintf("attnScoresD%dAVX512", hd)
	TEXT(name, NOSPLIT, "func(kt, q *float32, tiles int, scale float32, s *float32)")
	Doc(fmt.Sprintf("%s sets s[16τ+l] to scale times the dot product of the query q (%d values) and position l of "+
		"key tile τ < tiles at kt, summed as vecDotF32.", name, hd))
	kt := Load(Param("kt"), GP64())
	q := Load(Param("q"), GP64())
	n := Load(Param("tiles"), GP64())
	s := Load(Param("s"), GP64())
	sc := ZMM()
	VBROADCASTSS(NewParamAddr("scale", 24), sc)
	var r [16]VecVirtual
	for t := range r {
		r[t] = ZMM()
	}
	var a [4]VecVirtual
	for u := range a {
		a[u] = ZMM()
	}
	qb := ZMM()
	TESTQ(n, n)
	JZ(LabelRef("done"))
	Label("tile")
	for t := range 16 {
		// fold64: (a_t + a_{32+t}) + (a_{16+t} + a_{48+t}).
		for u, e := range []int{t, 32 + t, 16 + t, 48 + t} {
			VXORPS(a[u], a[u], a[u])
			for b := 0; b < hd; b += 64 {
				VBROADCASTSS(Mem{Base: q, Disp: 4 * (b + e)}, qb)
				VFMADD231PS(Mem{Base: kt, Disp: 64 * (b + e)}, qb, a[u])
			}
		}
		VADDPS(a[1], a[0], a[0])
		VADDPS(a[3], a[2], a[2])
		VADDPS(a[2], a[0], r[t])
	}
	// reduce16 of the sixteen, lane by lane.
	for i := range 8 {
		VADDPS(r[i+8], r[i], r[i])
	}
	for i := range 4 {
		VADDPS(r[i+4], r[i], r[i])
	}
	VADDPS(r[2], r[0], r[0])
	VADDPS(r[3], r[1], r[1])
	VADDPS(r[1], r[0], r[0])
	VMULPS(sc, r[0], r[0])
	VMOVUPS(r[0], Mem{Base: s})
	ADDQ(U32(64*hd), kt)
	ADDQ(U8(64), s)
	DECQ(n)
	JNZ(LabelRef("tile"))
	Label("done")
	VZEROUPPER()
	RET()
}

// butterfly is the reduction of sixteen registers' lanes: at each level,
// pairs of registers are permuted into the lanes whose sums reduce16 takes
// next, P and Q, and added; lane k of the last register then holds the sum
// of register perm[k].
type butterfly struct {
	p, q  [4]Mem // the index vectors of VPERMI2PS per level (steps 8, 4, 2, 1)
	order Mem    // VPERMPS indices putting register j's sum in lane j
}

func butterflyConstants() butterfly {
	var bf butterfly
	// owner[r][k]: which register's sums lane k of register r holds.
	owner := make([][16]int, 16)
	for r := range owner {
		for k := range 16 {
			owner[r][k] = r
		}
	}
	for lvl, s := range []int{8, 4, 2, 1} {
		var ip, iq [16]uint32
		var next [][16]int
		for g := 0; g < 16; g += 2 * s {
			for i := range s {
				ip[g+i], ip[g+s+i] = uint32(g+i), uint32(16+g+i)
				iq[g+i], iq[g+s+i] = uint32(g+s+i), uint32(16+g+s+i)
			}
		}
		for r := 0; r < len(owner); r += 2 {
			var o [16]int
			for k, x := range ip {
				if x < 16 {
					o[k] = owner[r][x]
				} else {
					o[k] = owner[r+1][x-16]
				}
			}
			next = append(next, o)
		}
		owner = next
		bf.p[lvl] = dwords16(fmt.Sprintf("attnbfp%d", s), ip)
		bf.q[lvl] = dwords16(fmt.Sprintf("attnbfq%d", s), iq)
	}
	var ord [16]uint32
	for k, r := range owner[0] {
		ord[r] = uint32(k)
	}
	bf.order = dwords16("attnbforder", ord)
	return bf
}

// fold emits the butterfly over regs (sixteen registers, overwritten), with
// p and q for the permutations, and returns the register whose lane j then
// holds the sum of regs[j]'s lanes, folded as reduce16.
func (bf butterfly) fold(regs [16]VecVirtual, p, q VecVirtual) VecVirtual {
	rs := regs[:]
	for lvl := range 4 {
		var next []VecVirtual
		for r := 0; r < len(rs); r += 2 {
			VMOVDQU32(bf.p[lvl], p)
			VPERMI2PS(rs[r+1], rs[r], p)
			VMOVDQU32(bf.q[lvl], q)
			VPERMI2PS(rs[r+1], rs[r], q)
			VADDPS(q, p, rs[r])
			next = append(next, rs[r])
		}
		rs = next
	}
	VMOVDQU32(bf.order, p)
	VPERMPS(rs[0], p, rs[0])
	return rs[0]
}

func dwords16(name string, v [16]uint32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i, x := range v {
		DATA(4*i, U32(x))
	}
	return m
}

// values generates attnValuesD<hd>AVX512(vt, s *float32, tiles int, mask
// uint16, o *float32): o[d] = Σ_p s[p]·value p at d over the tiles at vt,
// the last tile's positions limited to the lanes set in mask.
func values(hd int, bf butterfly) {
	name := fmt.Sprintf("attnValuesD%dAVX512", hd)
	TEXT(name, NOSPLIT, "func(vt, s *float32, tiles int, mask uint16, o *float32)")
	Doc(fmt.Sprintf("%s sets o[d] (d < %d) to the sum over the value tiles τ < tiles (at least 1) at vt of "+
		"position l of tile τ at d times s[16τ+l], in 16 lanes folded as reduce16, the last tile taking only "+
		"the positions whose bits are set in mask.", name, hd))
	vt0 := Load(Param("vt"), GP64())
	s0 := Load(Param("s"), GP64())
	n := Load(Param("tiles"), GP64())
	o := Load(Param("o"), GP64())
	k := K()
	KMOVW(NewParamAddr("mask", 24), k)
	DECQ(n) // whole tiles before the last
	vt, s, i := GP64(), GP64(), GP64()
	var acc [16]VecVirtual
	for j := range acc {
		acc[j] = ZMM()
	}
	sv := ZMM()
	p, q := ZMM(), ZMM()
	for c := 0; c < hd; c += 16 {
		lbl := fmt.Sprint(c)
		for j := range acc {
			VXORPS(acc[j], acc[j], acc[j])
		}
		MOVQ(vt0, vt)
		MOVQ(s0, s)
		MOVQ(n, i)
		TESTQ(i, i)
		JZ(LabelRef("last" + lbl))
		Label("tile" + lbl)
		VMOVUPS(Mem{Base: s}, sv)
		for j := range acc {
			VFMADD231PS(Mem{Base: vt, Disp: 64 * (c + j)}, sv, acc[j])
		}
		ADDQ(U32(64*hd), vt)
		ADDQ(U8(64), s)
		DECQ(i)
		JNZ(LabelRef("tile" + lbl))
		Label("last" + lbl)
		VMOVUPS(Mem{Base: s}, sv)
		for j := range acc {
			VFMADD231PS(Mem{Base: vt, Disp: 64 * (c + j)}, sv, k, acc[j])
		}
		// reduce16 of each register, all sixteen at once.
		VMOVUPS(bf.fold(acc, p, q), Mem{Base: o, Disp: 4 * c})
	}
	VZEROUPPER()
	RET()
}

// maxRow generates softmaxMaxAVX512(x []float32) (mx float32, nan bool): the
// largest of the values, and whether one is NaN (which VMAXPS does not
// propagate; Softmax's max does).
func maxRow() {
	TEXT("softmaxMaxAVX512", NOSPLIT, "func(x []float32) (mx float32, nan bool)")
	Doc("softmaxMaxAVX512 returns the largest value of x (−Inf when empty) and whether x holds a NaN.")
	xp := Load(Param("x").Base(), GP64())
	n := GP64()
	Load(Param("x").Len(), n)
	mx, v := ZMM(), ZMM()
	inf := GP32()
	MOVL(U32(0xff800000), inf)
	VPBROADCASTD(inf, mx)
	nan, k := K(), K()
	KXORW(nan, nan, nan)
	wholeThenTail(n, xp, 64, func() {
		VMOVUPS(Mem{Base: xp}, v)
		VCMPPS(U8(3), v, v, k) // unordered: NaN
		KORW(k, nan, nan)
		VMAXPS(v, mx, mx)
	}, func(tail Register) {
		// The tail's lanes, loaded under a mask that sets the others to −Inf.
		VPBROADCASTD(inf, v)
		VMOVUPS(Mem{Base: xp}, tail, v)
		VCMPPS(U8(3), v, v, k)
		KORW(k, nan, nan)
		VMAXPS(v, mx, mx)
	})
	h := YMM()
	VEXTRACTF64X4(U8(1), mx, h)
	VMAXPS(h, mx.AsY(), h)
	x := XMM()
	VEXTRACTF128(U8(1), h, x)
	VMAXPS(x, h.AsX(), x)
	y := XMM()
	VPERMILPS(U8(0x4e), x, y)
	VMAXPS(y, x, x)
	VPERMILPS(U8(0xb1), x, y)
	VMAXPS(y, x, x)
	Store(x, ReturnIndex(0))
	r := GP32()
	KMOVW(nan, r)
	TESTL(r, r)
	SETNE(r.As8())
	Store(r.As8(), ReturnIndex(1))
	VZEROUPPER()
	RET()
}

// scaleRow generates scaleRowAVX512(x []float32, s float32): x[i] = x[i]·s.
func scaleRow() {
	TEXT("scaleRowAVX512", NOSPLIT, "func(x []float32, s float32)")
	Doc("scaleRowAVX512 sets x[i] = x[i]·s.")
	xp := Load(Param("x").Base(), GP64())
	n := GP64()
	Load(Param("x").Len(), n)
	sc, v := ZMM(), ZMM()
	VBROADCASTSS(NewParamAddr("s", 24), sc)
	wholeThenTail(n, xp, 64, func() {
		VMULPS(Mem{Base: xp}, sc, v)
		VMOVUPS(v, Mem{Base: xp})
	}, func(tail Register) {
		VMOVUPS_Z(Mem{Base: xp}, tail, v)
		VMULPS(v, sc, v)
		VMOVUPS(v, tail, Mem{Base: xp})
	})
	VZEROUPPER()
	RET()
}

// normScale generates normScaleAVX512(o, x, w []float32, s float32):
// o[i] = x[i]·s·w[i], RMSNorm's last step, in that order.
func normScale() {
	TEXT("normScaleAVX512", NOSPLIT, "func(o, x, w []float32, s float32)")
	Doc("normScaleAVX512 sets o[i] = (x[i]·s)·w[i] for i < len(o).")
	op := Load(Param("o").Base(), GP64())
	xp := Load(Param("x").Base(), GP64())
	wp := Load(Param("w").Base(), GP64())
	n := GP64()
	Load(Param("o").Len(), n)
	sc, v := ZMM(), ZMM()
	VBROADCASTSS(NewParamAddr("s", 72), sc)
	// o, x and w move on together: x and w as offsets from o.
	SUBQ(op, xp)
	SUBQ(op, wp)
	wholeThenTail(n, op, 64, func() {
		VMULPS(Mem{Base: op, Index: xp, Scale: 1}, sc, v)
		VMULPS(Mem{Base: op, Index: wp, Scale: 1}, v, v)
		VMOVUPS(v, Mem{Base: op})
	}, func(tail Register) {
		VMOVUPS_Z(Mem{Base: op, Index: xp, Scale: 1}, tail, v)
		VMULPS(v, sc, v)
		t := ZMM()
		VMOVUPS_Z(Mem{Base: op, Index: wp, Scale: 1}, tail, t)
		VMULPS(t, v, v)
		VMOVUPS(v, tail, Mem{Base: op})
	})
	VZEROUPPER()
	RET()
}

// halfRows generates fromHalfAVX512(dst []float32, src []uint16) and
// toHalfAVX512(dst []uint16, src []float32), converting len(dst) values with
// F16C (rounding to nearest, ties to even).
func halfRows() {
	for _, to := range []bool{false, true} {
		name, sig, doc := "fromHalfAVX512", "func(dst []float32, src []uint16)", "sets dst[i] to the fp16 value src[i]"
		if to {
			name, sig, doc = "toHalfAVX512", "func(dst []uint16, src []float32)", "sets dst[i] to src[i] rounded to fp16 (to nearest, ties to even)"
		}
		TEXT(name, NOSPLIT, sig)
		Doc(fmt.Sprintf("%s %s for i < len(dst).", name, doc))
		dp := Load(Param("dst").Base(), GP64())
		sp := Load(Param("src").Base(), GP64())
		n := GP64()
		Load(Param("dst").Len(), n)
		f, h := ZMM(), YMM()
		// The pointers move on together: dp by the f32 or fp16 bytes of
		// 16 values, sp by the other's.
		dstep, sstep := 64, 32
		if to {
			dstep, sstep = 32, 64
		}
		wholeThenTail(n, dp, dstep, func() {
			if to {
				VMOVUPS(Mem{Base: sp}, f)
				VCVTPS2PH(U8(0), f, h)
				VMOVDQU(h, Mem{Base: dp})
			} else {
				VCVTPH2PS(Mem{Base: sp}, f)
				VMOVUPS(f, Mem{Base: dp})
			}
			ADDQ(U8(sstep), sp)
		}, func(k Register) {
			if to {
				VMOVUPS_Z(Mem{Base: sp}, k, f)
				VCVTPS2PH(U8(0), f, h)
				VMOVDQU16(h, k, Mem{Base: dp})
			} else {
				VMOVDQU16_Z(Mem{Base: sp}, k, h)
				VCVTPH2PS(h, f)
				VMOVUPS(f, k, Mem{Base: dp})
			}
		})
		VZEROUPPER()
		RET()
	}
}

// wholeThenTail emits a loop that runs whole for every 16 of the n values,
// advancing p by step bytes after each, then tail with a mask of the lanes
// left, if any. It consumes n.
func wholeThenTail(n GPVirtual, p Register, step int, whole func(), tail func(k Register)) {
	full := GP64()
	MOVQ(n, full)
	SHRQ(U8(4), full)
	JZ(LabelRef("tail"))
	Label("whole")
	whole()
	ADDQ(U8(step), p)
	DECQ(full)
	JNZ(LabelRef("whole"))
	Label("tail")
	ANDQ(U8(15), n)
	JZ(LabelRef("done"))
	ones := GP32()
	MOVL(U32(1), ones)
	SHLXL(n.As32(), ones, ones)
	DECL(ones)
	k := K()
	KMOVW(ones, k)
	tail(k)
	Label("done")
}

// halfRowsStrided generates fromHalfRowsAVX512(dst []float32, src []uint16,
// cols, stride int): row r of len(dst)/cols, from src[r·stride:] (cols
// values, a multiple of 16), converted to dst[r·cols:]. A KV head's keys of
// successive positions lie a cache row apart: the rows four ahead are
// prefetched, so that their misses overlap the conversion.
func halfRowsStrided() {
	TEXT("fromHalfRowsAVX512", NOSPLIT, "func(dst []float32, src []uint16, cols, stride int)")
	Doc("fromHalfRowsAVX512 converts the fp16 rows of cols values (a multiple of 16) that start stride values apart in src into the rows of dst, one after the other, prefetching the source rows four ahead.")
	dp := Load(Param("dst").Base(), GP64())
	sp := Load(Param("src").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	cols := Load(Param("cols"), GP64())
	stride := Load(Param("stride"), GP64())
	SHLQ(U8(1), stride) // in bytes
	ahead := GP64()
	f := ZMM()
	Label("row")
	CMPQ(n, cols)
	JB(LabelRef("done"))
	LEAQ(Mem{Base: sp, Index: stride, Scale: 4}, ahead)
	i := GP64()
	XORQ(i, i)
	Label("chunk")
	PREFETCHT0(Mem{Base: ahead, Index: i, Scale: 2})
	VCVTPH2PS(Mem{Base: sp, Index: i, Scale: 2}, f)
	VMOVUPS(f, Mem{Base: dp, Index: i, Scale: 4})
	ADDQ(U8(16), i)
	CMPQ(i, cols)
	JB(LabelRef("chunk"))
	LEAQ(Mem{Base: dp, Index: cols, Scale: 4}, dp)
	ADDQ(stride, sp)
	SUBQ(cols, n)
	JMP(LabelRef("row"))
	Label("done")
	VZEROUPPER()
	RET()
}

// prefetchRows generates prefetchRowsAVX512(src []uint16, cols, stride
// int): every cache line of the rows of cols values that start stride
// values apart in src, fetched into L1.
func prefetchRows() {
	TEXT("prefetchRowsAVX512", NOSPLIT, "func(src []uint16, cols, stride int)")
	Doc("prefetchRowsAVX512 prefetches the fp16 rows of cols values that start stride values apart in src, as many as src holds.")
	sp := Load(Param("src").Base(), GP64())
	n := Load(Param("src").Len(), GP64())
	cols := Load(Param("cols"), GP64())
	stride := Load(Param("stride"), GP64())
	i := GP64()
	Label("pf_row")
	CMPQ(n, cols)
	JL(LabelRef("pf_done")) // signed: n goes below zero past the last row
	XORQ(i, i)
	Label("pf_line")
	PREFETCHT0(Mem{Base: sp, Index: i, Scale: 2})
	ADDQ(U8(32), i)
	CMPQ(i, cols)
	JB(LabelRef("pf_line"))
	LEAQ(Mem{Base: sp, Index: stride, Scale: 2}, sp)
	SUBQ(stride, n)
	JMP(LabelRef("pf_row"))
	Label("pf_done")
	RET()
}

// foldLanes16 generates foldLanes16AVX512(o, acc []float32): the 16 lane
// rows of len(o) values (a multiple of 16) in acc folded into o as package
// cpu's foldLanes folds them, a chunk of 16 columns at a time in registers:
// rows l and l+8, then l and l+4, then 0 and 2, 1 and 3, then the two.
func foldLanes16() {
	TEXT("foldLanes16AVX512", NOSPLIT, "func(o, acc []float32)")
	Doc("foldLanes16AVX512 sets o[d] to the sum of acc's 16 rows of len(o) values at d, in foldLanes' order, for len(o) a multiple of 16.")
	op := Load(Param("o").Base(), GP64())
	ap := Load(Param("acc").Base(), GP64())
	hd := Load(Param("o").Len(), GP64())
	stride := GP64()
	MOVQ(hd, stride)
	SHLQ(U8(2), stride)
	r := make([]VecVirtual, 16)
	for l := range r {
		r[l] = ZMM()
	}
	rowPtr := [4]GPVirtual{GP64(), GP64(), GP64(), GP64()}
	i := GP64()
	XORQ(i, i)
	Label("fold_chunk")
	CMPQ(i, hd)
	JAE(LabelRef("fold_done"))
	// Rows 4k..4k+3 from rowPtr[k] at 0, stride, 2·stride, 3·stride.
	LEAQ(Mem{Base: ap, Index: i, Scale: 4}, rowPtr[0])
	for k := 1; k < 4; k++ {
		LEAQ(Mem{Base: rowPtr[k-1], Index: stride, Scale: 4}, rowPtr[k])
	}
	s3 := GP64()
	LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, s3)
	for l := range 16 {
		m := Mem{Base: rowPtr[l/4]}
		switch l % 4 {
		case 1:
			m.Index, m.Scale = stride, 1
		case 2:
			m.Index, m.Scale = stride, 2
		case 3:
			m.Index, m.Scale = s3, 1
		}
		VMOVUPS(m, r[l])
	}
	for l := range 8 {
		VADDPS(r[l+8], r[l], r[l])
	}
	for l := range 4 {
		VADDPS(r[l+4], r[l], r[l])
	}
	VADDPS(r[2], r[0], r[0])
	VADDPS(r[3], r[1], r[1])
	VADDPS(r[1], r[0], r[0])
	VMOVUPS(r[0], Mem{Base: op, Index: i, Scale: 4})
	ADDQ(U8(16), i)
	JMP(LabelRef("fold_chunk"))
	Label("fold_done")
	VZEROUPPER()
	RET()
}

// valueRows generates attnValueRowsAVX512(acc, v, s []float32, hd, width
// int): for each position p < len(s), acc[(p mod width)·hd + d] =
// fma(v[p·hd+d], s[p], acc[…]) for d < hd (a multiple of 16): kqvGo's lane
// sums over value rows held one after the other, in one call instead of one
// per position.
func valueRows() {
	TEXT("attnValueRowsAVX512", NOSPLIT, "func(acc, v, s []float32, hd, width int)")
	Doc("attnValueRowsAVX512 adds v's rows of hd values (a multiple of 16), each times its s[p], to row p mod width of acc by FMA, in order of p.")
	accBase := Load(Param("acc").Base(), GP64())
	vp := Load(Param("v").Base(), GP64())
	sp := Load(Param("s").Base(), GP64())
	n := Load(Param("s").Len(), GP64())
	hd := Load(Param("hd"), GP64())
	width := Load(Param("width"), GP64())
	rowBytes := GP64()
	MOVQ(hd, rowBytes)
	SHLQ(U8(2), rowBytes)
	lane, ap := GP64(), GP64()
	XORQ(lane, lane)
	MOVQ(accBase, ap)
	chunks := GP64()
	MOVQ(hd, chunks)
	SHRQ(U8(4), chunks)
	c, off := GP64(), GP64()
	w, t := ZMM(), ZMM()
	TESTQ(n, n)
	JZ(LabelRef("done"))
	Label("pos")
	VBROADCASTSS(Mem{Base: sp}, w)
	MOVQ(chunks, c)
	XORQ(off, off)
	Label("chunk")
	VMOVUPS(Mem{Base: ap, Index: off, Scale: 1}, t)
	VFMADD231PS(Mem{Base: vp, Index: off, Scale: 1}, w, t)
	VMOVUPS(t, Mem{Base: ap, Index: off, Scale: 1})
	ADDQ(U8(64), off)
	DECQ(c)
	JNZ(LabelRef("chunk"))
	ADDQ(rowBytes, vp)
	ADDQ(U8(4), sp)
	// The next accumulator row, back to the first after width of them.
	ADDQ(rowBytes, ap)
	INCQ(lane)
	CMPQ(lane, width)
	JB(LabelRef("same"))
	XORQ(lane, lane)
	MOVQ(accBase, ap)
	Label("same")
	DECQ(n)
	JNZ(LabelRef("pos"))
	Label("done")
	VZEROUPPER()
	RET()
}

// decodeScores generates attnDecodeScoresD<hd>AVX512: the scores of one
// query row's heads that share a KV head against a run of m ≤ 16 fp16 key
// rows of a paged cache (stride bytes apart). The rows are converted once,
// into buf (16 rows of hd floats; those past m are zero), for all the
// heads. Each head then takes every row as vecDot64RowsF32AVX512 does (an
// FMA chain per 16 values over the 64-value blocks, the four chains added
// (0+2)+(1+3)), and the sixteen rows' lanes are folded at once by the
// butterfly, in vecDot64's order, so that a position's score is the one the
// per-row kernel gives, times scale.
func decodeScores(hd int, bf butterfly) {
	name := fmt.Sprintf("attnDecodeScoresD%dAVX512", hd)
	TEXT(name, NOSPLIT, "func(k *uint16, stride, m int, q *float32, heads int, s *float32, sStride int, buf *float32, scale float32, mask uint16)")
	Doc(fmt.Sprintf("%s sets, for each head g < heads (query at q+%d·g values, scores at s+sStride·g bytes) and "+
		"position p < m (mask has the low m bits set), the score to scale times vecDot64 of the query and the fp16 key "+
		"row at k+stride·p bytes, converting the rows once into buf (16·%d floats).", name, hd, hd))
	kp := Load(Param("k"), GP64())
	stride := Load(Param("stride"), GP64())
	m := Load(Param("m"), GP64())
	qp := Load(Param("q"), GP64())
	heads := Load(Param("heads"), GP64())
	sp := Load(Param("s"), GP64())
	sStride := Load(Param("sStride"), GP64())
	buf := Load(Param("buf"), GP64())
	sc := ZMM()
	VBROADCASTSS(NewParamAddr("scale", 64), sc)
	mk := K()
	KMOVW(NewParamAddr("mask", 68), mk)
	chunks := hd / 16
	row, bp := GP64(), GP64()
	t := ZMM()
	MOVQ(buf, bp)
	XORQ(row, row)
	Label("conv")
	for c := range chunks {
		VCVTPH2PS(Mem{Base: kp, Disp: 32 * c}, t)
		VMOVUPS(t, Mem{Base: bp, Disp: 64 * c})
	}
	ADDQ(stride, kp)
	ADDQ(U32(4*hd), bp)
	INCQ(row)
	CMPQ(row, m)
	JB(LabelRef("conv"))
	VXORPS(t, t, t)
	Label("zero")
	CMPQ(row, U8(16))
	JAE(LabelRef("heads"))
	for c := range chunks {
		VMOVUPS(t, Mem{Base: bp, Disp: 64 * c})
	}
	ADDQ(U32(4*hd), bp)
	INCQ(row)
	JMP(LabelRef("zero"))
	Label("heads")
	qv := make([]VecVirtual, chunks)
	for c := range qv {
		qv[c] = ZMM()
	}
	var r [16]VecVirtual
	for i := range r {
		r[i] = ZMM()
	}
	var a [4]VecVirtual
	for j := range a {
		a[j] = ZMM()
	}
	TESTQ(heads, heads)
	JZ(LabelRef("done"))
	Label("head")
	for c := range qv {
		VMOVUPS(Mem{Base: qp, Disp: 64 * c}, qv[c])
	}
	for i := range r {
		for j := range a {
			VXORPS(a[j], a[j], a[j])
			for b := 0; b < hd; b += 64 {
				c := b/16 + j
				VFMADD231PS(Mem{Base: buf, Disp: 4*hd*i + 64*c}, qv[c], a[j])
			}
		}
		VADDPS(a[2], a[0], a[0])
		VADDPS(a[3], a[1], a[1])
		VADDPS(a[1], a[0], r[i])
	}
	sum := bf.fold(r, a[0], a[1])
	VMULPS(sc, sum, sum)
	VMOVUPS(sum, mk, Mem{Base: sp})
	ADDQ(U32(4*hd), qp)
	ADDQ(sStride, sp)
	DECQ(heads)
	JNZ(LabelRef("head"))
	Label("done")
	VZEROUPPER()
	RET()
}

// decodeValues generates attnDecodeValuesD<hd>AVX512: for each of m fp16
// value rows of a paged cache's run (stride bytes apart), converted once,
// and each head g < heads, acc row (lane+p) mod width of head g (accStride
// bytes from the last) gets fma(value, s_g[p], acc) as attnValueRowsAVX512
// adds it.
func decodeValues(hd int) {
	name := fmt.Sprintf("attnDecodeValuesD%dAVX512", hd)
	TEXT(name, NOSPLIT, "func(v *uint16, stride, m int, s *float32, sStride, heads int, acc *float32, accStride, lane, width int)")
	Doc(fmt.Sprintf("%s adds, for p < m and g < heads, the fp16 value row at v+stride·p bytes (%d values) times "+
		"s[p] of head g (at s+sStride·g bytes) to row (lane+p) mod width of head g's lane sums (at acc+accStride·g "+
		"bytes) by FMA, in order of p.", name, hd))
	vp := Load(Param("v"), GP64())
	stride := Load(Param("stride"), GP64())
	m := Load(Param("m"), GP64())
	sp := Load(Param("s"), GP64())
	sStride := Load(Param("sStride"), GP64())
	heads := Load(Param("heads"), GP64())
	acc := Load(Param("acc"), GP64())
	accStride := Load(Param("accStride"), GP64())
	lane := Load(Param("lane"), GP64())
	width := Load(Param("width"), GP64())
	chunks := hd / 16
	vv := make([]VecVirtual, chunks)
	for c := range vv {
		vv[c] = ZMM()
	}
	w, t := ZMM(), ZMM()
	row, g, sg, ag := GP64(), GP64(), GP64(), GP64()
	TESTQ(m, m)
	JZ(LabelRef("done"))
	Label("pos")
	for c := range vv {
		VCVTPH2PS(Mem{Base: vp, Disp: 32 * c}, vv[c])
	}
	// This position's lane row of head 0.
	IMUL3Q(U32(4*hd), lane, row)
	ADDQ(acc, row)
	MOVQ(heads, g)
	MOVQ(sp, sg)
	MOVQ(row, ag)
	Label("head")
	VBROADCASTSS(Mem{Base: sg}, w)
	for c := range vv {
		VMOVUPS(Mem{Base: ag, Disp: 64 * c}, t)
		VFMADD231PS(vv[c], w, t)
		VMOVUPS(t, Mem{Base: ag, Disp: 64 * c})
	}
	ADDQ(sStride, sg)
	ADDQ(accStride, ag)
	DECQ(g)
	JNZ(LabelRef("head"))
	ADDQ(stride, vp)
	ADDQ(U8(4), sp)
	INCQ(lane)
	CMPQ(lane, width)
	JB(LabelRef("same"))
	XORQ(lane, lane)
	Label("same")
	DECQ(m)
	JNZ(LabelRef("pos"))
	Label("done")
	VZEROUPPER()
	RET()
}
