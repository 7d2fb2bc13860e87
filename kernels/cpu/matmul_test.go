package cpu

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// companion rounds one activation row as llama.cpp's CPU backend does for
// weights of type typ, written here from the description of the formats (not
// with the package's quantizers) and returned in float64: the rounded values
// x' and, for Q8_1, each block's stored sum s = fp16(d·Σq) with d unrounded.
func companion(typ gguf.Type, x []float32) (xr, sums []float64) {
	xr = make([]float64, len(x))
	switch typ {
	case gguf.F32:
		for i, v := range x {
			xr[i] = float64(v)
		}
	case gguf.F16:
		for i, v := range x {
			xr[i] = float64(FP16ToFP32(FP32ToFP16(v)))
		}
	case gguf.BF16:
		for i, v := range x {
			xr[i] = float64(BF16ToFP32(FP32ToBF16(v)))
		}
	case gguf.Q4_K, gguf.Q5_K, gguf.Q6_K:
		for b := 0; b < len(x); b += 256 {
			var m, amax float32
			for _, v := range x[b : b+256] {
				if float32(math.Abs(float64(v))) > amax {
					m, amax = v, float32(math.Abs(float64(v)))
				}
			}
			if amax == 0 {
				continue
			}
			iscale := -127 / m
			d := 1 / iscale
			for i := b; i < b+256; i++ {
				q := min(127, math.RoundToEven(float64(iscale*x[i])))
				xr[i] = q * float64(d)
			}
		}
	default: // Q8_0 or Q8_1 blocks of 32
		for b := 0; b < len(x); b += 32 {
			var amax float32
			for _, v := range x[b : b+32] {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			d := amax / 127
			var id float32
			if amax != 0 {
				id = 127 / amax
			}
			dr := float64(FP16ToFP32(FP32ToFP16(d)))
			var sum float64
			for i := b; i < b+32; i++ {
				q := math.RoundToEven(float64(x[i] * id))
				xr[i] = q * dr
				sum += q
			}
			if typ == gguf.Q4_1 || typ == gguf.Q5_1 {
				sums = append(sums, float64(FP16ToFP32(FP32ToFP16(d*float32(sum)))))
			}
		}
	}
	return xr, sums
}

// matMulShapes covers one activation row and odd counts, odd weight rows, and
// for the float types a width that leaves a tail after the 8-lane loop.
func matMulShapes(typ gguf.Type) (cols []int, rows []int, ns []int) {
	switch typ.BlockSize() {
	case 256:
		cols = []int{256, 768}
	case 32:
		cols = []int{32, 96, 288}
	default:
		cols = []int{7, 37, 256}
	}
	return cols, []int{1, 5, 13}, []int{1, 3, 7}
}

// TestMatMulReference compares MatMul with a float64 product of the
// dequantized weights and the activations rounded to the companion format.
// For Q4_1/Q5_1 the min term uses each activation block's stored sum, as
// ggml does, so the reference adds m·(s − Σx') per block. What remains is
// float32 rounding in the sums: the error must stay below 5e-7 of
// Σ|w·x'| (+ Σ|m·s|), about 8 float32 ulps of the magnitude summed (the worst
// seen is under 1e-7).
func TestMatMulReference(t *testing.T) {
	t.Parallel()
	const tol = 5e-7
	for _, typ := range allTypes {
		cols, rowsList, ns := matMulShapes(typ)
		s := Scratch{k: best()}
		worst := 0.0
		for _, c := range cols {
			for _, rows := range rowsList {
				for _, n := range ns {
					seed := uint64(1000*c + 10*rows + n)
					w := make([]byte, rows*typ.RowSize(c))
					if err := Quantize(typ, randomData("gauss", rows*c, seed), w); err != nil {
						t.Fatal(err)
					}
					wd := make([]float32, rows*c)
					if err := Dequantize(typ, w, wd); err != nil {
						t.Fatal(err)
					}
					x := randomData("uniform", n*c, seed+1)
					if n > 1 {
						clear(x[c : c+min(c, 32)]) // an all-zero block
					}
					out := make([]float32, n*rows)
					s.MatMul(out, typ, w, rows, c, x, n, kernels.OrderLlama)
					for i := range n {
						xr, sums := companion(typ, x[i*c:(i+1)*c])
						for r := range rows {
							var ref, mag float64
							for j := range c {
								p := float64(wd[r*c+j]) * xr[j]
								ref += p
								mag += math.Abs(p)
							}
							if sums != nil {
								ts := typ.TypeSize()
								for b, sb := range sums {
									m := float64(getF16(w[r*typ.RowSize(c)+b*ts+2:]))
									var sx float64
									for _, v := range xr[32*b : 32*b+32] {
										sx += v
									}
									ref += m * (sb - sx)
									mag += math.Abs(m * sb)
								}
							}
							got := float64(out[i*rows+r])
							if e := math.Abs(got - ref); e > tol*mag {
								t.Errorf("%v %d×%d, n=%d: out[%d][%d] = %v, reference %v (error %.3g of Σ|w·x| = %.3g)",
									typ, rows, c, n, i, r, got, ref, e/mag, mag)
							} else if mag > 0 {
								worst = max(worst, e/mag)
							}
						}
					}
				}
			}
		}
		t.Logf("%v: worst error %.3g of Σ|w·x|", typ, worst)
	}
}

// TestActivationRounding pins the companion formats on constructed values
// where the x86 SIMD path and ggml's scalar reference disagree.
func TestActivationRounding(t *testing.T) {
	t.Parallel()
	// Q8_0: amax = 127 makes the multiplier exactly 1, so x = k + 0.5 is a tie:
	// _mm256_round_ps rounds it to even (the scalar roundf would not).
	x := make([]float32, 32)
	x[0] = 127
	x[1], x[2], x[3], x[4] = 2.5, 3.5, -2.5, -0.5
	q, d := make([]int8, 32), make([]float32, 1)
	quantizeActQ8_0(x, q, d)
	if d[0] != 1 || q[0] != 127 || q[1] != 2 || q[2] != 4 || q[3] != -2 || q[4] != 0 {
		t.Errorf("Q8_0: d=%v q=%v, want d=1 q=[127 2 4 −2 0 …]", d[0], q[:5])
	}

	// Q8_1: the same levels, and s = fp16(d·Σq) with the unrounded d = 3/127.
	for i := range x {
		x[i] = 0
	}
	x[0], x[1], x[2] = 3, 1, -2
	s := make([]float32, 1)
	quantizeActQ8_1(x, q, d, s)
	sumq := int(q[0]) + int(q[1]) + int(q[2]) // 127 + 42 − 85 (1·127/3 = 42.33, −2·127/3 = −84.67)
	if q[0] != 127 || q[1] != 42 || q[2] != -85 || s[0] != FP16ToFP32(FP32ToFP16(float32(3)/127*float32(sumq))) {
		t.Errorf("Q8_1: q=%v s=%v", q[:3], s[0])
	}
	if d[0] != FP16ToFP32(FP32ToFP16(float32(3)/127)) {
		t.Errorf("Q8_1: d=%v, want fp16(3/127)", d[0])
	}

	// Q8_K: the value m of largest magnitude (the first of a tie) maps to
	// −127, so the scale d = −m/127 has the opposite sign of m; ties round to
	// even; bsums add each 16 levels.
	qk8, dk, bs := make([]int8, 256), make([]float32, 1), make([]int16, 16)
	for _, m := range []float32{127, -127} {
		xk := make([]float32, 256)
		xk[3], xk[9] = m, -m
		xk[4], xk[5], xk[6], xk[20] = 2.5, 3.5, 1, 5
		quantizeActQ8_K(xk, qk8, dk, bs)
		sg := int8(1) // the sign of −127/m
		if m > 0 {
			sg = -1
		}
		want := []int8{-127, 2 * sg, 4 * sg, sg, 0, 0, 127}
		if dk[0] != -m/127 || !slices.Equal(qk8[3:10], want) {
			t.Errorf("Q8_K, m=%v: d=%v q[3:10]=%v, want d=%v q=%v", m, dk[0], qk8[3:10], -m/127, want)
		}
		if bs[0] != 7*int16(sg) || bs[1] != 5*int16(sg) {
			t.Errorf("Q8_K, m=%v: bsums %v, want %d %d", m, bs[:2], 7*sg, 5*sg)
		}
	}
	quantizeActQ8_K(make([]float32, 256), qk8, dk, bs)
	if dk[0] != 0 || bs[0] != 0 || qk8[3] != 0 {
		t.Errorf("Q8_K: an all-zero block gives d=%v", dk[0])
	}
}

// TestMatMulAllocs: with a warmed Scratch, MatMul allocates nothing.
func TestMatMulAllocs(t *testing.T) {
	for _, typ := range allTypes {
		const rows, n = 9, 3
		c := 256
		w := make([]byte, rows*typ.RowSize(c))
		if err := Quantize(typ, randomData("gauss", rows*c, 5), w); err != nil {
			t.Fatal(err)
		}
		x, out := randomData("gauss", n*c, 6), make([]float32, n*rows)
		s := Scratch{k: best()}
		s.MatMul(out, typ, w, rows, c, x, n, kernels.OrderLlama)
		if a := testing.AllocsPerRun(20, func() { s.MatMul(out, typ, w, rows, c, x, n, kernels.OrderLlama) }); a != 0 {
			t.Errorf("%v: %v allocations per MatMul", typ, a)
		}
	}
}

// TestMatMulMisuse: shapes that cannot be right panic.
func TestMatMulMisuse(t *testing.T) {
	t.Parallel()
	w := make([]byte, 2*gguf.Q8_0.RowSize(64))
	x, out := make([]float32, 64), make([]float32, 2)
	s := Scratch{k: best()}
	for name, f := range map[string]func(){
		"unsupported type": func() { s.MatMul(out, gguf.Q2_K, w, 2, 64, x, 1, kernels.OrderLlama) },
		"partial block":    func() { s.MatMul(out, gguf.Q8_0, w, 2, 48, x[:48], 1, kernels.OrderLlama) },
		"short weights":    func() { s.MatMul(out, gguf.Q8_0, w[:100], 2, 64, x, 1, kernels.OrderLlama) },
		"short x":          func() { s.MatMul(out, gguf.Q8_0, w, 2, 64, x[:63], 1, kernels.OrderLlama) },
		"long out":         func() { s.MatMul(make([]float32, 3), gguf.Q8_0, w, 2, 64, x, 1, kernels.OrderLlama) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	s.MatMul(out, gguf.Q8_0, w, 2, 64, x, 1, kernels.OrderLlama) // the right shapes do not panic
	s.MatMul(nil, gguf.Q8_0, nil, 0, 64, nil, 0, kernels.OrderLlama)
}

// BenchmarkMatMul times single-threaded products under every variant (the
// last name element), on a small shape and on a feed-forward-sized one.
func BenchmarkMatMul(b *testing.B) {
	for _, typ := range allTypes {
		for _, shape := range [][2]int{{768, 256}, {1024, 2816}} {
			rows, cols := shape[0], shape[1]
			for _, n := range []int{1, 16} {
				for _, v := range Variants() {
					b.Run(fmt.Sprintf("%v/%dx%d/n=%d/%s", typ, rows, cols, n, v), func(b *testing.B) {
						w := make([]byte, rows*typ.RowSize(cols))
						if err := Quantize(typ, randomData("gauss", rows*cols, 1), w); err != nil {
							b.Fatal(err)
						}
						x, out := randomData("gauss", n*cols, 2), make([]float32, n*rows)
						s := Scratch{k: kernelsFor(v, cpuDot)}
						b.SetBytes(int64(len(w)))
						for b.Loop() {
							s.MatMul(out, typ, w, rows, cols, x, n, kernels.OrderLlama)
						}
					})
				}
			}
		}
	}
}
