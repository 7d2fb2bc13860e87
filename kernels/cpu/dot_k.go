package cpu

// K-quant dot products against Q8_K activations. Per super-block the scaled
// integer sum Σ_sub sc·Σ q_w·q_x and the min sum Σ_sub m·bsum are exact; they
// are weighted by d_w·d_x and dmin_w·d_x (d_w, dmin_w the fp16 super-block
// scales, d_x the float32 Q8_K scale) and accumulated in float32, the min
// part in its own sum subtracted at the end, as ggml's AVX2
// ggml_vec_dot_q{4,5}_K_q8_K keep it in a separate accumulator.

// dotQ4_K pairs Q4_K weights with Q8_K activations.
func dotQ4_K(w []byte, a act) float32 {
	var sum, sumMin float32
	for b, dx := range a.d {
		blk, q, bs := w[144*b:144*b+144], a.q[qkK*b:qkK*b+qkK], a.bsums[16*b:16*b+16]
		sc, qs := blk[4:16], blk[16:144]
		var sumi, mins int32
		for c := range 4 {
			s1, m1 := scaleMinK4(2*c, sc)
			s2, m2 := scaleMinK4(2*c+1, sc)
			x1, x2 := q[64*c:64*c+32], q[64*c+32:64*c+64]
			var p1, p2 int32
			for l, v := range qs[32*c : 32*c+32] {
				p1 += int32(v&0xf) * int32(x1[l])
				p2 += int32(v>>4) * int32(x2[l])
			}
			sumi += int32(s1)*p1 + int32(s2)*p2
			mins += int32(m1)*(int32(bs[4*c])+int32(bs[4*c+1])) + int32(m2)*(int32(bs[4*c+2])+int32(bs[4*c+3]))
		}
		sum += float32(float32(getF16(blk)*dx) * float32(sumi))
		sumMin += float32(float32(getF16(blk[2:])*dx) * float32(mins))
	}
	return sum - sumMin
}

// dotQ5_K pairs Q5_K weights with Q8_K activations.
func dotQ5_K(w []byte, a act) float32 {
	var sum, sumMin float32
	for b, dx := range a.d {
		blk, q, bs := w[176*b:176*b+176], a.q[qkK*b:qkK*b+qkK], a.bsums[16*b:16*b+16]
		sc, qh, qs := blk[4:16], blk[16:48], blk[48:176]
		var sumi, mins int32
		for c := range 4 {
			s1, m1 := scaleMinK4(2*c, sc)
			s2, m2 := scaleMinK4(2*c+1, sc)
			x1, x2 := q[64*c:64*c+32], q[64*c+32:64*c+64]
			var p1, p2 int32
			for l, v := range qs[32*c : 32*c+32] {
				h := qh[l] >> (2 * c)
				p1 += int32(v&0xf|(h&1)<<4) * int32(x1[l])
				p2 += int32(v>>4|(h>>1&1)<<4) * int32(x2[l])
			}
			sumi += int32(s1)*p1 + int32(s2)*p2
			mins += int32(m1)*(int32(bs[4*c])+int32(bs[4*c+1])) + int32(m2)*(int32(bs[4*c+2])+int32(bs[4*c+3]))
		}
		sum += float32(float32(getF16(blk)*dx) * float32(sumi))
		sumMin += float32(float32(getF16(blk[2:])*dx) * float32(mins))
	}
	return sum - sumMin
}

// dotQ6_K pairs Q6_K weights with Q8_K activations. The levels are used
// unsigned (0..63) and the offset 32 removed through the activation bsums,
// as ggml's AVX2 kernel does; the integer result is the same.
func dotQ6_K(w []byte, a act) float32 {
	var sum float32
	for b, dx := range a.d {
		blk, q, bs := w[210*b:210*b+210], a.q[qkK*b:qkK*b+qkK], a.bsums[16*b:16*b+16]
		scales := blk[192:208]
		var sumi int32
		for h := range 2 {
			ql, qh, x := blk[64*h:64*h+64], blk[128+32*h:160+32*h], q[128*h:128*h+128]
			var p [8]int32 // p[k] sums values 16k..16k+15 of this half
			for l := range 32 {
				hb, half := qh[l], l/16
				p[half] += int32(ql[l]&0xf|(hb&3)<<4) * int32(x[l])
				p[half+2] += int32(ql[l+32]&0xf|(hb>>2&3)<<4) * int32(x[l+32])
				p[half+4] += int32(ql[l]>>4|(hb>>4&3)<<4) * int32(x[l+64])
				p[half+6] += int32(ql[l+32]>>4|(hb>>6)<<4) * int32(x[l+96])
			}
			for k, pk := range p {
				sumi += int32(int8(scales[8*h+k])) * (pk - 32*int32(bs[8*h+k]))
			}
		}
		sum += float32(float32(getF16(blk[208:])*dx) * float32(sumi))
	}
	return sum
}
