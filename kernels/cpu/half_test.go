package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// halfValue decodes h from the IEEE 754 definition, independently of
// FP16ToFP32.
func halfValue(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, man := int(h>>10&0x1f), float64(h&0x3ff)
	switch exp {
	case 0x1f:
		if man != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	case 0:
		return sign * math.Ldexp(man, -24)
	}
	return sign * math.Ldexp(1024+man, exp-25)
}

// TestFP16AllValues decodes every half value and encodes it back: each
// non-NaN value must decode exactly and come back to the same bits; NaNs
// must stay NaNs with their sign.
func TestFP16AllValues(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := FP16ToFP32(h)
		want := halfValue(h)
		if math.IsNaN(want) {
			back := FP32ToFP16(f)
			if !math.IsNaN(float64(f)) || back&0x7c00 != 0x7c00 || back&0x3ff == 0 || back&0x8000 != h&0x8000 {
				t.Fatalf("NaN %#04x: decodes to %v, re-encodes to %#04x", h, f, back)
			}
			continue
		}
		if float64(f) != want || math.Signbit(float64(f)) != (h&0x8000 != 0) {
			t.Fatalf("%#04x decodes to %v, want %v", h, f, want)
		}
		if back := FP32ToFP16(f); back != h {
			t.Fatalf("%#04x → %v → %#04x", h, f, back)
		}
	}
}

// TestFP32ToFP16Ties rounds the exact midpoint between every pair of adjacent
// finite halves (both signs, subnormals included): it must go to the one
// with an even mantissa, and one float32 ulp either side to the nearer one.
func TestFP32ToFP16Ties(t *testing.T) {
	for _, sign := range []uint16{0, 0x8000} {
		for h := uint16(0); h < 0x7bff; h++ {
			a, b := FP16ToFP32(sign|h), FP16ToFP32(sign|(h+1))
			mid := (a + b) / 2 // exact: 12 significant bits
			even := h
			if h&1 == 1 {
				even = h + 1
			}
			if got := FP32ToFP16(mid); got != sign|even {
				t.Fatalf("midpoint %v of %#04x and %#04x → %#04x, want %#04x", mid, sign|h, sign|(h+1), got, sign|even)
			}
			toA := math.Nextafter32(mid, a)
			toB := math.Nextafter32(mid, b)
			if FP32ToFP16(toA) != sign|h || FP32ToFP16(toB) != sign|(h+1) {
				t.Fatalf("%v → %#04x, %v → %#04x: want %#04x, %#04x", toA, FP32ToFP16(toA), toB, FP32ToFP16(toB), sign|h, sign|(h+1))
			}
		}
	}
	for _, c := range []struct {
		f    float32
		want uint16
	}{
		{65520, 0x7c00}, // midpoint of 65504 and 2¹⁶: ties to even, which is infinity
		{math.Nextafter32(65520, 0), 0x7bff},
		{-65520, 0xfc00},
		{1e10, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{0x1p-25, 0x0000}, // midpoint of 0 and the smallest subnormal
		{math.Nextafter32(0x1p-25, 1), 0x0001},
		{-0x1p-26, 0x8000},
		{1e-30, 0},
		{0x1.ffcp-15, 0x0400}, // rounds up from the largest subnormal into the smallest normal
		{float32(math.NaN()), 0x7e00},
	} {
		if got := FP32ToFP16(c.f); got != c.want {
			t.Errorf("FP32ToFP16(%v) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
}

// ggmlFP32ToFP16 is ggml_compute_fp32_to_fp16 (ggml-impl.h), ggml's scalar
// converter, transcribed as an independent reference: it rounds by adding a
// power of two in float32 arithmetic.
func ggmlFP32ToFP16(f float32) uint16 {
	base := float32(abs32(f)*0x1p112) * 0x1p-110
	w := math.Float32bits(f)
	shl1 := w + w
	sign := w & 0x80000000
	bias := max(shl1&0xff000000, 0x71000000)
	base = math.Float32frombits(bias>>1+0x07800000) + float32(base)
	bits := math.Float32bits(base)
	nonsign := bits>>13&0x7c00 + bits&0x0fff
	if shl1 > 0xff000000 {
		return uint16(sign>>16) | 0x7e00
	}
	return uint16(sign>>16) | uint16(nonsign)
}

// TestFP32ToFP16MatchesGGML compares with ggml's converter on every float32
// exponent with random mantissas (NaNs included).
func TestFP32ToFP16MatchesGGML(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for exp := range uint32(256) {
		for range 4096 {
			b := r.Uint32()&0x807fffff | exp<<23
			f := math.Float32frombits(b)
			if got, want := FP32ToFP16(f), ggmlFP32ToFP16(f); got != want {
				t.Fatalf("%#08x (%v): got %#04x, ggml %#04x", b, f, got, want)
			}
		}
	}
}

// TestBF16 checks every bf16 value's round trip, ties to even, and NaN
// quieting.
func TestBF16(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := BF16ToFP32(h)
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("%#04x decodes to %#08x", h, math.Float32bits(f))
		}
		if math.IsNaN(float64(f)) {
			if got := FP32ToBF16(f); got != h|0x40 {
				t.Fatalf("NaN %#04x re-encodes to %#04x, want %#04x (quiet)", h, got, h|0x40)
			}
			continue
		}
		if got := FP32ToBF16(f); got != h {
			t.Fatalf("%#04x → %v → %#04x", h, f, got)
		}
		// The midpoint to the next value up (in magnitude) ties to even.
		if h&0x7fff < 0x7f80 {
			mid := math.Float32frombits(uint32(h)<<16 | 0x8000)
			want := h
			if h&1 == 1 {
				want = h + 1
			}
			if got := FP32ToBF16(mid); got != want {
				t.Fatalf("midpoint %#08x → %#04x, want %#04x", math.Float32bits(mid), got, want)
			}
			if got := FP32ToBF16(math.Float32frombits(uint32(h)<<16 | 0x8001)); got != h+1 {
				t.Fatalf("above midpoint of %#04x → %#04x", h, got)
			}
		}
	}
	for _, c := range []struct {
		bits uint32
		want uint16
	}{
		{0x7f800001, 0x7fc0}, // signalling NaN made quiet
		{0xff812345, 0xffc1},
		{0x7f7fffff, 0x7f80}, // largest float32 rounds to infinity
		{0x00008000, 0x0000}, // subnormal tie to even: no flush, no round up
		{0x00018000, 0x0002},
	} {
		if got := FP32ToBF16(math.Float32frombits(c.bits)); got != c.want {
			t.Errorf("FP32ToBF16(%#08x) = %#04x, want %#04x", c.bits, got, c.want)
		}
	}
}
