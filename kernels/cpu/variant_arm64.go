package cpu

// archSets are the SIMD kernel sets of arm64: NEON with and without SDOT.
var archSets = []setKey{{VariantNEON, false}, {VariantNEON, true}}

// archKernels puts k's SIMD kernels in place of the plain Go ones (see the
// table of kernelSet).
func archKernels(k *kernelSet) {
	if k.variant == VariantNEON {
		k.addNEON()
	}
}
