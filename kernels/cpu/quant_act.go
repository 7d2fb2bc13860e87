package cpu

// Activation quantizers: how llama.cpp's CPU backend (x86 build) converts an
// activation row to the weight type's companion format before a dot product.
// The results are kept unpacked (int8 levels plus float32 scales that hold the
// exact values ggml stores) because they live only for one MatMul. A kernel
// set's actQ8_0, actQ8_1 and actQ8_K are these or SIMD kernels with the same
// results.

// quantizeActQ8_0 is the AVX2 quantize_row_q8_0: per 32 values, d is
// fp16(amax/127) and q = round-half-even(x·(127/amax)), the multiplier
// computed in float32 from amax itself rather than from d.
func quantizeActQ8_0(x []float32, q []int8, d []float32) {
	for b := range d {
		xs, qs := x[qk*b:qk*b+qk], q[qk*b:qk*b+qk]
		d[b], _ = quantizeAct32(xs, qs)
	}
}

// quantizeActQ8_1 is the AVX2 quantize_row_q8_1: Q8_0 plus s = fp16(d·Σq)
// with the unrounded d, which the Q4_1/Q5_1 dot products use for the min term.
func quantizeActQ8_1(x []float32, q []int8, d, s []float32) {
	for b := range d {
		xs, qs := x[qk*b:qk*b+qk], q[qk*b:qk*b+qk]
		var dd float32
		d[b], dd = quantizeAct32(xs, qs)
		var sum int
		for _, v := range qs {
			sum += int(v)
		}
		s[b] = FP16ToFP32(FP32ToFP16(dd * float32(sum)))
	}
}

// quantizeAct32 quantizes one block of 32 for Q8_0/Q8_1 and returns the
// stored (fp16-rounded) scale and the float32 scale it was rounded from.
func quantizeAct32(x []float32, q []int8) (stored, exact float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, abs32(v))
	}
	exact = amax / 127
	var id float32
	if amax != 0 {
		id = 127 / amax
	}
	for j, v := range x {
		q[j] = int8(nearestInt(v * id))
	}
	return FP16ToFP32(FP32ToFP16(exact)), exact
}

// quantizeActQ8_K is quantize_row_q8_K_ref (the x86 backend calls it as is):
// per 256 values, the value m of largest magnitude maps to −127,
// q = min(127, nearest(−127/m·x)), d = 1/iscale in float32, and bsums holds
// the sum of each 16 levels for the K-quant min terms.
func quantizeActQ8_K(x []float32, q []int8, d []float32, bsums []int16) {
	for b := range d {
		xs, qs, bs := x[qkK*b:qkK*b+qkK], q[qkK*b:qkK*b+qkK], bsums[16*b:16*b+16]
		maxv, amax := absMax(xs)
		if amax == 0 {
			d[b] = 0
			clear(qs)
			clear(bs)
			continue
		}
		iscale := -127 / maxv
		for j, v := range xs {
			qs[j] = int8(min(127, nearestInt(iscale*v)))
		}
		for j := range bs {
			var sum int16
			for _, v := range qs[16*j : 16*j+16] {
				sum += int16(v)
			}
			bs[j] = sum
		}
		d[b] = 1 / iscale
	}
}
