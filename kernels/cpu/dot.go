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

// wrow holds one quantized weight row decoded once for all activation rows:
// its levels (the _0 types with the offset removed, the others unsigned, as
// the x86 kernels use them), per block the scale d and the min m (Q4_1, Q5_1)
// or dmin (Q4_K, Q5_K), and for the K-quants the sub-block scales (8 per
// super-block, 16 for Q6_K) and mins (Q4_K, Q5_K).
type wrow struct {
	q      []int8
	d, m   []float32
	sc, mn []int32
}

// decode fills r from the row w of type t with cols elements, reusing r's
// storage.
func (r *wrow) decode(t gguf.Type, w []byte, cols int) {
	nb := cols / t.BlockSize()
	r.q = grow(r.q, cols)
	r.d = grow(r.d, nb)
	r.m = grow(r.m, nb)
	switch t {
	case gguf.Q4_K, gguf.Q5_K:
		r.sc, r.mn = grow(r.sc, 8*nb), grow(r.mn, 8*nb)
	case gguf.Q6_K:
		r.sc = grow(r.sc, 16*nb)
	}
	ts := t.TypeSize()
	for b := range nb {
		blk := w[ts*b : ts*(b+1)]
		switch t {
		case gguf.Q8_0:
			for j, v := range (*[qk]byte)(blk[2:34]) {
				r.q[qk*b+j] = int8(v)
			}
		case gguf.Q4_0:
			q := r.q[qk*b : qk*b+qk]
			for j, v := range (*[qk / 2]byte)(blk[2:18]) {
				q[j], q[j+16] = int8(v&0xf)-8, int8(v>>4)-8
			}
		case gguf.Q5_0:
			q, qh := r.q[qk*b:qk*b+qk], binary.LittleEndian.Uint32(blk[2:])
			for j, v := range (*[qk / 2]byte)(blk[6:22]) {
				q[j] = int8(v&0xf|byte(qh>>j&1)<<4) - 16
				q[j+16] = int8(v>>4|byte(qh>>(j+16)&1)<<4) - 16
			}
		case gguf.Q4_1:
			q := r.q[qk*b : qk*b+qk]
			for j, v := range (*[qk / 2]byte)(blk[4:20]) {
				q[j], q[j+16] = int8(v&0xf), int8(v>>4)
			}
			r.m[b] = getF16(blk[2:])
		case gguf.Q5_1:
			q, qh := r.q[qk*b:qk*b+qk], binary.LittleEndian.Uint32(blk[4:])
			for j, v := range (*[qk / 2]byte)(blk[8:24]) {
				q[j] = int8(v&0xf | byte(qh>>j&1)<<4)
				q[j+16] = int8(v>>4 | byte(qh>>(j+16)&1)<<4)
			}
			r.m[b] = getF16(blk[2:])
		case gguf.Q4_K:
			q := r.q[qkK*b : qkK*b+qkK]
			for c := range 4 {
				for l, v := range (*[32]byte)(blk[16+32*c : 48+32*c]) {
					q[64*c+l], q[64*c+32+l] = int8(v&0xf), int8(v>>4)
				}
			}
			r.kscales(b, blk[4:16])
			r.m[b] = getF16(blk[2:])
		case gguf.Q5_K:
			q, qh := r.q[qkK*b:qkK*b+qkK], (*[32]byte)(blk[16:48])
			for c := range 4 {
				for l, v := range (*[32]byte)(blk[48+32*c : 80+32*c]) {
					h := qh[l] >> (2 * c)
					q[64*c+l] = int8(v&0xf | (h&1)<<4)
					q[64*c+32+l] = int8(v>>4 | (h>>1&1)<<4)
				}
			}
			r.kscales(b, blk[4:16])
			r.m[b] = getF16(blk[2:])
		case gguf.Q6_K:
			q := r.q[qkK*b : qkK*b+qkK]
			for h := range 2 {
				ql, qh, qq := blk[64*h:64*h+64], (*[32]byte)(blk[128+32*h:160+32*h]), q[128*h:128*h+128]
				for l, hb := range qh {
					qq[l] = int8(ql[l]&0xf | (hb&3)<<4)
					qq[l+32] = int8(ql[l+32]&0xf | (hb>>2&3)<<4)
					qq[l+64] = int8(ql[l]>>4 | (hb>>4&3)<<4)
					qq[l+96] = int8(ql[l+32]>>4 | (hb>>6)<<4)
				}
			}
			for j, v := range (*[16]byte)(blk[192:208]) {
				r.sc[16*b+j] = int32(int8(v))
			}
			r.d[b] = getF16(blk[208:])
			continue
		}
		r.d[b] = getF16(blk)
	}
}

// kscales decodes the eight 6-bit scales and mins of Q4_K/Q5_K super-block b.
func (r *wrow) kscales(b int, sc []byte) {
	for j := range 8 {
		s, m := scaleMinK4(j, sc)
		r.sc[8*b+j], r.mn[8*b+j] = int32(s), int32(m)
	}
}

// lanes8 returns the eight integer lane sums of one 32-element block
// product: lane t holds Σ q_j·x_j over j = 4t..4t+3, as vpdpbusd (or maddubs
// and madd) leaves them.
func lanes8(q, x *[qk]int8) (l [8]int32) {
	for t := range l {
		j := 4 * t
		l[t] = int32(q[j])*int32(x[j]) + int32(q[j+1])*int32(x[j+1]) +
			int32(q[j+2])*int32(x[j+2]) + int32(q[j+3])*int32(x[j+3])
	}
	return l
}

// The 32-element block types. llama.cpp multiplies them with
// ggml_vec_dot_*_q8_* (AVX2) or, for batches, llamafile's tinyBLAS_Q0_AVX;
// both keep eight float lanes, lane t taking the exact integer sum of
// elements 4t..4t+3 of each block times the block's d_w·d_x (a product of two
// fp16 values, exact in float32) by FMA, then fold them by hsum8 and, for the
// _1 types, add the min terms summed separately. Q4_0 weights with a multiple
// of 8 rows are repacked instead (repack.cpp, q4_0 8×8), whose gemv and gemm
// accumulate each output in one lane, one FMA per block.

// dotBlocks32 is the dot product of a decoded weight row of a 32-element
// block type with a Q8_0 or Q8_1 activation row. oneLane selects the repacked
// kernels' order, else the eight-lane one. For the _1 types (a.s set) it adds
// Σ m·s, the min term, after the lanes.
func dotBlocks32(w *wrow, a act, oneLane bool) float32 {
	var acc [8]float32
	var sum, summs float32
	for b, dx := range a.d {
		lane := lanes8((*[qk]int8)(w.q[qk*b:qk*b+qk]), (*[qk]int8)(a.q[qk*b:qk*b+qk]))
		d := float32(w.d[b] * dx)
		if oneLane {
			s := lane[0] + lane[1] + lane[2] + lane[3] + lane[4] + lane[5] + lane[6] + lane[7]
			sum = fma32(float32(s), d, sum)
		} else {
			for t, l := range lane {
				acc[t] = fma32(d, float32(l), acc[t])
			}
		}
		if a.s != nil {
			summs = fma32(w.m[b], a.s[b], summs)
		}
	}
	if oneLane {
		return sum
	}
	return float32(hsum8(&acc) + summs)
}
