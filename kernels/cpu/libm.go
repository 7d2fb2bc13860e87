package cpu

import (
	"encoding/hex"
	"math"
)

// sinf and cosf reproduce glibc's single-precision sine and cosine (the
// algorithm glibc has used since 2.28, from Arm's optimized routines, in the
// variant its x86-64 ifunc picks on CPUs with FMA). ggml's RoPE cache calls
// cosf and sinf, and those are within 0.56 ulp of the exact values but not
// always the correctly rounded ones; math.Sin and math.Cos rounded to float32
// differ from them for about 1% of angles, which shifts rotated queries and
// keys by an ulp. Only |x| < 120 is modelled, the range of glibc's one-step
// reduction, and beyond it the exact reduction glibc does with 4/π to 192 bits.

// sincosfPoly holds one of glibc's __sincosf_table entries: the cosine
// polynomial c0..c4 and sine polynomial s1..s3 (the second entry negates the
// cosine one for quadrants 2 and 3).
type sincosfPoly struct {
	c0, c1, c2, c3, c4, s1, s2, s3 float64
}

var sincosfTable = [2]sincosfPoly{
	{0x1p0, -0x1.ffffffd0c621cp-2, 0x1.55553e1068f19p-5, -0x1.6c087e89a359dp-10, 0x1.99343027bf8c3p-16,
		-0x1.555545995a603p-3, 0x1.1107605230bc4p-7, -0x1.994eb3774cf24p-13},
	{-0x1p0, 0x1.ffffffd0c621cp-2, -0x1.55553e1068f19p-5, 0x1.6c087e89a359dp-10, -0x1.99343027bf8c3p-16,
		-0x1.555545995a603p-3, 0x1.1107605230bc4p-7, -0x1.994eb3774cf24p-13},
}

// sinfPoly evaluates the sine (n even) or cosine (n odd) polynomial at x with
// x2 = x², in float64 with the products and sums fused as the FMA build
// compiles them.
func sinfPoly(x, x2 float64, p *sincosfPoly, n int) float32 {
	if n&1 == 0 {
		x3 := x * x2
		s1 := math.FMA(x2, p.s3, p.s2)
		x7 := x3 * x2
		s := math.FMA(x3, p.s1, x)
		return float32(math.FMA(x7, s1, s))
	}
	x4 := x2 * x2
	c2 := math.FMA(x2, p.c4, p.c3)
	c1 := math.FMA(x2, p.c1, p.c0)
	x6 := x4 * x2
	c := math.FMA(x4, p.c2, c1)
	return float32(math.FMA(x6, c2, c))
}

// abstop12 is the biased exponent of f with the sign cleared, with which
// glibc picks its range.
func abstop12(f float32) uint32 { return math.Float32bits(f) >> 20 & 0x7ff }

// sinfcosf returns glibc's sinf(y) (cos false) or cosf(y) (cos true).
func sinfcosf(y float32, cos bool) float32 {
	const (
		pio4   = 0x1.921FB54442D18p-1
		hpiInv = 0x1.45F306DC9C883p+23 // 2/π·2²⁴: the quadrant lands in bits 24..31
		hpi    = 0x1.921FB54442D18p0
	)
	odd := 0
	if cos {
		odd = 1
	}
	x := float64(y)
	switch {
	case abstop12(y) < abstop12(float32(pio4)):
		if abstop12(y) < abstop12(0x1p-12) {
			if cos {
				return 1
			}
			return y
		}
		return sinfPoly(x, x*x, &sincosfTable[0], odd)
	case abstop12(y) < abstop12(120):
		r := x * hpiInv
		n := (int32(r) + 0x800000) >> 24
		x = math.FMA(-float64(n), hpi, x)
		s := 1.0
		if n&3 == 1 || n&3 == 2 {
			s = -1
		}
		p := &sincosfTable[0]
		if n&2 != 0 {
			p = &sincosfTable[1]
		}
		return sinfPoly(x*s, x*x, p, int(n)^odd)
	case abstop12(y) < abstop12(float32(math.Inf(1))):
		xi := math.Float32bits(y)
		sign := int(xi >> 31)
		x, n := reduceLarge(xi)
		q := n + sign
		s := 1.0
		if q&3 == 1 || q&3 == 2 {
			s = -1
		}
		p := &sincosfTable[0]
		if q&2 != 0 {
			p = &sincosfTable[1]
		}
		return sinfPoly(x*s, x*x, p, n^odd)
	default:
		return float32(math.NaN())
	}
}

// invPio4 is glibc's __inv_pio4: entry i holds the 32 bits of the fraction of
// 4/π that end with its (i+1)-th byte, so any 96-bit window is three aligned
// loads.
var invPio4 = func() (t [24]uint32) {
	bits, _ := hex.DecodeString("a2f9836e4e441529fc2757d1f534ddc0db6295993c439041") // 4/π, 192 bits
	for i := range t {
		for b := i - 3; b <= i; b++ {
			t[i] <<= 8
			if b >= 0 {
				t[i] |= uint32(bits[b])
			}
		}
	}
	return t
}()

// reduceLarge is glibc's reduce_large for |x| ≥ 120 (xi the bits of x): the
// 2.62 fixed-point product of the mantissa and 4/π gives the quadrant n and
// the remainder in [−π/4, π/4] (as a float64 accurate to 33 bits).
func reduceLarge(xi uint32) (float64, int) {
	const pi63 = 0x1.921FB54442D18p-62 // 2π·2⁻⁶⁴
	arr := invPio4[xi>>26&15:]
	m := (xi&0xffffff | 0x800000) << (xi >> 23 & 7)
	res0 := uint64(m * arr[0]) // a 32-bit product: only its low bits matter
	res1 := uint64(m) * uint64(arr[4])
	res2 := uint64(m) * uint64(arr[8])
	res0 = res2>>32 | res0<<32
	res0 += res1
	n := (res0 + 1<<61) >> 62
	res0 -= n << 62
	return float64(int64(res0)) * pi63, int(n)
}
