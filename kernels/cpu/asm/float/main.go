// Command float generates kernels/cpu/float_amd64.s and its Go stubs: the
// F32, F16 and BF16 row dots of MatMul, the rounding of activations to fp16
// and bf16, the steps of attention, and the vector expf of Softmax and
// SwiGLU, each in an AVX2 and an AVX-512 variant.
//
// Every kernel adds, multiplies and fuses in exactly the order of the plain
// Go kernel it replaces (kernels/cpu: dot.go, matmul.go, ops.go, simd.go),
// lane for lane, so that its results are bit for bit the same: a 16-lane
// accumulator of the Go code is one ZMM register, or two YMM registers (lanes
// 0–7 and 8–15) in AVX2, and the horizontal folds take the same pairs in the
// same order. Where the Go code calls fma32 the kernels use VFMADD; where it
// rounds a product and a sum separately they use VMULPS and VADDPS.
//
// VFMADD rounds a·b + c once, as llama.cpp's kernels do; fma32 rounds it to
// float64 first, which gives another float32 in the rare case simd.go
// describes (the float64 sum falling exactly halfway between two float32
// values). Products of fp16 or bf16 values are exact in float32 and never get
// there, so the F16 and BF16 dots of the rounded activations MatMul passes
// them match for every input; F32 rows and attention can differ in
// principle, and then the kernels give llama.cpp's bits.
// The vector expf equals expf on all 2³² inputs.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/mmcloughlin/avo/attr"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/pass"
	"github.com/mmcloughlin/avo/printer"
)

// g collects the generated functions. The generator uses its own context,
// not avo's global one, so that main can print with a fixed header (see
// generate).
var g = build.NewContext()

func main() {
	// avo registers its own flags on flag.CommandLine; these are separate.
	fs := flag.NewFlagSet("float", flag.ExitOnError)
	out := fs.String("out", "float_amd64.s", "assembly output")
	stubs := fs.String("stubs", "float_amd64.go", "Go stubs output")
	pkg := fs.String("pkg", "cpu", "package of the stubs")
	fs.Parse(os.Args[1:])

	constants()
	for _, a := range []arch{avx512, avx2} {
		dots(a)
		rounding(a)
		attention(a)
		exps(a)
	}
	if err := generate(*out, *stubs, *pkg); err != nil {
		fmt.Fprintln(os.Stderr, "float:", err)
		os.Exit(1)
	}
}

// generate compiles the functions and writes the assembly and the stubs.
// avo's own Generate would put the command line, with its output paths,
// into the "Code generated" header, and make asm-check writes to a temporary
// folder; the header names make asm instead so that both write the same.
func generate(out, stubs, pkg string) error {
	cfg := printer.Config{Argv: []string{"make", "asm"}, Pkg: pkg}
	passes := []pass.Interface{pass.Compile}
	for _, o := range []struct {
		path string
		p    printer.Builder
	}{{out, printer.NewGoAsm}, {stubs, printer.NewStubs}} {
		f, err := os.Create(o.path)
		if err != nil {
			return err
		}
		// The output pass closes f once it has written it.
		passes = append(passes, &pass.Output{Writer: f, Printer: o.p(cfg)})
	}
	if build.Main(&build.Config{ErrOut: os.Stderr, MaxErrors: 10, Passes: passes}, g) != 0 {
		return fmt.Errorf("generating %s failed", out)
	}
	return nil
}

// fn starts a function; every kernel is a leaf without a frame, and keeps no
// pointer it is given.
func fn(name, sig string, doc ...string) {
	g.Function(name)
	g.Attributes(attr.NOSPLIT)
	g.Pragma("noescape")
	g.SignatureExpr(sig)
	g.Doc(doc...)
}
