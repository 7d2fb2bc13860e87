package cpu

// K-quant dot products against Q8_K activations, in the float order of the
// kernel llama.cpp's x86 build runs:
//
//   - Q4_K weights with a multiple of 8 rows are repacked (repack.cpp, q4_K
//     8×8). Its gemv (one activation row) accumulates each output in one lane
//     with one FMA per super-block for the scaled sums and another chain for
//     the min sums, subtracted at the end; its gemm (activation rows in groups
//     of four) does the same per 64 elements.
//   - Everything else goes through ggml_vec_dot_q{4,5,6}_K_q8_K (AVX2): eight
//     lanes of exact integer sums, lane t taking elements 4t..4t+3 of every
//     32 (each times its sub-block scale), an FMA per super-block with
//     d_x·d_w, folded by hsum8, plus the min terms as each kernel keeps them.
//
// The integer sums are exact in every kernel; only how they are grouped
// before conversion to float, and the float sums, differ.

// groups4 returns the products of one super-block summed in groups of four:
// g[k] = Σ_{e=4k}^{4k+3} q_e·x_e, from which every kernel's integer sums are
// made.
func groups4(q, x *[qkK]int8) (g [qkK / 4]int32) {
	for k := range g {
		e := 4 * k
		g[k] = int32(q[e])*int32(x[e]) + int32(q[e+1])*int32(x[e+1]) +
			int32(q[e+2])*int32(x[e+2]) + int32(q[e+3])*int32(x[e+3])
	}
	return g
}

// sub32 is the sum of products over 32-element sub-block j.
func sub32(g *[qkK / 4]int32, j int) int32 {
	v := int32(0)
	for _, x := range g[8*j : 8*j+8] {
		v += x
	}
	return v
}

// bsum32 is the sum of the activation levels of 32-element sub-block j.
func bsum32(bs []int16, j int) int32 { return int32(bs[2*j]) + int32(bs[2*j+1]) }

// addLanesK adds one super-block of a Q4_K/Q5_K product to the eight lanes:
// lane t gets Σ_j scale_j·g[8j+t] by one FMA with d = d_x·d_w.
func addLanesK(lanes *[8]float32, g *[qkK / 4]int32, scale []int32, d float32) {
	for t := range lanes {
		var v int32
		for j, sc := range scale[:8] {
			v += sc * g[8*j+t]
		}
		lanes[t] = fma32(d, float32(v), lanes[t])
	}
}

// dotQ4_K pairs a decoded Q4_K weight row with Q8_K activations along path p.
func dotQ4_K(w *wrow, a act, p path) float32 {
	var lanes [8]float32
	var lanesMin [4]float32
	var sum, sumMin float32
	for b, dx := range a.d {
		g := groups4((*[qkK]int8)(w.q[qkK*b:qkK*b+qkK]), (*[qkK]int8)(a.q[qkK*b:qkK*b+qkK]))
		bs, scale, mins := a.bsums[16*b:16*b+16], w.sc[8*b:8*b+8], w.mn[8*b:8*b+8]
		dw, dmin := w.d[b], w.m[b]
		switch p {
		case pathVecDot:
			addLanesK(&lanes, &g, scale, float32(dx*dw))
			dm := -float32(dx * dmin)
			for u := range lanesMin {
				m := mins[2*u]*bsum32(bs, 2*u) + mins[2*u+1]*bsum32(bs, 2*u+1)
				lanesMin[u] = fma32(dm, float32(m), lanesMin[u])
			}
		default:
			d, dm := float32(dw*dx), float32(dmin*dx)
			// gemv adds once per super-block, gemm once per 64 elements.
			step := 8
			if p == pathGemm {
				step = 2
			}
			for j := 0; j < 8; j += step {
				var si, mi int32
				for k := j; k < j+step; k++ {
					si += scale[k] * sub32(&g, k)
					mi += mins[k] * bsum32(bs, k)
				}
				sum = fma32(float32(si), d, sum)
				sumMin = fma32(float32(mi), dm, sumMin)
			}
		}
	}
	if p == pathVecDot {
		return float32(hsum8(&lanes) + hsum4(&lanesMin))
	}
	return float32(sum - sumMin)
}

// dotQ5_K pairs a decoded Q5_K weight row with Q8_K activations (always
// ggml_vec_dot_q5_K_q8_K on x86). The min terms are summed as one scalar,
// summs += dmin·Σ m·bsum, which GCC contracts into an FMA.
func dotQ5_K(w *wrow, a act, _ path) float32 {
	var lanes [8]float32
	var summs float32
	for b, dx := range a.d {
		g := groups4((*[qkK]int8)(w.q[qkK*b:qkK*b+qkK]), (*[qkK]int8)(a.q[qkK*b:qkK*b+qkK]))
		bs, mins := a.bsums[16*b:16*b+16], w.mn[8*b:8*b+8]
		addLanesK(&lanes, &g, w.sc[8*b:8*b+8], float32(dx*w.d[b]))
		var m int32
		for j, mj := range mins {
			m += mj * bsum32(bs, j)
		}
		summs = fma32(-float32(dx*w.m[b]), float32(m), summs)
	}
	return float32(hsum8(&lanes) + summs)
}

// dotQ6_K pairs a decoded Q6_K weight row with Q8_K activations (always
// ggml_vec_dot_q6_K_q8_K on x86). The levels are used unsigned (0..63) and
// the offset of 32 removed per lane through the activation sums: lane t
// subtracts 32·(scale_{2t}·bsum_{2t} + scale_{2t+1}·bsum_{2t+1}), which moves
// integer amounts between lanes but not their total.
func dotQ6_K(w *wrow, a act, _ path) float32 {
	var lanes [8]float32
	for b, dx := range a.d {
		g := groups4((*[qkK]int8)(w.q[qkK*b:qkK*b+qkK]), (*[qkK]int8)(a.q[qkK*b:qkK*b+qkK]))
		bs, sc := a.bsums[16*b:16*b+16], w.sc[16*b:16*b+16]
		d := float32(dx * w.d[b])
		for t := range lanes {
			var v int32
			for j := range 8 { // 32-element sub-block j, whose 16-halves have scales 2j, 2j+1
				v += sc[2*j+t/4] * g[8*j+t]
			}
			v -= 32 * (sc[2*t]*int32(bs[2*t]) + sc[2*t+1]*int32(bs[2*t+1]))
			lanes[t] = fma32(d, float32(v), lanes[t])
		}
	}
	return hsum8(&lanes)
}
