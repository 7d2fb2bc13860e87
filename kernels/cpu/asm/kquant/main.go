// Command kquant generates the amd64 assembly of package cpu's K-quant
// kernels: Q4_K, Q5_K and Q6_K weight rows against Q8_K activation rows, for
// AVX2 and for AVX-512 (with and without VNNI), and the Q8_K activation
// quantizer. gen.sh runs it as
//
//	go run ./kquant -out kquant_amd64.s -stubs kquant_amd64.go -pkg cpu
//
// Every kernel must give the plain Go kernels' results bit for bit (they
// reproduce llama.cpp's float order), so the generator follows dot_k.go and
// quant_act.go step by step: the integer sums are exact and may be grouped
// freely, but each float operation is the one the Go code does, on the same
// lane, in the same order.
package main

import (
	"encoding/binary"
	"flag"
	"os"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// isa is the instruction set a kernel is generated for.
type isa struct {
	name string // suffix of the kernel names
	z    bool   // AVX-512 F/BW/VL: 512-bit vectors and EVEX forms throughout
	vnni bool   // AVX512_VNNI: VPDPWSSD fuses VPMADDWD and VPADDD
}

var (
	avx2   = isa{name: "AVX2"}
	avx512 = isa{name: "AVX512", z: true}
	vnni   = isa{name: "VNNI", z: true, vnni: true}
)

// The register allocator may give an AVX-512 kernel any of X0–X31, which only
// EVEX encodings reach, while the AVX2 kernels must stay VEX-encoded (they run
// on CPUs without AVX-512) and so within X0–X15 (a test checks the output).
// These helpers pick the form per instruction set where the VEX instruction
// has no EVEX encoding under the same name.

func (s isa) zero(v Op) {
	if s.z {
		VPXORD(v, v, v)
	} else {
		VPXOR(v, v, v)
	}
}

// hi128 extracts the upper 128 bits of a 256-bit register.
func (s isa) hi128(src, dst Op) {
	if s.z {
		VEXTRACTI32X4(U8(1), src, dst)
	} else {
		VEXTRACTI128(U8(1), src, dst)
	}
}

// shiftBytes moves bit from of every byte of src to bit to, in place of a
// per-byte shift (x86 has none): a 16-bit shift by less than 8 moves the bits
// that land on bit to within each byte, and the caller masks the rest.
func shiftBytes(src, dst Register, from, to int) Register {
	switch {
	case from < to:
		VPSLLW(U8(to-from), src, dst)
	case from > to:
		VPSRLW(U8(from-to), src, dst)
	default:
		return src
	}
	return dst
}

// data declares a read-only table.
func data(name string, b []byte) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < len(b); i += 8 {
		DATA(i, U64(binary.LittleEndian.Uint64(b[i:])))
	}
	return m
}

func repeat(n int, b ...byte) []byte {
	var out []byte
	for range n {
		out = append(out, b...)
	}
	return out
}

func words(w ...uint16) []byte {
	out := make([]byte, 2*len(w))
	for i, v := range w {
		binary.LittleEndian.PutUint16(out[2*i:], v)
	}
	return out
}

func dwords(d ...uint32) []byte {
	out := make([]byte, 4*len(d))
	for i, v := range d {
		binary.LittleEndian.PutUint32(out[4*i:], v)
	}
	return out
}

func main() {
	// The generated files' header quotes the command line: name the outputs
	// without their folder, which differs between make asm and make
	// asm-check, so that both write the same bytes.
	flag.Parse()
	os.Args = []string{os.Args[0], "-out", "kquant_amd64.s", "-stubs", "kquant_amd64.go", "-pkg", "cpu"}
	kquantData()
	rowsData()
	q8KData()
	for _, s := range []isa{avx2, avx512, vnni} {
		kquantKernels(s)
	}
	quantizeQ8K()
	Generate()
}
