package main

import (
	"math"

	"github.com/mmcloughlin/avo/attr"
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// arch is one instruction-set level. A vec holds the 16 float32 lanes of one
// accumulator of the Go code: one ZMM register, or two YMM registers in AVX2.
// The AVX-512 variant sticks to AVX512F and AVX512BW (the variant's CPUID
// check): VPXORD, VPANDD and VEXTRACTF64X4 rather than their AVX512DQ
// counterparts.
type arch struct {
	name  string // suffix of the function names
	parts int    // registers per vec
}

var (
	avx512 = arch{name: "AVX512", parts: 1}
	avx2   = arch{name: "AVX2", parts: 2}
)

type vec []reg.VecVirtual

// lanes is the number of float32 lanes in one register.
func (a arch) lanes() int { return 16 / a.parts }

// reg returns a new register of the arch's width.
func (a arch) reg() reg.VecVirtual {
	if a.parts == 1 {
		return g.ZMM()
	}
	return g.YMM()
}

func (a arch) vec() vec {
	v := make(vec, a.parts)
	for i := range v {
		v[i] = a.reg()
	}
	return v
}

// part returns the memory operand of part p of a vec of float32 at m.
func (a arch) part(m operand.Mem, p int) operand.Mem { return m.Offset(4 * a.lanes() * p) }

// zero clears a register.
func (a arch) zero(r reg.VecVirtual) {
	if a.parts == 1 {
		g.VPXORD(r, r, r)
	} else {
		g.VXORPS(r, r, r)
	}
}

func (a arch) zeroVec(v vec) {
	for _, r := range v {
		a.zero(r)
	}
}

// and and or are the bitwise operations of one register: dst = x op m.
func (a arch) and(m operand.Op, x, dst reg.VecVirtual) {
	if a.parts == 1 {
		g.VPANDD(m, x, dst)
	} else {
		g.VPAND(m, x, dst)
	}
}

func (a arch) or(m operand.Op, x, dst reg.VecVirtual) {
	if a.parts == 1 {
		g.VPORD(m, x, dst)
	} else {
		g.VPOR(m, x, dst)
	}
}

// elem is the storage type of weights.
type elem int

const (
	f32 elem = iota
	f16
	bf16
)

func (e elem) String() string { return [...]string{"F32", "F16", "BF16"}[e] }
func (e elem) size() int      { return [...]int{4, 2, 2}[e] }

// load converts the 16 values of type e at m to float32 lanes in v, as the Go
// code's decodeFloatRow does (both conversions are exact; VCVTPH2PS keeps a
// NaN's payload and quiets it, as FP16ToFP32 does).
func (a arch) load(e elem, v vec, m operand.Mem) {
	for p, r := range v {
		src := m.Offset(e.size() * a.lanes() * p)
		switch e {
		case f32:
			g.VMOVUPS(src, r)
		case f16:
			g.VCVTPH2PS(src, r)
		case bf16:
			g.VPMOVZXWD(src, r)
			g.VPSLLD(operand.Imm(16), r, r)
		}
	}
}

// fma sets acc = w·m + acc lane by lane, one rounding (fma32).
func (a arch) fma(acc, w vec, m operand.Mem) {
	for p := range acc {
		g.VFMADD231PS(a.part(m, p), w[p], acc[p])
	}
}

// add sets dst = x + y lane by lane.
func (a arch) add(x, y, dst vec) {
	for p := range dst {
		g.VADDPS(y[p], x[p], dst[p])
	}
}

// reduce16 folds the 16 lanes of v as the Go reduce16 does and returns an
// XMM register holding the sum in its lowest lane: lanes 8–15 onto 0–7, 4–7
// onto 0–3, 2,3 onto 0,1, then lane 1 onto lane 0 (hsum8).
func (a arch) reduce16(v vec) reg.VecVirtual {
	h := g.YMM()
	if a.parts == 1 {
		g.VEXTRACTF64X4(operand.Imm(1), v[0], h)
		g.VADDPS(h, v[0].AsY(), h)
	} else {
		g.VADDPS(v[1], v[0], h)
	}
	l, t := g.XMM(), g.XMM()
	if a.parts == 1 {
		// The EVEX form, which reaches X16–X31 (the tiles use them all).
		g.VEXTRACTF32X4(operand.Imm(1), h, l)
	} else {
		g.VEXTRACTF128(operand.Imm(1), h, l)
	}
	g.VADDPS(l, h.AsX(), l)
	g.VMOVHLPS(l, l, t)
	g.VADDPS(t, l, l)
	g.VMOVSHDUP(l, t)
	g.VADDSS(t, l, l)
	return l
}

// Constants, each repeated in 16 lanes so that a ZMM or YMM operand can read
// it straight from memory.
var (
	consts   operand.Mem
	constIdx = map[string]int{}
)

var constList = []struct {
	name string
	bits uint32
}{
	{"sign", 0x80000000},
	{"qnan", 0x7fc00000},
	{"one_i", 1},
	{"bf16_bias", 0x7fff},
	{"hi16", 0xffff0000},
	{"bf16_quiet", 0x00400000},
	{"exp_shift", math.Float32bits(0x1.8p23)},
	{"log2e", math.Float32bits(0x1.715476p+0)},
	{"ln2hi", math.Float32bits(0x1.62e4p-1)},
	{"ln2lo", math.Float32bits(0x1.7f7d1cp-20)},
	{"p5", math.Float32bits(0x1.0e4020p-7)},
	{"p4", math.Float32bits(0x1.573e2ep-5)},
	{"p3", math.Float32bits(0x1.555e66p-3)},
	{"p2", math.Float32bits(0x1.fffdb6p-2)},
	{"p1", math.Float32bits(0x1.ffffecp-1)},
	{"one", math.Float32bits(1)},
	{"max_n", math.Float32bits(192)},
	{"min_n", math.Float32bits(-192)},
	{"inf", math.Float32bits(float32(math.Inf(1)))},
	{"zero", 0},
	{"split_hi", math.Float32bits(100)},
	{"split_lo", math.Float32bits(-100)},
	{"bias_i", 127},
}

func constants() {
	consts = g.StaticGlobal("floatconst")
	g.DataAttributes(attr.RODATA | attr.NOPTR)
	for i, c := range constList {
		constIdx[c.name] = i
		for range 16 {
			g.AppendDatum(operand.U32(c.bits))
		}
	}
}

// cnst is the memory operand of a named constant, one register wide.
func cnst(name string) operand.Mem {
	i, ok := constIdx[name]
	if !ok {
		panic("no constant " + name)
	}
	return consts.Offset(64 * i)
}
