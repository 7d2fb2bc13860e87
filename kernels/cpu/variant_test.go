package cpu

import (
	"slices"
	"testing"
)

// testSets are the kernel sets this CPU can run, best first: one per
// variant, and where the CPU has the integer dot product, the AVX-512 or
// NEON set without it too.
func testSets() []*kernelSet {
	var ks []*kernelSet
	for _, v := range Variants() {
		ks = append(ks, kernelsFor(v, cpuDot))
		if cpuDot && (v == VariantAVX512 || v == VariantNEON) {
			ks = append(ks, kernelsFor(v, false))
		}
	}
	return ks
}

// best is the set New computes with.
func best() *kernelSet { return kernelsFor(Variants()[0], cpuDot) }

// TestNewVariant: a backend reports the variant it was made with, New takes
// the best, and a variant this CPU cannot run is refused.
func TestNewVariant(t *testing.T) {
	t.Parallel()
	for _, v := range Variants() {
		b, err := NewVariant(v, 1)
		if err != nil {
			t.Fatal(err)
		}
		if b.Variant() != v || b.k != kernelsFor(v, cpuDot) {
			t.Errorf("NewVariant(%v): variant %v, kernels %v", v, b.Variant(), b.k)
		}
		b.Close()
	}
	b := New(1)
	if b.Variant() != Variants()[0] || b.k != best() {
		t.Errorf("New: variant %v, kernels %v, want %v", b.Variant(), b.k, best())
	}
	b.Close()
	for _, v := range []Variant{VariantAVX2, VariantAVX512, VariantNEON, "sse2"} {
		if slices.Contains(Variants(), v) {
			continue
		}
		if _, err := NewVariant(v, 1); err == nil {
			t.Errorf("NewVariant(%v) on a CPU that cannot run it: no error", v)
		}
	}
}

// TestKernelSets: every set this CPU runs is made once and has a kernel
// for everything the plain Go set has.
func TestKernelSets(t *testing.T) {
	t.Parallel()
	for _, k := range testSets() {
		if kernelsFor(k.variant, k.dot) != k {
			t.Errorf("%v: kernelsFor made another set", k)
		}
		if k.roundFP16 == nil || k.actQ8_K == nil || k.normScale == nil || k.kqv == nil || k.fromHalfRows == nil || k.prefetchRows == nil {
			t.Errorf("%v: a kernel missing", k)
		}
	}
}

// goSet is the plain Go kernels, the oracle of the SIMD ones.
func goSet() *kernelSet { return kernelsFor(VariantGo, false) }
