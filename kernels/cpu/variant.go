package cpu

import (
	"fmt"
	"runtime"

	"github.com/klauspost/cpuid/v2"
)

// Variant names a set of kernels: the plain Go ones, which run everywhere and
// are the test oracle, or the SIMD assembly for one instruction-set level.
// Every variant adds in the same order as the plain Go kernels (llama.cpp's),
// so all give the same results.
type Variant string

const (
	VariantGo     Variant = "go"
	VariantAVX2   Variant = "avx2"   // AVX2, FMA and F16C
	VariantAVX512 Variant = "avx512" // AVX-512 F, BW and VL (VNNI where present)
	VariantNEON   Variant = "neon"   // arm64 Advanced SIMD (SDOT where present)
)

// HasVNNI reports whether the AVX-512 kernels can use VPDPBUSD.
var HasVNNI = cpuid.CPU.Supports(cpuid.AVX512VNNI)

var current = VariantGo

// onVariant holds one hook per SIMD kernel file; SetVariant calls each so the
// file can point its function variables at the chosen kernels.
var onVariant []func(Variant)

// onSetVariant registers a hook. Kernel files call it from a package variable
// (var _ = onSetVariant(...)), which Go initialises before init picks the
// variant.
func onSetVariant(f func(Variant)) bool {
	onVariant = append(onVariant, f)
	return true
}

// Variants lists the variants this CPU can run, best first; the plain Go
// kernels are always last.
func Variants() []Variant {
	var vs []Variant
	if runtime.GOARCH == "amd64" {
		if cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512BW, cpuid.AVX512VL, cpuid.FMA3, cpuid.F16C) {
			vs = append(vs, VariantAVX512)
		}
		if cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3, cpuid.F16C) {
			vs = append(vs, VariantAVX2)
		}
	}
	if runtime.GOARCH == "arm64" {
		// Advanced SIMD is part of every arm64 CPU.
		vs = append(vs, VariantNEON)
	}
	return append(vs, VariantGo)
}

// CurrentVariant is the variant in use.
func CurrentVariant() Variant { return current }

// SetVariant switches every kernel to variant v. It must not run while
// kernels do. It fails when the CPU cannot run v.
func SetVariant(v Variant) error {
	for _, ok := range Variants() {
		if ok == v {
			current = v
			for _, hook := range onVariant {
				hook(v)
			}
			return nil
		}
	}
	return fmt.Errorf("kernel variant %q cannot run on this CPU (it can run %v)", v, Variants())
}

func init() {
	SetVariant(Variants()[0])
}
