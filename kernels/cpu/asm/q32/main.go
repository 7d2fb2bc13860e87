// Command q32 generates the amd64 kernels for the 32-element block types
// (Q8_0, Q4_0, Q5_0, Q4_1, Q5_1) of package cpu: row dot products against
// Q8_0/Q8_1 activations and the Q8_0/Q8_1 activation quantizers.
//
// Every kernel reproduces the plain Go kernel of package cpu bit for bit
// (dotBlocks32, quantizeActQ8_0/Q8_1). Integer block sums are exact in any
// order, so the instructions that form them are free to differ from ggml's;
// the float operations are the same ones in the same order: per block
// d = float32(d_w·d_x), then one FMA per lane (eight lanes, lane t holding the
// integer sum of elements 4t..4t+3) or one FMA of the whole block sum (the
// repacked Q4_0 order), the lanes folded as hsum8 at the end.
//
// Two instruction sets: AVX2 (VPMADDUBSW/VPMADDWD, the Q5 high bits spread by
// VPSHUFB) and AVX-512 with VNNI (VPDPBUSD and opmask registers, on 256-bit
// vectors: a block is 32 bytes, and the FMA chain per lane allows no wider
// step). Each kernel comes for one activation row and for four, the four
// sharing each unpacked weight block.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// format describes a block type as GGUF stores it.
type format struct {
	name   string
	size   int  // bytes per block of 32
	qs     int  // offset of the levels (the low four bits for Q4/Q5)
	qh     int  // offset of the 32-bit mask of fifth bits; 0 when none
	bits   int  // 4, 5 or 8
	offset int  // what the _0 types subtract from the stored level
	min    bool // a min m follows d, and the activations are Q8_1
}

var formats = []format{
	{name: "Q8_0", size: 34, qs: 2, bits: 8},
	{name: "Q4_0", size: 18, qs: 2, bits: 4, offset: 8},
	{name: "Q5_0", size: 22, qs: 6, qh: 2, bits: 5, offset: 16},
	{name: "Q4_1", size: 20, qs: 4, bits: 4, min: true},
	{name: "Q5_1", size: 24, qs: 8, qh: 4, bits: 5, min: true},
}

// isa is an instruction set the kernels are written for.
type isa struct {
	name string
	vnni bool // AVX-512 F/BW/VL with VNNI: VPDPBUSD, opmask registers, broadcast operands
}

var isas = []isa{{name: "AVX2"}, {name: "AVX512", vnni: true}}

// Constants, read as memory operands.
var (
	nibbleMask Mem // 0x0f in every byte
	nibbleSh   Mem // dword shift counts 0 (low 16 bytes) and 4 (high 16)
	ones16     Mem // 1 in every int16, for VPMADDWD
	ones8      Mem // 1 in every byte
	offsets    map[int]Mem
	bitShuf    Mem // VPSHUFB indices spreading the four bytes of a 32-bit mask eight times each
	bitSel     Mem // every bit but bit j%8 set in byte j
	allBits    Mem // 0xff in every byte
	absMask    Mem // 0x7fffffff in every dword
	infBits    Mem // 0x7f800000 in every dword
	magic      Mem // 1.5·2²³ in every float
	lowByte    Mem // 0xff in every dword
	packPerm   Mem // VPERMD indices undoing the lane interleave of VPACKUS*
	f127       Mem // 127.0
)

func bytes32(name string, f func(i int) byte) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := range 32 {
		DATA(i, U8(f(i)))
	}
	return m
}

func dwords8(name string, f func(i int) uint32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := range 8 {
		DATA(4*i, U32(f(i)))
	}
	return m
}

func constants() {
	nibbleMask = bytes32("q32nibble", func(int) byte { return 0x0f })
	nibbleSh = dwords8("q32nibsh", func(i int) uint32 { return uint32(i / 4 * 4) })
	ones16 = bytes32("q32ones16", func(i int) byte { return byte(1 - i%2) })
	ones8 = bytes32("q32ones8", func(int) byte { return 1 })
	offsets = map[int]Mem{
		8:  bytes32("q32eight", func(int) byte { return 8 }),
		16: bytes32("q32sixteen", func(int) byte { return 16 }),
	}
	bitShuf = bytes32("q32bitshuf", func(i int) byte { return byte(i / 8) })
	bitSel = bytes32("q32bitsel", func(i int) byte { return ^byte(1 << (i % 8)) })
	allBits = bytes32("q32allbits", func(int) byte { return 0xff })
	absMask = dwords8("q32abs", func(int) uint32 { return 0x7fffffff })
	infBits = dwords8("q32inf", func(int) uint32 { return 0x7f800000 })
	magic = dwords8("q32magic", func(int) uint32 { return 0x4b400000 })
	lowByte = dwords8("q32lowbyte", func(int) uint32 { return 0xff })
	packPerm = dwords8("q32packperm", func(i int) uint32 { return uint32(i/2 + i%2*4) })
	f127 = GLOBL("q32f127", RODATA|NOPTR)
	DATA(0, F32(127))
}

func main() {
	// The generated files' header quotes the command line; name the outputs
	// without their folder, which differs between make asm and make
	// asm-check, so that both write the same bytes.
	flag.Parse()
	os.Args = []string{os.Args[0], "-out", "q32_amd64.s", "-stubs", "q32_amd64.go", "-pkg", "cpu"}
	constants()
	for _, is := range isas {
		for _, f := range formats {
			for _, nact := range []int{1, 4} {
				dotKernel(f, is, nact, false)
				if f.name == "Q4_0" {
					dotKernel(f, is, nact, true)
				}
			}
		}
	}
	quantKernel(false)
	quantKernel(true)
	Generate()
	checkRegisters()
}

// kernel holds what the code of one dot-product kernel is built from.
type kernel struct {
	f  format
	is isa
	w  GPVirtual // the weight block
	k  GPVirtual // 4·(block − nb): indexes the activation arrays, moved past their end
	x  []GPVirtual
	d  []GPVirtual
	s  []GPVirtual
	o  VecVirtual // the _0 offset in every byte
}

// levels is a weight block unpacked for multiplication: u holds the 32
// levels as unsigned bytes (the stored 4/5-bit values, without the _0
// offset); for Q8_0, u holds |q| and q the signed levels, whose signs go onto
// the activations.
type levels struct{ u, q VecVirtual }

func (g *kernel) xMem(i int) Mem { return Mem{Base: g.x[i], Index: g.k, Scale: 8} }
func (g *kernel) dMem(i int) Mem { return Mem{Base: g.d[i], Index: g.k, Scale: 1} }
func (g *kernel) sMem(i int) Mem { return Mem{Base: g.s[i], Index: g.k, Scale: 1} }
func (g *kernel) wMem(off int) Mem {
	return Mem{Base: g.w, Disp: off}
}

// unpack loads the weight levels of the current block.
func (g *kernel) unpack() levels {
	f := g.f
	if f.bits == 8 {
		q, u := YMM(), YMM()
		VMOVDQU(g.wMem(f.qs), q)
		VPABSB(q, u)
		return levels{u: u, q: q}
	}
	// Element j < 16 is the low nibble of byte j, element j+16 its high
	// nibble: both halves get the 16 bytes, the upper one shifted by 4.
	u := YMM()
	VBROADCASTI128(g.wMem(f.qs), u)
	VPSRLVD(nibbleSh, u, u)
	VPAND(nibbleMask, u, u)
	if f.bits == 5 {
		if g.is.vnni {
			// Mask bit j is the fifth bit of element j.
			k := K()
			KMOVD(g.wMem(f.qh), k)
			VPADDB(offsets[16], u, k, u)
		} else {
			// ggml's bytes_from_bits_32: byte j gets byte j/8 of the mask,
			// is or'ed with all bits but j%8, and so becomes 0xff exactly
			// when bit j is set.
			h := YMM()
			VPBROADCASTD(g.wMem(f.qh), h)
			VPSHUFB(bitShuf, h, h)
			VPOR(bitSel, h, h)
			VPCMPEQB(allBits, h, h)
			VPAND(offsets[16], h, h)
			VPOR(h, u, u)
		}
	}
	return levels{u: u}
}

// lanes returns the eight int32 lane sums of the weight levels times the
// activation levels at xm: lane t = Σ w_j·x_j over j = 4t..4t+3.
func (g *kernel) lanes(lv levels, xm Mem) VecVirtual {
	f, vnni := g.f, g.is.vnni
	l := YMM()
	switch {
	case f.bits == 8:
		// |w|·(x·sign w) = w·x; x is never −128 (quantizeAct32 gives levels
		// in [−127, 127] for finite input), so the sign flip is exact.
		sx := YMM()
		VMOVDQU(xm, sx)
		VPSIGNB(lv.q, sx, sx)
		if vnni {
			VPXOR(l, l, l)
			VPDPBUSD(sx, lv.u, l)
		} else {
			VPMADDUBSW(sx, lv.u, l)
			VPMADDWD(ones16, l, l)
		}
	case f.offset != 0:
		// Σ(u−o)·x = Σu·x − Σo·x, both exact for every signed x.
		c := YMM()
		if vnni {
			VPXOR(l, l, l)
			VPXOR(c, c, c)
			VPDPBUSD(xm, lv.u, l)
			VPDPBUSD(xm, g.o, c)
			VPSUBD(c, l, l)
		} else {
			// The pair sums stay within ±2·31·128, so int16 holds them.
			VPMADDUBSW(xm, lv.u, l)
			VPMADDUBSW(xm, g.o, c)
			VPSUBW(c, l, l)
			VPMADDWD(ones16, l, l)
		}
	default:
		if vnni {
			VPXOR(l, l, l)
			VPDPBUSD(xm, lv.u, l)
		} else {
			VPMADDUBSW(xm, lv.u, l)
			VPMADDWD(ones16, l, l)
		}
	}
	return l
}

// hsum8 folds the eight lanes of acc as package cpu's hsum8 does and returns
// the sum in lane 0 of an XMM register.
func hsum8(acc VecVirtual) VecVirtual {
	lo, hi, t := XMM(), XMM(), XMM()
	VEXTRACTF128(U8(1), acc, hi)
	VADDPS(hi, acc.AsX(), lo) // lanes t and t+4
	VMOVHLPS(lo, lo, t)
	VADDPS(t, lo, lo) // lanes 0+2 and 1+3
	VMOVSHDUP(lo, t)
	VADDSS(t, lo, lo)
	return lo
}

// hsumInt adds the eight int32 lanes of l into lane 0 of an XMM register.
func hsumInt(l VecVirtual) VecVirtual {
	s, t := XMM(), XMM()
	VEXTRACTI128(U8(1), l, s)
	VPADDD(l.AsX(), s, s)
	VPSHUFD(U8(0x4e), s, t)
	VPADDD(t, s, s)
	VPSHUFD(U8(0x55), s, t)
	VPADDD(t, s, s)
	return s
}

// result is the address of result i (avo's Store would write it with the SSE
// MOVSS, which mixed with VEX code can cost a state transition).
func result(i int) Mem {
	b, err := ReturnIndex(i).Resolve()
	if err != nil {
		fatal(err)
	}
	return b.Addr
}

// dotKernel generates the product of one weight row with nact (1 or 4)
// activation rows, in eight lanes or, if one, in one lane.
func dotKernel(f format, is isa, nact int, one bool) {
	name := "dot"
	if one {
		name += "One"
	}
	if nact == 4 {
		name += "4"
	}
	name += f.name + is.name
	if nact == 1 {
		TEXT(name, NOSPLIT, "func(w *byte, x *int8, d, s *float32, nb int) float32")
	} else {
		TEXT(name, NOSPLIT, "func(w *byte, x0, x1, x2, x3 *int8, d0, d1, d2, d3, s0, s1, s2, s3 *float32, nb int) (r0, r1, r2, r3 float32)")
	}
	order := "eight lanes (ggml_vec_dot, tinyBLAS_Q0_AVX)"
	if one {
		order = "one lane (the repacked Q4_0 gemv and gemm)"
	}
	what := "one weight row of nb " + f.name + " blocks at w with the Q8_0/Q8_1 activation row x, d, s"
	if nact == 4 {
		what = "one weight row of nb " + f.name + " blocks at w with four Q8_0/Q8_1 activation rows"
	}
	Doc(fmt.Sprintf("%s multiplies %s, adding in %s; %s.", name, what, order, is.name))

	g := &kernel{f: f, is: is}
	g.w = Load(Param("w"), GP64()).(GPVirtual)
	nb := Load(Param("nb"), GP64())
	g.k = GP64()
	MOVQ(nb, g.k)
	SHLQ(U8(2), g.k)
	param := func(base string, i int) string {
		if nact == 1 {
			return base
		}
		return fmt.Sprintf("%s%d", base, i)
	}
	// Block b of activation row i has its levels at x_i+32b and its scale
	// (and sum) at d_i+4b (s_i+4b): with k = 4b − 4nb the bases move to the
	// end and k, counting up to zero, indexes them.
	for i := range nact {
		x := Load(Param(param("x", i)), GP64()).(GPVirtual)
		LEAQ(Mem{Base: x, Index: g.k, Scale: 8}, x)
		g.x = append(g.x, x)
		d := Load(Param(param("d", i)), GP64()).(GPVirtual)
		ADDQ(g.k, d)
		g.d = append(g.d, d)
		if f.min {
			s := Load(Param(param("s", i)), GP64()).(GPVirtual)
			ADDQ(g.k, s)
			g.s = append(g.s, s)
		}
	}
	if f.offset != 0 {
		g.o = YMM()
		VMOVDQU(offsets[f.offset], g.o)
	}
	NEGQ(g.k)

	var acc, summs []VecVirtual
	var sum VecVirtual
	if one {
		sum = XMM()
		VXORPS(sum, sum, sum)
	} else {
		for range nact {
			a := YMM()
			VXORPS(a, a, a)
			acc = append(acc, a)
		}
	}
	if f.min {
		for range nact {
			m := XMM()
			VXORPS(m, m, m)
			summs = append(summs, m)
		}
	}
	JZ(LabelRef("done"))

	Label("block")
	lv := g.unpack()
	// d_w in lane 0 and, for the _1 types, m in lane 1.
	dm := XMM()
	VCVTPH2PS(g.wMem(0), dm)
	switch {
	case one && nact == 1:
		s := hsumInt(g.lanes(lv, g.xMem(0)))
		VCVTDQ2PS(s, s)
		VMULSS(g.dMem(0), dm, dm)
		VFMADD231SS(dm, s, sum)
	case one:
		// The four rows' block sums go to lanes 0..3, their FMA chains run
		// side by side in one register.
		var l []VecVirtual
		for i := range nact {
			l = append(l, g.lanes(lv, g.xMem(i)))
		}
		VPHADDD(l[1], l[0], l[0])
		VPHADDD(l[3], l[2], l[2])
		VPHADDD(l[2], l[0], l[0])
		s := XMM()
		VEXTRACTI128(U8(1), l[0], s)
		VPADDD(l[0].AsX(), s, s)
		VCVTDQ2PS(s, s)
		dx := XMM()
		VMOVSS(g.dMem(0), dx)
		for i := 1; i < nact; i++ {
			VINSERTPS(U8(i<<4), g.dMem(i), dx, dx)
		}
		VBROADCASTSS(dm, dm)
		VMULPS(dx, dm, dx)
		VFMADD231PS(dx, s, sum)
	default:
		dw := YMM()
		VBROADCASTSS(dm, dw)
		for i := range nact {
			lf := g.lanes(lv, g.xMem(i))
			VCVTDQ2PS(lf, lf)
			d := YMM()
			if is.vnni {
				VMULPS_BCST(g.dMem(i), dw, d)
			} else {
				VBROADCASTSS(g.dMem(i), d)
				VMULPS(d, dw, d)
			}
			VFMADD231PS(lf, d, acc[i])
		}
	}
	if f.min {
		m := XMM()
		VMOVSHDUP(dm, m)
		for i := range nact {
			VFMADD231SS(g.sMem(i), m, summs[i])
		}
	}
	ADDQ(U32(f.size), g.w)
	ADDQ(U8(4), g.k)
	JNZ(LabelRef("block"))

	Label("done")
	switch {
	case one:
		VMOVSS(sum, result(0))
		for i := 1; i < nact; i++ {
			VEXTRACTPS(U8(i), sum, result(i))
		}
	default:
		for i := range nact {
			r := hsum8(acc[i])
			if f.min {
				VADDSS(summs[i], r, r)
			}
			VMOVSS(r, result(i))
		}
	}
	VZEROUPPER()
	RET()
}

// quantKernel generates the Q8_0 (or, if q81, Q8_1) activation quantizer of
// nb blocks. It reports whether a NaN was among the inputs, in which case its
// output is not defined and the caller quantizes the row in Go.
func quantKernel(q81 bool) {
	name := "quantQ8_0AVX2"
	sig := "func(x *float32, q *int8, d *float32, nb int) (nan bool)"
	what := "quantizeActQ8_0"
	if q81 {
		name = "quantQ8_1AVX2"
		sig = "func(x *float32, q *int8, d, s *float32, nb int) (nan bool)"
		what = "quantizeActQ8_1"
	}
	TEXT(name, NOSPLIT, sig)
	Doc(name+" is "+what+" for nb blocks of 32 at x, bit for bit, in AVX2;",
		"it reports whether x held a NaN, for which it leaves q, d and s undefined.")
	x := Load(Param("x"), GP64())
	q := Load(Param("q"), GP64())
	d := Load(Param("d"), GP64())
	var s Register
	if q81 {
		s = Load(Param("s"), GP64())
	}
	nb := Load(Param("nb"), GP64())
	nan := XMM()
	VPXOR(nan, nan, nan)
	TESTQ(nb, nb)
	JZ(LabelRef("done"))

	Label("block")
	var v [4]VecVirtual
	mx := YMM()
	for i := range v {
		v[i] = YMM()
		VMOVUPS(Mem{Base: x, Disp: 32 * i}, v[i])
		if i == 0 {
			VANDPS(absMask, v[i], mx)
			continue
		}
		// For floats without sign, the integer order of the bits is the
		// float order, and any NaN is above +Inf.
		a := YMM()
		VANDPS(absMask, v[i], a)
		VPMAXSD(a, mx, mx)
	}
	am, t := XMM(), XMM()
	VEXTRACTI128(U8(1), mx, am)
	VPMAXSD(mx.AsX(), am, am)
	VPSHUFD(U8(0x4e), am, t)
	VPMAXSD(t, am, am)
	VPSHUFD(U8(0xb1), am, t)
	VPMAXSD(t, am, am) // amax in every lane
	VPCMPGTD(infBits, am, t)
	VPOR(t, nan, nan)

	// d = fp16(amax/127) and the multiplier 127/amax. Go takes 0 for the
	// multiplier when amax is 0; here it is +Inf, and each x·Inf (x is ±0)
	// is the default NaN 0xffc00000, whose low byte makes the same level 0.
	exact, id := XMM(), XMM()
	VDIVSS(f127, am, exact)
	VMOVSS(f127, id)
	VDIVSS(am, id, id)
	h := XMM()
	VCVTPS2PH(U8(0), exact, h)
	VCVTPH2PS(h, h)
	VMOVSS(h, Mem{Base: d})

	// q = round-half-even(x·id) by adding 1.5·2²³: the level is the low
	// byte of the sum's bits (nearestInt truncated to int8, as Go converts).
	idb := YMM()
	VBROADCASTSS(id, idb)
	for i := range v {
		VMULPS(idb, v[i], v[i])
		VADDPS(magic, v[i], v[i])
		VPAND(lowByte, v[i], v[i])
	}
	VPACKUSDW(v[1], v[0], v[0])
	VPACKUSDW(v[3], v[2], v[2])
	VPACKUSWB(v[2], v[0], v[0])
	perm := YMM()
	VMOVDQU(packPerm, perm)
	VPERMD(v[0], perm, v[0])
	VMOVDQU(v[0], Mem{Base: q})

	if q81 {
		// s = fp16(amax/127 · Σq), the scale unrounded.
		p := YMM()
		VMOVDQU(ones8, p)
		VPMADDUBSW(v[0], p, p)
		VPMADDWD(ones16, p, p)
		sum := hsumInt(p)
		VCVTDQ2PS(sum, sum)
		VMULSS(exact, sum, sum)
		VCVTPS2PH(U8(0), sum, sum)
		VCVTPH2PS(sum, sum)
		VMOVSS(sum, Mem{Base: s})
		ADDQ(U8(4), s)
	}
	ADDQ(U8(128), x)
	ADDQ(U8(32), q)
	ADDQ(U8(4), d)
	DECQ(nb)
	JNZ(LabelRef("block"))

	Label("done")
	VPTEST(nan, nan)
	r := GP8()
	SETNE(r)
	Store(r, Return("nan"))
	VZEROUPPER()
	RET()
}

// checkRegisters fails the generation when a kernel uses a vector register
// above 15: the AVX2 kernels must run without AVX-512, and VPSIGNB, VPHADDD
// and the other VEX-only instructions of the AVX-512 kernels cannot encode
// them. avo's allocator takes the lowest free register, so this holds while
// no more than 16 vectors are live at once.
func checkRegisters() {
	out := flag.Lookup("out").Value.String()
	file, err := os.Open(out)
	if err != nil {
		fatal(err)
	}
	defer file.Close()
	high := regexp.MustCompile(`\b[XYZ](1[6-9]|2[0-9]|3[01])\b|\bZ[0-9]+\b`)
	sc := bufio.NewScanner(file)
	fn := ""
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "TEXT ") {
			fn = line
		}
		if high.MatchString(line) {
			fatal(fmt.Errorf("%s: %q uses a vector register above 15", fn, line))
		}
	}
	if err := sc.Err(); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "q32:", err)
	os.Exit(1)
}
