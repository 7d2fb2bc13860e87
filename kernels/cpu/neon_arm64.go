package cpu

import "github.com/godwit-ai/godwit/models/gguf"

// The NEON kernels (neon_arm64.s) for Q8_0, Q4_0, F32 and F16 weights. They
// keep the lanes of llama.cpp's x86 kernels, which the plain Go kernels model
// (see simd.go and dot.go): a pair of 4-lane registers stands for one 8-lane
// AVX register, four for a 16-lane AVX-512 one, FMLA and FMADD are the fused
// multiply-adds, and the folds add the same lanes in the same order, so the
// results equal the Go kernels' bit for bit.

// dotQ8_0NEON multiplies a Q8_0 weight row w (34-byte blocks) with Q8_0
// activation levels x and scales dx, len(dx) blocks: in eight lanes folded
// by hsum8, or with oneLane in one lane, as dotBlocks32 does.
//
//go:noescape
func dotQ8_0NEON(w []byte, x []int8, dx []float32, oneLane, sdot bool) float32

// dotQ4_0NEON is dotQ8_0NEON for a Q4_0 weight row (18-byte blocks).
//
//go:noescape
func dotQ4_0NEON(w []byte, x []int8, dx []float32, oneLane, sdot bool) float32

// lanes16F32NEON is dotLanes16 of an F32 row w with x; len(x) is a multiple
// of 16.
//
//go:noescape
func lanes16F32NEON(w []byte, x []float32) float32

// lanes16F16NEON is dotLanes16 of an F16 row w with x; len(x) is a multiple
// of 16.
//
//go:noescape
func lanes16F16NEON(w []byte, x []float32) float32

// vecDotF32NEON is vecDotF32 of an F32 row w with x.
//
//go:noescape
func vecDotF32NEON(w []byte, x []float32) float32

// vecDotF16NEON is vecDotF16 of an F16 row w with x.
//
//go:noescape
func vecDotF16NEON(w []byte, x []float32) float32

// The wrappers slice w to exactly the bytes the kernel reads, so that a short
// row panics here instead of being read past its end.

// neonBlocks are the Q8_0 and Q4_0 row kernels, summing their integer lanes
// with SDOT where sdot is set, else with SMULL, SADDLP and ADDP. SDOT sums
// four adjacent byte products into a 32-bit lane, exactly the integer lanes
// of the block kernels, in one instruction; the sums are the same.
type neonBlocks struct{ sdot bool }

func (k neonBlocks) dotQ8_0Row(w []byte, a act, p path) float32 {
	nb := len(a.d)
	return dotQ8_0NEON(w[:nb*gguf.Q8_0.TypeSize()], a.q[:nb*qk], a.d, p != pathVecDot, k.sdot)
}

func (k neonBlocks) dotQ4_0Row(w []byte, a act, p path) float32 {
	nb := len(a.d)
	return dotQ4_0NEON(w[:nb*gguf.Q4_0.TypeSize()], a.q[:nb*qk], a.d, p != pathVecDot, k.sdot)
}

func dotF32Row(w []byte, x []float32, lanes16 bool) float32 {
	w = w[:4*len(x)]
	if lanes16 {
		return lanes16F32NEON(w, x)
	}
	return vecDotF32NEON(w, x)
}

func dotF16Row(w []byte, x []float32, lanes16 bool) float32 {
	w = w[:2*len(x)]
	if lanes16 {
		return lanes16F16NEON(w, x)
	}
	return vecDotF16NEON(w, x)
}

// addNEON puts the NEON kernels in k, with SDOT where k.dot is set.
func (k *kernelSet) addNEON() {
	b := neonBlocks{sdot: k.dot}
	k.quant[gguf.Q8_0], k.quant[gguf.Q4_0] = b.dotQ8_0Row, b.dotQ4_0Row
	k.float[gguf.F32], k.float[gguf.F16] = dotF32Row, dotF16Row
}
