package cpu

import (
	"math"
	"testing"
)

// TestTanhf: tanhf gives glibc's results (recorded from glibc 2.36's
// tanhf on x86-64), across its branches, including ones an ulp away from
// the correctly rounded value.
func TestTanhf(t *testing.T) {
	for _, c := range []struct{ x, want float32 }{
		{0x1.001902p-7, 0x1.0017aep-7}, // correctly rounded: 0x1.0017acp-7
		{-0x1.001a86p-7, -0x1.001932p-7},
		{0x1.9999a6p-4, 0x1.983d82p-4},
		{0x1.99999cp-2, 0x1.851158p-2},
		{0x1.ccccdp-1, 0x1.6ebe9cp-1},
		{0x1.1999bap+0, 0x1.99db18p-1},
		{0x1.000012p+1, 0x1.ed950cp-1},
		{-0x1.800096p+1, -0x1.fd77d8p-1},
		{0x1.8p-1, 0x1.45323ep-1},
		{0x1p+0, 0x1.85efacp-1},
		{0x1.4p+2, 0x1.fff41ap-1},
		{0x1.3p+3, 1},
		{0x1.7p+4, 1},
		{0x1.79ca1p-67, 0x1.79ca1p-67},
		{0, 0},
	} {
		if got := tanhf(c.x); got != c.want {
			t.Errorf("tanhf(%x) = %x, want %x", c.x, got, c.want)
		}
	}
	if got := tanhf(float32(math.Inf(-1))); got != -1 {
		t.Errorf("tanhf(-Inf) = %v, want -1", got)
	}
	if got := tanhf(float32(math.NaN())); got == got {
		t.Errorf("tanhf(NaN) = %v, want NaN", got)
	}
}

// TestGELU: the table's GELU is the tanh-form GELU to fp16 precision, and
// gelu cuts off at ±10 as ggml does.
func TestGELU(t *testing.T) {
	tab := geluTable()
	exact := func(x float64) float64 {
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
	for x := float32(-9.99); x < 10; x += 0.01 {
		got, want := float64(gelu(tab, x)), exact(float64(x))
		// The input and the result are both rounded to fp16.
		if tol := 2e-3*math.Abs(want) + 2e-3*math.Abs(float64(x)) + 1e-6; math.Abs(got-want) > tol {
			t.Fatalf("gelu(%g) = %g, want %g", x, got, want)
		}
	}
	for _, c := range []struct{ x, want float32 }{{-10, 0}, {-30, 0}, {10, 10}, {12.5, 12.5}} {
		if got := gelu(tab, c.x); got != c.want {
			t.Errorf("gelu(%g) = %g, want %g", c.x, got, c.want)
		}
	}
	gate, up := []float32{-11, 0.5, 11, 2}, []float32{3, 4, 5, -1}
	geGLU(gate, up)
	for i, want := range []float32{0, gelu(tab, 0.5) * 4, 55, -gelu(tab, 2)} {
		if gate[i] != want {
			t.Errorf("geGLU: gate[%d] = %g, want %g", i, gate[i], want)
		}
	}
}

// TestSoftCap: c·tanh(x/c), close to float64, bounded by c.
func TestSoftCap(t *testing.T) {
	x := []float32{-1000, -30, -1, 0, 0.5, 29, 1e6}
	y := append([]float32(nil), x...)
	softCap(y, 30)
	for i, v := range x {
		want := 30 * math.Tanh(float64(v)/30)
		if math.Abs(float64(y[i])-want) > 1e-5*30 || math.Abs(float64(y[i])) > 30 {
			t.Errorf("softCap(%g) = %g, want %g", v, y[i], want)
		}
	}
}
