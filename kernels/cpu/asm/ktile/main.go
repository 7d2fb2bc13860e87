// Command ktile generates the amd64 tile kernels of package cpu for the
// K-quants: sixteen weight rows, packed so that each owns one dword lane of
// a ZMM register, times groups of four Q8_K activation rows (prompt
// processing), for AVX-512 with VNNI. gen.sh runs it as
//
//	go run ./ktile -out ktile_amd64.s -stubs ktile_amd64.go -pkg cpu
//
// Package cpu's ktile_dispatch_amd64.go packs the weights and activations
// in the layouts described at each kernel. Every kernel must give the plain
// Go kernels' results (dot_k.go) bit for bit: the integer sums are exact and
// grouped freely, the float operations are dot_k.go's, lane by lane, in its
// order.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// actRows is how many activation rows a kernel call takes.
const actRows = 4

// Q4_K packed layouts, in bytes per super-block (keep in step with
// ktile_dispatch_amd64.go).
//
// Weights: the unsigned levels (0..15) in 64 groups of 64 bytes (group g:
// for each row r, the levels 4g..4g+3 at 4r), then, as float32 for the 16
// rows, the eight sub-block scales, the eight mins, d and dmin.
//
// Activations of a group of four rows: the levels in 64 groups of 16 bytes
// (group g: for each row i, its levels 4g..4g+3 at 4i), then each row's d
// (float32), then the sums of each 32-element sub-block (bsums[2k] +
// bsums[2k+1], as float32), sub-block k of row i at 16k+4i.
const (
	q4KWLevels = 64 * 64
	q4KWScales = q4KWLevels
	q4KWMins   = q4KWScales + 8*64
	q4KWD      = q4KWMins + 8*64
	q4KWDmin   = q4KWD + 64
	q4KWBytes  = q4KWDmin + 64

	q4KALevels = 64 * 16
	q4KAD      = q4KALevels
	q4KABsums  = q4KAD + 16
	q4KABytes  = q4KABsums + 8*16
)

// The eight-lane kernels (ggml_vec_dot_q{4,5,6}_K_q8_K's order: Q6_K,
// and Q4_K and Q5_K when not repacked) share the packed layouts, in bytes
// per super-block.
//
// Weights: each level (unsigned: 0..15, 0..31 or 0..63, as the x86 kernels
// take them) times its sub-block scale, as int16, in 128 pairs of 64 bytes
// (pair p: for each row r, elements 2p and 2p+1 at 4r); then for Q6_K, per
// lane t, the words −32·scale[2t], −32·scale[2t+1] of each row (64 bytes
// per t), and d as float32; for Q4_K and Q5_K, per pair u of sub-blocks the
// words min[2u], min[2u+1] of each row (64 bytes per u), then d and dmin as
// float32.
//
// Activations of a group of four rows: the levels as int16 in 128 pairs of
// 16 bytes (pair p: for each row i, elements 2p and 2p+1 at 4i), then per
// lane t the words bsums[2t], bsums[2t+1] of each row (16 bytes per t), then
// per pair u the words bsum32(2u), bsum32(2u+1) (the sums of the 32-element
// sub-blocks), then each row's d.
const (
	l8WPairs  = 128 * 64
	l8WNeg    = l8WPairs // Q6_K
	l8WMins   = l8WPairs // Q4_K, Q5_K
	q6KWD     = l8WNeg + 8*64
	q6KWBytes = q6KWD + 64
	q45KWD    = l8WMins + 4*64
	q45KWDmin = q45KWD + 64
	q45KWByte = q45KWDmin + 64

	l8APairs = 128 * 16
	l8ABsums = l8APairs
	l8ABs32  = l8ABsums + 8*16
	l8AD     = l8ABs32 + 4*16
	l8ABytes = l8AD + 16
)

func main() {
	flag.Parse()
	os.Args = []string{os.Args[0], "-out", "ktile_amd64.s", "-stubs", "ktile_amd64.go", "-pkg", "cpu"}
	q4KGemm()
	lanes8(q6K)
	lanes8(q4K)
	lanes8(q5K)
	packQ4K()
	packQ6K()
	Generate()
}

// header declares a kernel func(w, a *byte, nb int, out *float32, ldo int,
// mask uint16) and loads its arguments but the last two.
func header(name, doc string) (w, a, nb, out Register) {
	TEXT(name, NOSPLIT, "func(w, a *byte, nb int, out *float32, ldo int, mask uint16)")
	Doc(name + " multiplies 16 packed weight rows with a packed group of four Q8_K activation rows, nb super-blocks each, " +
		"and sets out[i·ldo+r] to weight row r times activation row i for the rows r set in mask, " + doc)
	return Load(Param("w"), GP64()), Load(Param("a"), GP64()), Load(Param("nb"), GP64()), Load(Param("out"), GP64())
}

// store writes the four rows' results res to out[i·ldo+r], r in mask.
func store(res []VecVirtual, out Register) {
	ldo, m := GP64(), GP32()
	Load(Param("ldo"), ldo)
	SHLQ(U8(2), ldo)
	Load(Param("mask"), m)
	k := K()
	KMOVW(m, k)
	for i, r := range res {
		VMOVUPS(r, k, Mem{Base: out})
		if i+1 < len(res) {
			ADDQ(ldo, out)
		}
	}
}

func zeros(n int) []VecVirtual {
	v := make([]VecVirtual, n)
	for i := range v {
		v[i] = ZMM()
		VXORPS(v[i], v[i], v[i])
	}
	return v
}

func zmms(n int) []VecVirtual {
	v := make([]VecVirtual, n)
	for i := range v {
		v[i] = ZMM()
	}
	return v
}

// q4KGemm is dotQ4_K along pathGemm (repacked Q4_K, rows in fours): per
// super-block d = float32(d_w·d_x) and dm = float32(dmin·d_x); per 64
// elements (sub-blocks k, k+1) si = sc_k·sub_k + sc_{k+1}·sub_{k+1} and mi =
// mn_k·bsum_k + mn_{k+1}·bsum_{k+1}, each formed exactly in float32 (every
// partial product and sum is an integer below 2²⁴), then sum += si·d and
// sumMin += mi·dm by FMA; the result is sum − sumMin.
func q4KGemm() {
	w, a, n, out := header("ktileQ4KGemmAVX512", "in dotQ4_K's gemm order.")
	sum, smin := zeros(actRows), zeros(actRows)
	// Temporaries are allocated once: avo takes an EVEX destination for an
	// input too, so fresh ones per block would be live throughout.
	d, dm := zmms(actRows), zmms(actRows)
	acc := [2][]VecVirtual{zmms(actRows), zmms(actRows)}
	lv := zmms(2)
	dw, sc, mn, mi := ZMM(), ZMM(), ZMM(), ZMM()
	TESTQ(n, n)
	JZ(LabelRef("q4k_store"))
	Label("q4k_block")
	VMOVUPS(Mem{Base: w, Disp: q4KWD}, dw)
	for i := range actRows {
		VMULPS_BCST(Mem{Base: a, Disp: q4KAD + 4*i}, dw, d[i])
	}
	VMOVUPS(Mem{Base: w, Disp: q4KWDmin}, dw)
	for i := range actRows {
		VMULPS_BCST(Mem{Base: a, Disp: q4KAD + 4*i}, dw, dm[i])
	}
	for p := range 4 {
		for h := range 2 {
			for i := range actRows {
				VPXORD(acc[h][i], acc[h][i], acc[h][i])
			}
		}
		// Sub-blocks 2p and 2p+1 side by side: eight dependency chains.
		for gg := range 8 {
			for h := range 2 {
				g := 8*(2*p+h) + gg
				VMOVDQU32(Mem{Base: w, Disp: 64 * g}, lv[h])
				for i := range actRows {
					VPDPBUSD_BCST(Mem{Base: a, Disp: 16*g + 4*i}, lv[h], acc[h][i])
				}
			}
		}
		k := 2 * p
		VMOVUPS(Mem{Base: w, Disp: q4KWScales + 64*k}, sc)
		for i := range actRows {
			VCVTDQ2PS(acc[0][i], acc[0][i])
			VCVTDQ2PS(acc[1][i], acc[1][i])
			VMULPS(sc, acc[0][i], acc[0][i])
		}
		VMOVUPS(Mem{Base: w, Disp: q4KWScales + 64*(k+1)}, sc)
		for i := range actRows {
			VFMADD231PS(sc, acc[1][i], acc[0][i]) // si, exact
			VFMADD231PS(acc[0][i], d[i], sum[i])
		}
		VMOVUPS(Mem{Base: w, Disp: q4KWMins + 64*k}, mn)
		VMOVUPS(Mem{Base: w, Disp: q4KWMins + 64*(k+1)}, sc)
		for i := range actRows {
			VMULPS_BCST(Mem{Base: a, Disp: q4KABsums + 16*k + 4*i}, mn, mi)
			VFMADD231PS_BCST(Mem{Base: a, Disp: q4KABsums + 16*(k+1) + 4*i}, sc, mi) // mi, exact
			VFMADD231PS(mi, dm[i], smin[i])
		}
	}
	ADDQ(U32(q4KWBytes), w)
	ADDQ(U32(q4KABytes), a)
	DECQ(n)
	JNZ(LabelRef("q4k_block"))
	Label("q4k_store")
	for i := range actRows {
		VSUBPS(smin[i], sum[i], sum[i])
	}
	store(sum, out)
	VZEROUPPER()
	RET()
}

type ktype int

const (
	q4K ktype = iota
	q5K
	q6K
)

// lanes8 generates the eight-lane kernel of type t: dotQ6_K, or dotQ4_K
// along pathVecDot, or dotQ5_K. Per super-block and lane t the exact
// integer v = Σ_j scale·g[8j+t] (Q6_K: scale[2j+t/4], less 32·(sc[2t]·bs[2t]
// + sc[2t+1]·bs[2t+1])) comes from VPDPWSSD of the pre-scaled int16
// weights with the int16 activations, then lane_t += d·float32(v) by FMA
// with d = float32(d_x·d_w); the lanes are folded as hsum8. Each float lane
// t is one register per activation row, so lanes t and t+4 are done in one
// pass over the super-blocks, four passes in all, folded as soon as hsum8
// allows to keep the registers within 32. A fifth pass adds the min terms:
// Q4_K's four lanes of −float32(d_x·dmin)·(min[2u]·bsum32(2u) +
// min[2u+1]·bsum32(2u+1)), folded as hsum4 and added to the hsum8, or
// Q5_K's one chain of −float32(d_x·dmin)·Σ_j min_j·bsum32(j), added
// likewise.
func lanes8(typ ktype) {
	name := [...]string{"ktileQ4KVecDotAVX512", "ktileQ5KVecDotAVX512", "ktileQ6KVecDotAVX512"}[typ]
	doc := [...]string{"in dotQ4_K's vec_dot order.", "in dotQ5_K's order.", "in dotQ6_K's order."}[typ]
	wBytes, wD := q45KWByte, q45KWD
	if typ == q6K {
		wBytes, wD = q6KWBytes, q6KWD
	}
	w0, a0, nb, out := header(name, doc)
	w, a, n := GP64(), GP64(), GP64()
	var pair [4][]VecVirtual // lane t + lane t+4 for t < 4, per row
	var fold [2][]VecVirtual // (l0+l4)+(l2+l6), (l1+l5)+(l3+l7)
	lane := [2][]VecVirtual{zmms(actRows), zmms(actRows)}
	acc := [2][]VecVirtual{zmms(actRows), zmms(actRows)}
	lv := zmms(2)
	dw, d, v := ZMM(), ZMM(), ZMM()
	pass := func(label string, body func()) {
		MOVQ(w0, w)
		MOVQ(a0, a)
		MOVQ(nb, n)
		TESTQ(n, n)
		JZ(LabelRef(label + "_done"))
		Label(label)
		body()
		ADDQ(U32(wBytes), w)
		ADDQ(U32(l8ABytes), a)
		DECQ(n)
		JNZ(LabelRef(label))
		Label(label + "_done")
	}
	for tp := range 4 {
		for h := range 2 {
			for i := range actRows {
				VXORPS(lane[h][i], lane[h][i], lane[h][i])
			}
		}
		pass(fmt.Sprintf("%s_pass%d", typ, tp), func() {
			for h := range 2 {
				t := tp + 4*h
				if typ == q6K {
					VMOVDQU32(Mem{Base: w, Disp: l8WNeg + 64*t}, lv[h])
				}
				for i := range actRows {
					VPXORD(acc[h][i], acc[h][i], acc[h][i])
					if typ == q6K {
						VPDPWSSD_BCST(Mem{Base: a, Disp: l8ABsums + 16*t + 4*i}, lv[h], acc[h][i])
					}
				}
			}
			for j := range 8 {
				for e := range 2 {
					for h := range 2 {
						t := tp + 4*h
						p := 16*j + 2*t + e // elements 32j+4t+2e, +1
						VMOVDQU32(Mem{Base: w, Disp: 64 * p}, lv[h])
						for i := range actRows {
							VPDPWSSD_BCST(Mem{Base: a, Disp: 16*p + 4*i}, lv[h], acc[h][i])
						}
					}
				}
			}
			VMOVUPS(Mem{Base: w, Disp: wD}, dw)
			for i := range actRows {
				VMULPS_BCST(Mem{Base: a, Disp: l8AD + 4*i}, dw, d)
				for h := range 2 {
					VCVTDQ2PS(acc[h][i], v)
					VFMADD231PS(d, v, lane[h][i])
				}
			}
		})
		// hsum8: (l0+l4), (l1+l5), (l2+l6), (l3+l7); then (l0+l4)+(l2+l6)
		// and (l1+l5)+(l3+l7); then those two.
		pair[tp] = zmms(actRows)
		for i := range actRows {
			VADDPS(lane[1][i], lane[0][i], pair[tp][i])
		}
		if tp >= 2 {
			fold[tp-2] = pair[tp-2]
			for i := range actRows {
				VADDPS(pair[tp][i], fold[tp-2][i], fold[tp-2][i])
			}
		}
	}
	res := fold[0]
	for i := range actRows {
		VADDPS(fold[1][i], res[i], res[i])
	}
	switch typ {
	case q4K:
		// Four min lanes per row, folded as hsum4: (m0+m2) + (m1+m3).
		var ml [4][]VecVirtual
		for u := range ml {
			ml[u] = zeros(actRows)
		}
		mn := ZMM()
		pass("q4K_mins", func() {
			VMOVUPS(Mem{Base: w, Disp: q45KWDmin}, dw)
			for u := range 4 {
				VMOVDQU32(Mem{Base: w, Disp: l8WMins + 64*u}, mn)
				for i := range actRows {
					VPXORD(acc[0][i], acc[0][i], acc[0][i])
					VPDPWSSD_BCST(Mem{Base: a, Disp: l8ABs32 + 16*u + 4*i}, mn, acc[0][i])
					VCVTDQ2PS(acc[0][i], v)
					VMULPS_BCST(Mem{Base: a, Disp: l8AD + 4*i}, dw, d)
					VFNMADD231PS(d, v, ml[u][i]) // −(d_x·dmin)·m + lane
				}
			}
		})
		for i := range actRows {
			VADDPS(ml[2][i], ml[0][i], ml[0][i])
			VADDPS(ml[3][i], ml[1][i], ml[1][i])
			VADDPS(ml[1][i], ml[0][i], ml[0][i])
			VADDPS(ml[0][i], res[i], res[i])
		}
	case q5K:
		summs := zeros(actRows)
		mn := ZMM()
		pass("q5K_mins", func() {
			VMOVUPS(Mem{Base: w, Disp: q45KWDmin}, dw)
			for i := range actRows {
				VPXORD(acc[0][i], acc[0][i], acc[0][i])
			}
			for u := range 4 {
				VMOVDQU32(Mem{Base: w, Disp: l8WMins + 64*u}, mn)
				for i := range actRows {
					VPDPWSSD_BCST(Mem{Base: a, Disp: l8ABs32 + 16*u + 4*i}, mn, acc[0][i])
				}
			}
			for i := range actRows {
				VCVTDQ2PS(acc[0][i], v)
				VMULPS_BCST(Mem{Base: a, Disp: l8AD + 4*i}, dw, d)
				VFNMADD231PS(d, v, summs[i])
			}
		})
		for i := range actRows {
			VADDPS(summs[i], res[i], res[i])
		}
	}
	store(res, out)
	VZEROUPPER()
	RET()
}

func (t ktype) String() string { return [...]string{"q4K", "q5K", "q6K"}[t] }

// data declares a read-only table of dwords.
func data(name string, d ...uint32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	b := make([]byte, 4*len(d))
	for i, v := range d {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	for i := 0; i < len(b); i += 8 {
		DATA(i, U64(binary.LittleEndian.Uint64(b[i:])))
	}
	return m
}

// Tables packQ4K declares and packQ6K uses too.
var tabIota, tabM0F Mem

// packQ4K packs a whole tile of 16 Q4_K weight rows (the layout at the top),
// gathering dword k of the 16 rows' super-blocks into one register.
func packQ4K() {
	var iota []uint32
	for r := range 16 {
		iota = append(iota, uint32(r))
	}
	tabIota = data("ktIota", iota...)
	tabM0F = data("ktMask0F", 0x0f0f0f0f, 0)
	tabM3F := data("ktMask3F", 0x3f, 0)
	tabM0FD := data("ktMask0FD", 0x0f, 0)
	tabM30 := data("ktMask30", 0x30, 0)

	TEXT("ktilePackQ4KAVX512", NOSPLIT, "func(dst, w *byte, rowBytes, nb int)")
	Doc("ktilePackQ4KAVX512 packs nb super-blocks of the 16 Q4_K weight rows at w, rowBytes apart, into dst as the Q4_K tile kernel takes them.")
	dst := Load(Param("dst"), GP64())
	w := Load(Param("w"), GP64())
	rb := GP64()
	Load(Param("rowBytes"), rb)
	n := Load(Param("nb"), GP64())
	idx, m0f, m0fd, m3f, m30 := ZMM(), ZMM(), ZMM(), ZMM(), ZMM()
	VPBROADCASTD(rb.As32(), idx)
	VPMULLD(tabIota, idx, idx)
	VPBROADCASTD(tabM0F, m0f)
	VPBROADCASTD(tabM3F, m3f)
	VPBROADCASTD(tabM0FD, m0fd)
	VPBROADCASTD(tabM30, m30)
	k := K()
	v, lo, hi := ZMM(), ZMM(), ZMM()
	gather := func(off int, dst VecVirtual) {
		KXNORW(k, k, k)
		VPGATHERDD(Mem{Base: w, Index: idx, Scale: 1, Disp: off}, k, dst)
	}
	TESTQ(n, n)
	JZ(LabelRef("pack_done"))
	Label("pack_block")
	for kk := range 32 {
		gather(16+4*kk, v)
		VPANDD(m0f, v, lo)
		VPSRLD(U8(4), v, hi)
		VPANDD(m0f, hi, hi)
		g := 16*(kk/8) + kk%8
		VMOVDQU32(lo, Mem{Base: dst, Disp: 64 * g})
		VMOVDQU32(hi, Mem{Base: dst, Disp: 64 * (g + 8)})
	}
	// Scales and mins: bytes 4..15 of each super-block as three dwords,
	// s0 = scales[0..3], s1 = scales[4..7], s2 = scales[8..11].
	s := [3]VecVirtual{ZMM(), ZMM(), ZMM()}
	for i := range s {
		gather(4+4*i, s[i])
	}
	sc, mn, t := ZMM(), ZMM(), ZMM()
	for j := range 8 {
		if j < 4 {
			// sc = s[j]&63, m = s[j+4]&63
			VPSRLD(U8(8*j), s[0], sc)
			VPANDD(m3f, sc, sc)
			VPSRLD(U8(8*j), s[1], mn)
			VPANDD(m3f, mn, mn)
		} else {
			// sc = s[j+4]&15 | (s[j-4]>>6)<<4, m = s[j+4]>>4 | (s[j]>>6)<<4
			b := 8 * (j - 4)
			VPSRLD(U8(b), s[2], sc)
			VPANDD(m0fd, sc, sc)
			VPSRLD(U8(b+2), s[0], t)
			VPANDD(m30, t, t)
			VPORD(t, sc, sc)
			VPSRLD(U8(b+4), s[2], mn)
			VPANDD(m0fd, mn, mn)
			VPSRLD(U8(b+2), s[1], t)
			VPANDD(m30, t, t)
			VPORD(t, mn, mn)
		}
		VCVTDQ2PS(sc, sc)
		VCVTDQ2PS(mn, mn)
		VMOVUPS(sc, Mem{Base: dst, Disp: q4KWScales + 64*j})
		VMOVUPS(mn, Mem{Base: dst, Disp: q4KWMins + 64*j})
	}
	// d and dmin: the fp16 words 0 and 1.
	h := YMM()
	f := ZMM()
	gather(0, v)
	VPMOVDW(v, h)
	VCVTPH2PS(h, f)
	VMOVUPS(f, Mem{Base: dst, Disp: q4KWD})
	VPSRLD(U8(16), v, v)
	VPMOVDW(v, h)
	VCVTPH2PS(h, f)
	VMOVUPS(f, Mem{Base: dst, Disp: q4KWDmin})
	_ = lo
	ADDQ(U32(144), w)
	ADDQ(U32(q4KWBytes), dst)
	DECQ(n)
	JNZ(LabelRef("pack_block"))
	Label("pack_done")
	VZEROUPPER()
	RET()
}

// dataBytes declares a read-only table of bytes (a multiple of 8).
func dataBytes(name string, b []byte) Mem {
	d := make([]uint32, len(b)/4)
	for i := range d {
		d[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return data(name, d...)
}

// perDword repeats, for each of the 16 dwords of a ZMM register, the four
// bytes f(k) gives for its position k within its 128-bit lane (VPSHUFB
// indices).
func perDword(f func(k byte) [4]byte) []byte {
	var b []byte
	for d := range 16 {
		v := f(byte(d % 4))
		b = append(b, v[:]...)
	}
	return b
}

// packQ6K packs a whole tile of 16 Q6_K weight rows for the eight-lane
// kernel (the layout at the top), gathering dwords of the 16 rows'
// super-blocks into one register: four consecutive levels of each row are
// rebuilt from ql and qh in a dword lane, split into two int16 pairs and
// multiplied by their 16-element scale.
func packQ6K() {
	const z = 0x80
	tabPairLo := dataBytes("ktPairLo", perDword(func(k byte) [4]byte { return [4]byte{4 * k, z, 4*k + 1, z} }))
	tabPairHi := dataBytes("ktPairHi", perDword(func(k byte) [4]byte { return [4]byte{4*k + 2, z, 4*k + 3, z} }))
	var tabScale [4]Mem // byte c of each dword into the high byte of both words
	for c := range byte(4) {
		tabScale[c] = dataBytes(fmt.Sprintf("ktScaleB%d", c), perDword(func(k byte) [4]byte { return [4]byte{z, 4*k + c, z, 4*k + c} }))
	}
	var tabNeg [2]Mem // bytes c, c+1 into the high bytes of the two words
	for c := range byte(2) {
		tabNeg[c] = dataBytes(fmt.Sprintf("ktNegB%d", c), perDword(func(k byte) [4]byte { return [4]byte{z, 4*k + 2*c, z, 4*k + 2*c + 1} }))
	}
	tabM32 := data("ktMinus32", 0xffe0ffe0, 0)
	tabM30b := data("ktMask30b", 0x30303030, 0)

	TEXT("ktilePackQ6KAVX512", NOSPLIT, "func(dst, w *byte, rowBytes, nb int)")
	Doc("ktilePackQ6KAVX512 packs nb super-blocks of the 16 Q6_K weight rows at w, rowBytes apart, into dst as the eight-lane tile kernel takes them.")
	dst := Load(Param("dst"), GP64())
	w := Load(Param("w"), GP64())
	rb := GP64()
	Load(Param("rowBytes"), rb)
	n := Load(Param("nb"), GP64())
	idx, m0f, m30, m32 := ZMM(), ZMM(), ZMM(), ZMM()
	VPBROADCASTD(rb.As32(), idx)
	VPMULLD(tabIota, idx, idx)
	VPBROADCASTD(tabM0F, m0f)
	VPBROADCASTD(tabM30b, m30)
	VPBROADCASTD(tabM32, m32)
	pl, ph := ZMM(), ZMM()
	VMOVDQU64(tabPairLo, pl)
	VMOVDQU64(tabPairHi, ph)
	k := K()
	gather := func(off int, dst VecVirtual) {
		KXNORW(k, k, k)
		VPGATHERDD(Mem{Base: w, Index: idx, Scale: 1, Disp: off}, k, dst)
	}
	scb := [4]VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()} // scale bytes 4q..4q+3
	sc := [4]VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()}
	qa, qb, qh, x, t, lo, hi, msk := ZMM(), ZMM(), ZMM(), ZMM(), ZMM(), ZMM(), ZMM(), ZMM()
	TESTQ(n, n)
	JZ(LabelRef("pack6_done"))
	Label("pack6_block")
	for q := range 4 {
		gather(192+4*q, scb[q])
	}
	// −32·scale[2t], −32·scale[2t+1].
	for tt := range 8 {
		VMOVDQU64(tabNeg[tt%2], msk)
		VPSHUFB(msk, scb[tt/2], x)
		VPSRAW(U8(8), x, x)
		VPMULLW(m32, x, x)
		VMOVDQU32(x, Mem{Base: dst, Disp: l8WNeg + 64*tt})
	}
	for h := range 2 {
		for mq := range 2 {
			// Scales 8h + 2s + mq for the four sets s, as words.
			for s := range 4 {
				si := 8*h + 2*s + mq
				VMOVDQU64(tabScale[si%4], msk)
				VPSHUFB(msk, scb[si/4], sc[s])
				VPSRAW(U8(8), sc[s], sc[s])
			}
			for mm := range 4 {
				m := 4*mq + mm // levels l = 4m..4m+3
				gather(64*h+4*m, qa)
				gather(64*h+32+4*m, qb)
				gather(128+32*h+4*m, qh)
				for s := range 4 {
					// Set s: elements 128h + 32s + l.
					src := qa
					if s%2 == 1 {
						src = qb
					}
					if s < 2 {
						VPANDD(m0f, src, x)
					} else {
						VPSRLD(U8(4), src, x)
						VPANDD(m0f, x, x)
					}
					switch s {
					case 0:
						VPSLLD(U8(4), qh, t)
					case 1:
						VPSLLD(U8(2), qh, t)
					case 2:
						t = qh
					case 3:
						VPSRLD(U8(2), qh, t)
					}
					VPTERNLOGD(U8(0xf8), m30, t, x) // x | t&m30
					if s == 2 {
						t = ZMM()
					}
					VPSHUFB(pl, x, lo)
					VPSHUFB(ph, x, hi)
					VPMULLW(sc[s], lo, lo)
					VPMULLW(sc[s], hi, hi)
					p := 64*h + 16*s + 2*m
					VMOVDQU32(lo, Mem{Base: dst, Disp: 64 * p})
					VMOVDQU32(hi, Mem{Base: dst, Disp: 64 * (p + 1)})
				}
			}
		}
	}
	// d: the fp16 word at 208, read as the upper half of the dword at 206
	// so as not to read past the super-block.
	hw := YMM()
	f := ZMM()
	gather(206, x)
	VPSRLD(U8(16), x, x)
	VPMOVDW(x, hw)
	VCVTPH2PS(hw, f)
	VMOVUPS(f, Mem{Base: dst, Disp: q6KWD})
	ADDQ(U32(210), w)
	ADDQ(U32(q6KWBytes), dst)
	DECQ(n)
	JNZ(LabelRef("pack6_block"))
	Label("pack6_done")
	VZEROUPPER()
	RET()
}
