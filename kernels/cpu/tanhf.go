package cpu

import "math"

// tanhf reproduces glibc's single-precision tanh (s_tanhf.c with
// s_expm1f.c, from Sun's fdlibm, glibc's until CORE-MATH replaced it in
// 2.41): ggml's soft caps and GELU table call it, and it is not correctly
// rounded (about a quarter of its results are an ulp off), so tanh in
// float64 rounded to float32 would move Gemma's scores and logits.
func tanhf(x float32) float32 {
	const tiny = 1e-30
	jx := int32(math.Float32bits(x))
	ix := jx & 0x7fffffff
	var z float32
	switch {
	case ix >= 0x7f800000: // ±Inf, NaN
		if jx >= 0 {
			return float32(1/x) + 1
		}
		return float32(1/x) - 1
	case ix >= 0x41b00000: // |x| ≥ 22
		z = 1 - tiny
	case ix == 0:
		return x
	case ix < 0x24000000: // |x| < 2⁻⁵⁵
		return float32(x * float32(1+x))
	case ix >= 0x3f800000: // |x| ≥ 1
		t := expm1f(float32(2 * abs32(x)))
		z = float32(1 - float32(2/float32(t+2)))
	default:
		t := expm1f(float32(-2 * abs32(x)))
		z = float32(-t / float32(t+2))
	}
	if jx >= 0 {
		return z
	}
	return -z
}

// expm1f is fdlibm's expm1f in float32 arithmetic, each operation rounded.
func expm1f(x float32) float32 {
	const (
		huge       = 1.0e+30
		tiny       = 1.0e-30
		oThreshold = 8.8721679688e+01
		ln2Hi      = 6.9313812256e-01
		ln2Lo      = 9.0580006145e-06
		invLn2     = 1.4426950216e+00
		q1         = -3.3333335072e-02
		q2         = 1.5873016091e-03
		q3         = -7.9365076090e-05
		q4         = 4.0082177293e-06
		q5         = -2.0109921195e-07
	)
	hx := math.Float32bits(x)
	neg := hx&0x80000000 != 0
	hx &= 0x7fffffff
	if hx >= 0x4195b844 { // |x| ≥ 27·ln2
		if hx >= 0x42b17218 { // |x| ≥ 88.72
			switch {
			case hx > 0x7f800000:
				return x + x
			case hx == 0x7f800000:
				if neg {
					return -1
				}
				return x
			case x > oThreshold:
				return float32(math.Inf(1))
			}
		}
		if neg {
			return tiny - 1
		}
	}
	var hi, lo, c float32
	var k int32
	switch {
	case hx > 0x3eb17218: // |x| > ln2/2
		if hx < 0x3F851592 { // and < 1.5·ln2
			if !neg {
				hi, lo, k = x-ln2Hi, ln2Lo, 1
			} else {
				hi, lo, k = x+ln2Hi, -ln2Lo, -1
			}
		} else {
			half := float32(0.5)
			if neg {
				half = -0.5
			}
			k = int32(float32(float32(invLn2*x) + half))
			t := float32(k)
			hi = float32(x - float32(t*ln2Hi))
			lo = float32(t * ln2Lo)
		}
		x = float32(hi - lo)
		c = float32(float32(hi-x) - lo)
	case hx < 0x33000000: // |x| < 2⁻²⁵
		t := float32(huge + x)
		return float32(x - float32(t-float32(huge+x)))
	}
	hfx := float32(0.5 * x)
	hxs := float32(x * hfx)
	r1 := float32(1 + float32(hxs*float32(q1+float32(hxs*float32(q2+float32(hxs*float32(q3+float32(hxs*float32(q4+float32(hxs*q5))))))))))
	t := float32(3 - float32(r1*hfx))
	e := float32(hxs * float32(float32(r1-t)/float32(6-float32(x*t))))
	if k == 0 {
		return float32(x - float32(float32(x*e)-hxs))
	}
	e = float32(float32(x*float32(e-c)) - c)
	e = float32(e - hxs)
	switch {
	case k == -1:
		return float32(float32(0.5*float32(x-e)) - 0.5)
	case k == 1:
		if x < -0.25 {
			return float32(-2 * float32(e-float32(x+0.5)))
		}
		return float32(1 + float32(2*float32(x-e)))
	case k <= -2 || k > 56:
		y := float32(1 - float32(e-x))
		y = math.Float32frombits(uint32(int32(math.Float32bits(y)) + k<<23))
		return float32(y - 1)
	case k < 23:
		t := math.Float32frombits(uint32(0x3f800000 - (0x1000000 >> k))) // 1 − 2⁻ᵏ
		y := float32(t - float32(e-x))
		return math.Float32frombits(uint32(int32(math.Float32bits(y)) + k<<23))
	default:
		t := math.Float32frombits(uint32((0x7f - k) << 23)) // 2⁻ᵏ
		y := float32(x - float32(e+t))
		y = float32(y + 1)
		return math.Float32frombits(uint32(int32(math.Float32bits(y)) + k<<23))
	}
}
