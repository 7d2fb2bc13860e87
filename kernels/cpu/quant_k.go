package cpu

import (
	"encoding/binary"
	"math"
)

// groupMaxEps is ggml's GROUP_MAX_EPS: a group whose largest magnitude is
// below it counts as all zero.
const groupMaxEps = 1e-15

// makeQKX2Quants is ggml's make_qkx2_quants with squared-error weighting: it
// fits x ≈ scale·L − theMin with L in [0, nmax], trying nstep+1 candidate
// inverse scales around nmax/(max−min) and keeping the weighted least-squares
// fit with the lowest error. L receives the chosen levels; laux is scratch of
// len(x).
func makeQKX2Quants(x, weights []float32, nmax int, l, laux []uint8, rmin, rdelta float32, nstep int) (scale, theMin float32) {
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < len(x); i++ {
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		sumW += weights[i]
		sumX += float32(weights[i] * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		clear(l)
		return 0, -lo
	}
	fmax := float32(nmax)
	iscale := fmax / (hi - lo)
	scale = 1 / iscale
	var bestErr float32
	for i, v := range x {
		q := min(max(nearestInt(iscale*(v-lo)), 0), nmax)
		l[i] = uint8(q)
		diff := float32(scale*float32(q)) + lo - v
		bestErr += float32(weights[i] * float32(diff*diff))
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + fmax) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			q := min(max(nearestInt(iscale*(v-lo)), 0), nmax)
			laux[i] = uint8(q)
			wl := float32(weights[i] * float32(q))
			sumL += wl
			sumL2 += float32(wl * float32(q))
			sumXL += float32(wl * v)
		}
		det := float32(sumW*sumL2) - float32(sumL*sumL)
		if det <= 0 {
			continue
		}
		thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / det
		thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / det
		if thisMin > 0 {
			thisMin = 0
			thisScale = sumXL / sumL2
		}
		var curErr float32
		for i, v := range x {
			diff := float32(thisScale*float32(laux[i])) + thisMin - v
			curErr += float32(weights[i] * float32(diff*diff))
		}
		if curErr < bestErr {
			copy(l, laux)
			bestErr, scale, lo = curErr, thisScale, thisMin
		}
	}
	return scale, -lo
}

// makeQXQuants is ggml's make_qx_quants with rmse_type 1 and no importance
// weights (weights x²): it fits x ≈ scale·(L−nmax) with L in [0, 2·nmax),
// trying inverse scales −(nmax ± 0.1·k)/max for k = 1..9 and keeping the best
// least-squares fit.
func makeQXQuants(x []float32, nmax int, l []int8) float32 {
	maxv, amax := absMax(x)
	if amax < groupMaxEps {
		clear(l)
		return 0
	}
	fmax := float32(nmax)
	level := func(iscale, v float32) int {
		return min(max(nearestInt(iscale*v), -nmax), nmax-1)
	}
	sums := func(iscale float32) (sumLX, sumL2 float32) {
		for _, v := range x {
			q := float32(level(iscale, v))
			w := v * v
			sumLX += float32(float32(w*v) * q)
			sumL2 += float32(float32(w*q) * q)
		}
		return sumLX, sumL2
	}
	iscale := -fmax / maxv
	for i, v := range x {
		l[i] = int8(level(iscale, v) + nmax)
	}
	sumLX, sumL2 := sums(iscale)
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := scale * sumLX
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fmax + float32(0.1*float32(is))) / maxv
		sumLX, sumL2 = sums(iscale)
		if sumL2 > 0 && float32(sumLX*sumLX) > float32(best*sumL2) {
			for i, v := range x {
				l[i] = int8(level(iscale, v) + nmax)
			}
			scale = sumLX / sumL2
			best = scale * sumLX
		}
	}
	return scale
}

// scaleMinK4 unpacks the 6-bit scale and min of sub-block j from the 12-byte
// scales field of a Q4_K or Q5_K block (ggml's get_scale_min_k4).
func scaleMinK4(j int, s []byte) (sc, m uint8) {
	if j < 4 {
		return s[j] & 63, s[j+4] & 63
	}
	return s[j+4]&0xf | (s[j-4]>>6)<<4, s[j+4]>>4 | (s[j]>>6)<<4
}

// quantizeSuperScales is the part shared by quantize_row_q4_K_ref and
// quantize_row_q5_K_ref: fit each 32-value sub-block with make_qkx2_quants,
// store the scales and mins as 6-bit multiples of the fp16 super-block d and
// dmin (in y[0:16]), then requantize every value against the stored scales.
// The levels land in l.
func quantizeSuperScales(x []float32, y []byte, nmax int, rmin float32, nstep int, l []uint8) {
	var scales, mins [qkK / 32]float32
	var weights [32]float32
	var laux [32]uint8
	var maxScale, maxMin float32
	for j := range qkK / 32 {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := float32(math.Sqrt(float64(sumX2 / 32)))
		for i, v := range xs {
			weights[i] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQKX2Quants(xs, weights[:], nmax, l[32*j:32*j+32], laux[:], rmin, 0.1, nstep)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	s := y[4:16]
	for j := range qkK / 32 {
		ls := min(63, uint8(nearestInt(invScale*scales[j])))
		lm := min(63, uint8(nearestInt(invMin*mins[j])))
		if j < 4 {
			s[j] = ls
			s[j+4] = lm
		} else {
			s[j+4] = ls&0xf | (lm&0xf)<<4
			s[j-4] |= (ls >> 4) << 6
			s[j] |= (lm >> 4) << 6
		}
	}
	putF16(y, maxScale/63)
	putF16(y[2:], maxMin/63)
	d, dmin := getF16(y), getF16(y[2:])
	for j := range qkK / 32 {
		sc, m := scaleMinK4(j, s)
		ds := d * float32(sc)
		if ds == 0 {
			continue // keep make_qkx2_quants' levels, as ggml does
		}
		dm := float32(dmin * float32(m))
		for i := 32 * j; i < 32*j+32; i++ {
			l[i] = uint8(min(max(nearestInt((x[i]+dm)/ds), 0), nmax))
		}
	}
}

// quantizeBlockQ4_K is quantize_row_q4_K_ref: eight sub-blocks of 32 with
// 6-bit scales and mins, 4-bit levels packed two 32-value halves per 32 bytes.
func quantizeBlockQ4_K(x []float32, y []byte) {
	var l [qkK]uint8
	quantizeSuperScales(x, y, 15, -1, 20, l[:])
	q := y[16:144]
	for j := 0; j < qkK; j += 64 {
		for i := range 32 {
			q[j/2+i] = l[j+i] | l[j+i+32]<<4
		}
	}
}

// quantizeBlockQ5_K is quantize_row_q5_K_ref: as Q4_K with 5-bit levels, the
// fifth bits spread over qh (bit 2k and 2k+1 for the k-th 64-value chunk).
func quantizeBlockQ5_K(x []float32, y []byte) {
	var l [qkK]uint8
	quantizeSuperScales(x, y, 31, -0.5, 15, l[:])
	qh, ql := y[16:48], y[48:176]
	clear(qh)
	for n := 0; n < qkK; n += 64 {
		m1, m2 := uint8(1)<<(n/32), uint8(2)<<(n/32)
		for j := range 32 {
			l1, l2 := l[n+j], l[n+j+32]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			ql[n/2+j] = l1 | l2<<4
		}
	}
}

// quantizeBlockQ6_K is quantize_row_q6_K_ref: sixteen sub-blocks of 16 with
// signed 8-bit scales of an fp16 d, 6-bit levels split into low nibbles (ql)
// and high pairs (qh).
func quantizeBlockQ6_K(x []float32, y []byte) {
	var l [qkK]int8
	var scales [qkK / 16]float32
	var maxScale, maxAbsScale float32
	for ib := range qkK / 16 {
		s := makeQXQuants(x[16*ib:16*ib+16], 32, l[16*ib:16*ib+16])
		scales[ib] = s
		if a := abs32(s); a > maxAbsScale {
			maxAbsScale, maxScale = a, s
		}
	}
	if maxAbsScale < groupMaxEps {
		clear(y)
		return
	}
	iscale := -128 / maxScale
	putF16(y[208:], 1/iscale)
	sc := y[192:208]
	for ib := range sc {
		sc[ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
	}
	d := getF16(y[208:])
	for j := range qkK / 16 {
		ds := d * float32(int8(sc[j]))
		if ds == 0 {
			continue
		}
		for i := 16 * j; i < 16*j+16; i++ {
			l[i] = int8(min(max(nearestInt(x[i]/ds), -32), 31) + 32)
		}
	}
	ql, qh := y[0:128], y[128:192]
	for j := 0; j < qkK; j += 128 {
		for i := range 32 {
			q1, q2, q3, q4 := uint8(l[j+i]), uint8(l[j+i+32]), uint8(l[j+i+64]), uint8(l[j+i+96])
			ql[j/2+i] = q1&0xf | (q3&0xf)<<4
			ql[j/2+i+32] = q2&0xf | (q4&0xf)<<4
			qh[j/4+i] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
		}
	}
}

// f32le reads a little-endian float32.
func f32le(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }
