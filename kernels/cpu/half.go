package cpu

import "math"

// FP16ToFP32 converts an IEEE 754 half-precision value to float32. Every half
// value is exactly representable; a NaN keeps its payload and comes back quiet,
// as the F16C instruction vcvtph2ps does.
func FP16ToFP32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f && man == 0:
		return math.Float32frombits(sign | 0x7f800000)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7fc00000 | man<<13)
	case exp != 0:
		// Rebias the exponent from 15 to 127.
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	default:
		// Zero or subnormal: man × 2⁻²⁴, exact in float32.
		return math.Float32frombits(sign | math.Float32bits(float32(man)*0x1p-24))
	}
}

// FP32ToFP16 converts f to half precision, rounding to nearest with ties to
// even as F16C (vcvtps2ph with rounding mode 0) and ggml's scalar converter do:
// magnitudes from 65520 up become infinity, and values below the smallest
// normal round into the subnormals. A NaN becomes the quiet NaN 0x7e00 with
// f's sign, as in ggml_compute_fp32_to_fp16.
func FP32ToFP16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	abs := b & 0x7fffffff
	switch {
	case abs > 0x7f800000:
		return sign | 0x7e00
	case abs >= 0x477ff000: // 65520, the midpoint between 65504 and 2¹⁶
		return sign | 0x7c00
	case abs >= 0x38800000: // 2⁻¹⁴, the smallest normal half
		// Rebias the exponent from 127 to 15, then drop 13 mantissa bits with
		// round-to-nearest-even; a carry correctly bumps the exponent.
		m := abs - 112<<23
		m += 0xfff + (m>>13)&1
		return sign | uint16(m>>13)
	case abs <= 0x33000000: // 2⁻²⁵, the midpoint between 0 and 2⁻²⁴, ties to 0
		return sign
	default:
		// Subnormal result: the value in units of 2⁻²⁴ is man·2^(e−126).
		e := abs >> 23
		man := abs&0x7fffff | 0x800000
		shift := 126 - e
		q := man >> shift
		rem := man & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || rem == half && q&1 == 1 {
			q++ // may carry into the smallest normal, which encodes correctly
		}
		return sign | uint16(q)
	}
}

// BF16ToFP32 converts a bfloat16 value to float32 (exact: bf16 is the top half
// of a float32).
func BF16ToFP32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// FP32ToBF16 converts f to bfloat16 as ggml_compute_fp32_to_bf16 does: round to
// nearest with ties to even (subnormals included, no flush to zero), and a NaN
// is truncated and forced quiet.
func FP32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}
