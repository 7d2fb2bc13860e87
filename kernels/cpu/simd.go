package cpu

import "math"

// Scalar models of the x86 SIMD steps that llama.cpp's CPU backend takes (an
// AVX2/AVX512F build with FMA). A value that lands on a rounding boundary of
// the 8-bit activation quantization flips when a sum rounds differently, so
// the kernels add float partial sums in exactly the order those instructions
// do. Every float32 operation is written with an explicit conversion, so that
// Go never fuses a product and a sum into one FMA where ggml rounds twice (Go
// may fuse them on arm64 otherwise).

// fma32 is a single-precision fused multiply-add, a·b + c rounded once, as
// _mm256_fmadd_ps, _mm512_fmadd_ps and FMLA compute it lane by lane, with no
// FMA instruction. The product of two float32 values is exact in float64, so
// only the sum rounds there; rounding that sum to float32 in turn could round
// twice across a float32 halfway point, so the float64 sum is first made
// round-to-odd (an inexact result keeps an odd last bit), which makes the
// second rounding exact: float64 has more than 24+1 extra bits.
func fma32(a, b, c float32) float32 {
	p, cc := float64(a)*float64(b), float64(c)
	s := p + cc
	if bits := math.Float64bits(s); bits&1 == 0 && !math.IsInf(s, 0) {
		// TwoSum: the exact error of p + cc.
		t := s - p
		if e := (p - (s - t)) + (cc - t); e != 0 {
			if (e > 0) == (s > 0) {
				bits++ // the exact sum lies further from zero
			} else {
				bits--
			}
			s = math.Float64frombits(bits)
		}
	}
	return float32(s)
}

// hsum8 adds eight lanes as ggml's hsum_float_8 (and llamafile's hsum of a
// __m256) do: the upper half onto the lower, then lanes 2,3 onto 0,1, then
// lane 1 onto lane 0.
func hsum8(a *[8]float32) float32 {
	l0 := float32(a[0] + a[4])
	l1 := float32(a[1] + a[5])
	l2 := float32(a[2] + a[6])
	l3 := float32(a[3] + a[7])
	return float32(float32(l0+l2) + float32(l1+l3))
}

// hsum4 adds four lanes as ggml's SSE horizontal sum of a __m128 does (movehl,
// then movehdup).
func hsum4(a *[4]float32) float32 {
	return float32(float32(a[0]+a[2]) + float32(a[1]+a[3]))
}

// reduce16 adds sixteen lanes as GCC's _mm512_reduce_add_ps does: the upper
// 256 bits onto the lower, then the upper 128 onto the lower, then lanes 2,3
// onto 0,1, then lane 1 onto lane 0.
func reduce16(a *[16]float32) float32 {
	var h [8]float32
	for i := range h {
		h[i] = float32(a[i] + a[i+8])
	}
	return hsum8(&h)
}

// expf is ggml_v_expf for AVX512F (ggml_vec_soft_max_f32 and ggml_v_silu
// evaluate 16 lanes with it): the Arm optimized-routines approximation,
// n = round(x·log2 e) by the 1.5·2²³ shift, b = x − n·ln2 in two FMA steps,
// a degree-5 polynomial in b evaluated with FMAs, scaled by 2ⁿ (vscalefps).
// It is within about 1.5 ulp of exp(x), and its roundings, not those of an
// exact exp, are what llama.cpp's softmax and SwiGLU produce. Inputs beyond
// the scaling range give +Inf or 0 as the vector code does.
func expf(x float32) float32 {
	const (
		shift = 0x1.8p23
		log2e = 0x1.715476p+0
		ln2hi = 0x1.62e4p-1
		ln2lo = 0x1.7f7d1cp-20
	)
	z := fma32(x, log2e, shift)
	n := float32(z - shift)
	b := fma32(-n, ln2lo, fma32(-n, ln2hi, x))
	switch {
	case n > 192:
		return float32(math.Inf(1))
	case n < -192:
		return 0
	case n != n:
		return n
	}
	u := float32(b * b)
	j := fma32(
		fma32(fma32(0x1.0e4020p-7, b, 0x1.573e2ep-5), u, fma32(0x1.555e66p-3, b, 0x1.fffdb6p-2)),
		u,
		fma32(0x1.ffffecp-1, b, 1))
	return scalef(j, int(n))
}

// scalef is vscalefps for an integral exponent: j·2ⁿ rounded once to float32
// (math.Ldexp rounds subnormal results correctly, as the instruction does
// without flush-to-zero).
func scalef(j float32, n int) float32 {
	return float32(math.Ldexp(float64(j), n))
}
