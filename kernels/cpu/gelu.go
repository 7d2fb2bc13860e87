package cpu

import (
	"sync"
)

// Gemma's feed-forward gates with GELU in its tanh form, and its soft caps
// are tanh too. ggml's CPU backend takes GELU from a table of fp16 results
// indexed by the input rounded to fp16, filled at start-up by
// ggml_gelu_f32 in float32 arithmetic with libm's tanhf; the table, not the
// formula, is what its logits follow (the exact formula moves them by up to
// 0.03 on the reference models).

// geluF32 is ggml_gelu_f32: 0.5·x·(1 + tanhf(√(2/π)·x·(1 + 0.044715·x·x))),
// each operation rounded to float32 in C's order, except 1 + a·x·x, which
// gcc contracts into one FMA when it targets a CPU with FMA, as a native
// build does. (Of the table's entries, only the one at −1.999 depends on
// that contraction.)
func geluF32(x float32) float32 {
	const (
		coefA       = float32(0.044715)
		sqrt2OverPi = float32(0.79788456080286535587989211986876)
	)
	inner := fma32(float32(coefA*x), x, 1)
	t := tanhf(float32(float32(sqrt2OverPi*x) * inner))
	return float32(float32(0.5*x) * float32(1+t))
}

// geluTable is ggml_table_gelu_f16: the fp16 GELU of every fp16 value.
var geluTable = sync.OnceValue(func() *[1 << 16]uint16 {
	var t [1 << 16]uint16
	for h := range t {
		t[h] = FP32ToFP16(geluF32(FP16ToFP32(uint16(h))))
	}
	return &t
})

// gelu is ggml_vec_gelu_f32's GELU of x: 0 at or below −10, x at or above
// 10, else the table's value at x rounded to fp16.
func gelu(t *[1 << 16]uint16, x float32) float32 {
	switch {
	case x <= -10:
		return 0
	case x >= 10:
		return x
	}
	return FP16ToFP32(t[FP32ToFP16(x)])
}

// geGLU sets gate[i] = gelu(gate[i])·up[i] as ggml_vec_geglu_f32 does.
func geGLU(gate, up []float32) {
	t := geluTable()
	for i, g := range gate {
		if g <= -10 {
			gate[i] = 0
			continue
		}
		gate[i] = float32(gelu(t, g) * up[i])
	}
}

// softCap sets x[i] = c·tanhf(x[i]·(1/c)), as ggml's scale, tanh, scale
// sequence computes a soft cap of c.
func softCap(x []float32, c float32) {
	inv := 1 / c
	for i, v := range x {
		x[i] = float32(tanhf(float32(v*inv)) * c)
	}
}
