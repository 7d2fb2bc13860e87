// Command q32 generates the amd64 kernels for the 32-element block types
// (Q8_0, Q4_0, Q5_0, Q4_1, Q5_1) of package cpu: row dot products against
// Q8_0/Q8_1 activations and the Q8_0/Q8_1 activation quantizers.
//
// Every kernel reproduces the plain Go kernel of package cpu bit for bit
// (dotBlocks32, quantizeActQ8_0/Q8_1), but for one rare class of sums named
// below. Integer block sums are exact in any
// order, so the instructions that form them are free to differ from ggml's;
// the float operations are the same ones in the same order: per block
// d = float32(d_w·d_x), then one FMA per lane (eight lanes, lane t holding the
// integer sum of elements 4t..4t+3) or one FMA of the whole block sum (the
// repacked Q4_0 order), the lanes folded as hsum8 at the end. The FMAs are
// the instruction's, rounded once, as in llama.cpp; package cpu's fma32 models
// them in float64, which rounds differently in one rare class of sums that
// simd.go describes (see TestQ32KernelsFMARoundOnce).
//
// Two instruction sets: AVX2 (VPMADDUBSW/VPMADDWD, the Q5 high bits spread by
// VPSHUFB) and AVX-512 with VNNI (VPDPBUSD, opmask registers and broadcast
// operands, on 256-bit vectors: a block is 32 bytes and its lanes form one
// FMA chain each; holding two activation rows per ZMM register measured no
// faster). Each kernel comes for one activation row and for four, the four
// sharing each unpacked weight block, and for several weight rows with one
// activation row (decode), whose FMA chains then run side by side.
//
// dot.go generates the dot products, rows.go the multi-row ones, quant.go
// the quantizers.
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
	offsets    map[int]Mem
	ones16     Mem // 1 in every int16, for VPMADDWD
	ones8      Mem // 1 in every byte
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

// bytes32 is a 32-byte constant: byte i is f(i).
func bytes32(name string, f func(i int) byte) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 32; i += 8 {
		var v uint64
		for j := range 8 {
			v |= uint64(f(i+j)) << (8 * j)
		}
		DATA(i, U64(v))
	}
	return m
}

// dwords8 is a 32-byte constant: dword i is f(i).
func dwords8(name string, f func(i int) uint32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := range 8 {
		DATA(4*i, U32(f(i)))
	}
	return m
}

func constants() {
	nibbleMask = bytes32("q32nibble", func(int) byte { return 0x0f })
	nibbleSh = bytes32("q32nibsh", func(i int) byte {
		if i >= 16 && i%4 == 0 {
			return 4 // the low byte of a dword count in the upper 16 bytes
		}
		return 0
	})
	offsets = map[int]Mem{
		8:  bytes32("q32eight", func(int) byte { return 8 }),
		16: bytes32("q32sixteen", func(int) byte { return 16 }),
	}
	ones16 = bytes32("q32ones16", func(i int) byte { return byte(1 - i%2) })
	ones8 = bytes32("q32ones8", func(int) byte { return 1 })
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
			// The one-lane order is repacked Q4_0's, and the order
			// Q8_0 takes in batch-invariant products; only Q4_0 has a
			// one-lane kernel of eight weight rows.
			for _, nact := range []int{1, 4} {
				dotKernel(f, is, nact, false)
				if f.name == "Q4_0" || f.name == "Q8_0" {
					dotKernel(f, is, nact, true)
				}
			}
			rowsKernel(f, is, false)
			if f.name == "Q4_0" {
				rowsKernel(f, is, true)
			}
		}
	}
	quantKernel(false)
	quantKernel(true)
	Generate()
	checkRegisters()
}

// checkRegisters fails the generation when a kernel uses a vector register
// above 15, or an AVX2 kernel a ZMM or opmask register: the AVX2 kernels must
// run without AVX-512, and VPSIGNB, VPHADDD and the other VEX-only
// instructions of the AVX-512 kernels cannot encode the upper sixteen. avo's
// allocator takes the lowest free register, so this holds while no more than
// 16 vectors are live at once.
func checkRegisters() {
	out := flag.Lookup("out").Value.String()
	file, err := os.Open(out)
	if err != nil {
		fatal(err)
	}
	defer file.Close()
	high := regexp.MustCompile(`\b[XYZ](1[6-9]|2[0-9]|3[01])\b`)
	avx512 := regexp.MustCompile(`\b(Z[0-9]+|K[0-7])\b`)
	sc := bufio.NewScanner(file)
	fn := ""
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "TEXT ") {
			fn = line
		}
		if high.MatchString(line) || strings.Contains(fn, "AVX2") && avx512.MatchString(line) {
			fatal(fmt.Errorf("%s: %q uses a register it must not", fn, line))
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
