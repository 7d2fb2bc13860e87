package cpu

import (
	"math"

	"github.com/godwit-ai/godwit/kernels"
)

// The elementwise operations follow ggml's CPU code step for step (sums of
// squares and softmax denominators in float64, everything else in float32),
// so that results stay within rounding of llama.cpp's.

// RMSNorm normalises each dim-wide row of x into out, then scales by weight.
func RMSNorm(out, x, weight []float32, dim int, eps float32) {
	for r := 0; r+dim <= len(x); r += dim {
		row, o := x[r:r+dim], out[r:r+dim]
		var sum float64
		for _, v := range row {
			sum += float64(v * v)
		}
		mean := float32(sum / float64(dim))
		scale := 1 / float32(math.Sqrt(float64(mean+eps)))
		for i, v := range row {
			o[i] = v * scale * weight[i]
		}
	}
}

// RoPE rotates each head of each row of x in place; row i is at position pos[i].
func RoPE(x []float32, pos []int32, heads, headDim int, r *kernels.Rope) {
	freqScale := r.FreqScale
	if freqScale == 0 {
		freqScale = 1
	}
	thetaScale := float32(math.Pow(float64(r.Base), -2.0/float64(r.Dims)))
	half := r.Dims / 2
	rowLen := heads * headDim
	for i, p := range pos {
		theta := float32(p)
		for i0 := 0; i0 < r.Dims; i0 += 2 {
			t := theta
			if r.FreqFactors != nil {
				t /= r.FreqFactors[i0/2]
			}
			t *= freqScale
			sin64, cos64 := math.Sincos(float64(t))
			cos, sin := float32(cos64), float32(sin64)
			theta *= thetaScale
			// Pair members: (i0, i0+1) in normal mode, (i0/2, i0/2+half) in NEOX mode.
			a, b := i0, i0+1
			if r.Neox {
				a, b = i0/2, i0/2+half
			}
			for h := 0; h < heads; h++ {
				base := i*rowLen + h*headDim
				x0, x1 := x[base+a], x[base+b]
				x[base+a] = x0*cos - x1*sin
				x[base+b] = x0*sin + x1*cos
			}
		}
	}
}

// Softmax replaces x by softmax(x) in place.
func Softmax(x []float32) {
	max := float32(math.Inf(-1))
	for _, v := range x {
		if v > max {
			max = v
		}
	}
	var sum float64
	for i, v := range x {
		e := float32(math.Exp(float64(v - max)))
		x[i] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range x {
		x[i] *= inv
	}
}

// Dot is the f32 dot product of two equal-length vectors.
func Dot(a, b []float32) float32 {
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// Attention computes causal multi-head attention with grouped KV heads into
// out; scores must hold at least a.Pos0+n floats, where n is the number of
// query rows in q.
func Attention(out, q []float32, kv kernels.KV, a kernels.Attn, scores []float32) {
	qRow := a.Heads * a.HeadDim
	group := a.Heads / a.KVHeads
	n := len(q) / qRow
	for i := 0; i < n; i++ {
		last := a.Pos0 + i
		s := scores[:last+1]
		for h := 0; h < a.Heads; h++ {
			qh := q[i*qRow+h*a.HeadDim : i*qRow+(h+1)*a.HeadDim]
			off := (h / group) * a.HeadDim
			for p := 0; p <= last; p++ {
				s[p] = Dot(qh, kv.Key(a.Layer, p)[off:off+a.HeadDim]) * a.Scale
			}
			Softmax(s)
			o := out[i*qRow+h*a.HeadDim : i*qRow+(h+1)*a.HeadDim]
			clear(o)
			for p, w := range s {
				v := kv.Value(a.Layer, p)[off : off+a.HeadDim]
				for d, vd := range v {
					o[d] += w * vd
				}
			}
		}
	}
}

// SwiGLU sets gate[i] = silu(gate[i])·up[i].
func SwiGLU(gate, up []float32) {
	for i, g := range gate {
		gate[i] = g / (1 + float32(math.Exp(float64(-g)))) * up[i]
	}
}

// Add sets dst[i] += src[i].
func Add(dst, src []float32) {
	for i, v := range src {
		dst[i] += v
	}
}

// AddBias adds bias to every len(bias)-wide row of x.
func AddBias(x, bias []float32) {
	for r := 0; r+len(bias) <= len(x); r += len(bias) {
		Add(x[r:r+len(bias)], bias)
	}
}
