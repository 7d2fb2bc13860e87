package cpu

import "encoding/binary"

// Row dot products, one weight row against one prepared activation row.
//
// The float types keep eight float32 partial sums (element j in lane j mod 8)
// and fold them the way ggml's hsum_float_8 does, which both bounds the
// rounding error like ggml's SIMD loops and gives the CPU independent chains.
// The block types sum integer products per block exactly, then add
// (d_w·d_x)·sumi in float32, block after block, as ggml's generic
// ggml_vec_dot_*_q8_* do.

// hsum8 adds eight lanes as hsum_float_8: halves, then quarters, then pairs.
func hsum8(a *[8]float32) float32 {
	return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

// dotF32 is Σ w_j·x_j for an F32 weight row.
func dotF32(w []byte, x []float32) float32 {
	var acc [8]float32
	n := len(x) &^ 7
	for j := 0; j < n; j += 8 {
		ws, xs := w[4*j:4*j+32], x[j:j+8]
		for k := range 8 {
			acc[k] += float32(f32le(ws[4*k:]) * xs[k])
		}
	}
	sum := hsum8(&acc)
	for j := n; j < len(x); j++ {
		sum += float32(f32le(w[4*j:]) * x[j])
	}
	return sum
}

// dotF16 is Σ w_j·x_j for an F16 weight row and x already rounded to fp16.
func dotF16(w []byte, x []float32) float32 {
	var acc [8]float32
	n := len(x) &^ 7
	for j := 0; j < n; j += 8 {
		ws, xs := w[2*j:2*j+16], x[j:j+8]
		for k := range 8 {
			acc[k] += float32(FP16ToFP32(binary.LittleEndian.Uint16(ws[2*k:])) * xs[k])
		}
	}
	sum := hsum8(&acc)
	for j := n; j < len(x); j++ {
		sum += float32(FP16ToFP32(binary.LittleEndian.Uint16(w[2*j:])) * x[j])
	}
	return sum
}

// dotBF16 is Σ w_j·x_j for a BF16 weight row and x already rounded to bf16.
func dotBF16(w []byte, x []float32) float32 {
	var acc [8]float32
	n := len(x) &^ 7
	for j := 0; j < n; j += 8 {
		ws, xs := w[2*j:2*j+16], x[j:j+8]
		for k := range 8 {
			acc[k] += float32(BF16ToFP32(binary.LittleEndian.Uint16(ws[2*k:])) * xs[k])
		}
	}
	sum := hsum8(&acc)
	for j := n; j < len(x); j++ {
		sum += float32(BF16ToFP32(binary.LittleEndian.Uint16(w[2*j:])) * x[j])
	}
	return sum
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
