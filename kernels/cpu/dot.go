package cpu

import (
	"encoding/binary"

	"github.com/godwit-ai/godwit/models/gguf"
)

// Row dot products, one weight row against one prepared activation row, in
// the lane order of the kernel llama.cpp's x86 build runs for that type (see
// simd.go). Float rows are decoded to float32 first; fp16 and bf16 values are
// exact in float32, and the kernels convert them the same way before adding.

// decodeFloatRow writes the F32, F16 or BF16 row w as float32 into dst.
func decodeFloatRow(t gguf.Type, w []byte, dst []float32) {
	switch t {
	case gguf.F32:
		for j := range dst {
			dst[j] = f32le(w[4*j:])
		}
	case gguf.F16:
		for j := range dst {
			dst[j] = FP16ToFP32(binary.LittleEndian.Uint16(w[2*j:]))
		}
	case gguf.BF16:
		for j := range dst {
			dst[j] = BF16ToFP32(binary.LittleEndian.Uint16(w[2*j:]))
		}
	}
}

// dotLanes16 is the inner product of llamafile's tinyBLAS<16, __m512>, which
// llama.cpp uses for F32, F16 and BF16 weights when a batch has at least two
// rows: element j goes to lane j mod 16, each lane accumulates with FMA, and
// the lanes are folded by _mm512_reduce_add_ps. len(x) is a multiple of 16.
func dotLanes16(w, x []float32) float32 {
	var acc [16]float32
	for l := 0; l < len(x); l += 16 {
		ws, xs := (*[16]float32)(w[l:l+16]), (*[16]float32)(x[l:l+16])
		for t := range acc {
			acc[t] = fma32(ws[t], xs[t], acc[t])
		}
	}
	return reduce16(&acc)
}

// vecDot64 is the SIMD part of ggml_vec_dot_f32 and ggml_vec_dot_f16 built
// for AVX512F (GGML_F32_STEP 64): four 16-lane FMA accumulators over blocks of
// 64 elements, element j in lane j mod 64, folded by fold64. It returns that
// sum and how many leading elements it covered; the callers add the rest as
// ggml does.
func vecDot64(w, x []float32) (float32, int) {
	var acc [64]float32
	np := len(x) &^ 63
	for i := 0; i < np; i += 64 {
		ws, xs := (*[64]float32)(w[i:i+64]), (*[64]float32)(x[i:i+64])
		for t := range acc {
			acc[t] = fma32(ws[t], xs[t], acc[t])
		}
	}
	return fold64(&acc), np
}

// fold64 adds the four 16-lane accumulators of vecDot64 (lanes 16j..16j+15
// are accumulator j) as GGML_F32x16_REDUCE does: 2 onto 0 and 3 onto 1, then 1
// onto 0, then _mm512_reduce_add_ps.
func fold64(a *[64]float32) float32 {
	var r [16]float32
	for t := range r {
		r[t] = float32(float32(a[t]+a[32+t]) + float32(a[16+t]+a[48+t]))
	}
	return reduce16(&r)
}

// vecDotF32 is ggml_vec_dot_f32: vecDot64, then the leftover elements added
// one by one to the float sum (GCC contracts sumf += x*y into an FMA).
func vecDotF32(w, x []float32) float32 {
	sum, np := vecDot64(w, x)
	for j := np; j < len(x); j++ {
		sum = fma32(w[j], x[j], sum)
	}
	return sum
}

// vecDotF16 is ggml_vec_dot_f16 for fp16 rows: vecDot64, with the leftovers
// added in float64 as ggml keeps its sum there.
func vecDotF16(w, x []float32) float32 {
	sum, np := vecDot64(w, x)
	s := float64(sum)
	for j := np; j < len(x); j++ {
		s += float64(float32(w[j] * x[j]))
	}
	return float32(s)
}

// vecDotBF16 is ggml_vec_dot_bf16 built for AVX512F without AVX512_BF16: two
// 16-lane accumulators over blocks of 32 (the products of bf16 values are exact
// in float32, so multiply-then-add and FMA agree), each folded by
// _mm512_reduce_add_ps and added in float64 with the leftovers.
func vecDotBF16(w, x []float32) float32 {
	var c1, c2 [16]float32
	np := len(x) &^ 31
	for i := 0; i < np; i += 32 {
		for t := range c1 {
			c1[t] = float32(c1[t] + float32(w[i+t]*x[i+t]))
			c2[t] = float32(c2[t] + float32(w[i+16+t]*x[i+16+t]))
		}
	}
	s := float64(reduce16(&c1)) + float64(reduce16(&c2))
	for j := np; j < len(x); j++ {
		s += float64(float32(w[j] * x[j]))
	}
	return float32(s)
}

// act holds one activation row in its companion format: levels q, per-block
// scales d, and for Q8_1 the block sums s, for Q8_K the sums of 16 levels.
type act struct {
	q     []int8
	d     []float32
	s     []float32
	bsums []int16
}

// dotQ8_0 pairs Q8_0 weights with Q8_0 activations.
func dotQ8_0(w []byte, a act) float32 {
	var sum float32
	for b, dx := range a.d {
		blk, q := w[34*b:34*b+34], a.q[qk*b:qk*b+qk]
		var s int32
		for j, v := range blk[2:34] {
			s += int32(int8(v)) * int32(q[j])
		}
		sum += float32(float32(getF16(blk)*dx) * float32(s))
	}
	return sum
}

// dotQ4_0 pairs Q4_0 weights (levels offset by 8) with Q8_0 activations.
func dotQ4_0(w []byte, a act) float32 {
	var sum float32
	for b, dx := range a.d {
		blk, q := w[18*b:18*b+18], a.q[qk*b:qk*b+qk]
		var s int32
		for j, v := range blk[2:18] {
			s += (int32(v&0xf)-8)*int32(q[j]) + (int32(v>>4)-8)*int32(q[j+16])
		}
		sum += float32(float32(getF16(blk)*dx) * float32(s))
	}
	return sum
}

// dotQ5_0 pairs Q5_0 weights (levels offset by 16) with Q8_0 activations.
func dotQ5_0(w []byte, a act) float32 {
	var sum float32
	for b, dx := range a.d {
		blk, q := w[22*b:22*b+22], a.q[qk*b:qk*b+qk]
		qh := binary.LittleEndian.Uint32(blk[2:])
		var s int32
		for j, v := range blk[6:22] {
			lo := int32(v&0xf) | int32(qh>>j&1)<<4
			hi := int32(v>>4) | int32(qh>>(j+16)&1)<<4
			s += (lo-16)*int32(q[j]) + (hi-16)*int32(q[j+16])
		}
		sum += float32(float32(getF16(blk)*dx) * float32(s))
	}
	return sum
}

// dotQ4_1 pairs Q4_1 weights with Q8_1 activations: d_w·d_x·Σq_w·q_x plus the
// min term m·s, where s is the activation block's stored d·Σq_x.
func dotQ4_1(w []byte, a act) float32 {
	var sum float32
	for b, dx := range a.d {
		blk, q := w[20*b:20*b+20], a.q[qk*b:qk*b+qk]
		var s int32
		for j, v := range blk[4:20] {
			s += int32(v&0xf)*int32(q[j]) + int32(v>>4)*int32(q[j+16])
		}
		sum += float32(float32(getF16(blk)*dx)*float32(s)) + float32(getF16(blk[2:])*a.s[b])
	}
	return sum
}

// dotQ5_1 pairs Q5_1 weights with Q8_1 activations, as dotQ4_1.
func dotQ5_1(w []byte, a act) float32 {
	var sum float32
	for b, dx := range a.d {
		blk, q := w[24*b:24*b+24], a.q[qk*b:qk*b+qk]
		qh := binary.LittleEndian.Uint32(blk[4:])
		var s int32
		for j, v := range blk[8:24] {
			lo := int32(v&0xf) | int32(qh>>j&1)<<4
			hi := int32(v>>4) | int32(qh>>(j+16)&1)<<4
			s += lo*int32(q[j]) + hi*int32(q[j+16])
		}
		sum += float32(float32(getF16(blk)*dx)*float32(s)) + float32(getF16(blk[2:])*a.s[b])
	}
	return sum
}
