package cpu

// archSets are the SIMD kernel sets of amd64.
var archSets = []setKey{{VariantAVX2, false}, {VariantAVX512, false}, {VariantAVX512, true}}

// archKernels puts k's SIMD kernels in place of the plain Go ones (see the
// table of kernelSet).
func archKernels(k *kernelSet) {
	switch k.variant {
	case VariantAVX2:
		k.addFloat(&floatAVX2)
		k.addQ32(q32Sets[VariantAVX2])
		k.addKQuant(&kquantAVX2)
	case VariantAVX512:
		k.addFloat(&floatAVX512)
		k.addAVX512Ops()
		if !k.dot {
			// Without VPDPBUSD the AVX2 block kernels are what AVX-512
			// would do too, and there are no tiles.
			k.addQ32(q32Sets[VariantAVX2])
			k.addKQuant(&kquantAVX512)
			return
		}
		k.addQ32(q32Sets[VariantAVX512])
		k.addKQuant(&kquantVNNI)
		k.addTile32()
		k.addKTiles()
	}
}
