package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// Tests of the SIMD kernels of the 32-element block types (q32_amd64.s)
// against the plain Go kernels, which are the oracle: every result must have
// the same bits. On other architectures, and for VariantGo, the tables are
// empty and the tests compare the Go path with itself.

var q32Types = []gguf.Type{gguf.Q8_0, gguf.Q4_0, gguf.Q5_0, gguf.Q4_1, gguf.Q5_1}

// q32BlockCounts are the row lengths in blocks: none, a few, and enough for
// several trips through any unrolled or grouped code.
var q32BlockCounts = []int{0, 1, 2, 3, 7, 33}

// q32Complete reports whether variant v has every kernel of these tests: the
// amd64 SIMD variants do; NEON has one-row kernels for Q8_0 and Q4_0 only.
func q32Complete(v Variant) bool { return v == VariantAVX2 || v == VariantAVX512 }

// q32EachVariant runs f, as a subtest, with every kernel set this CPU has.
func q32EachVariant(t *testing.T, f func(t *testing.T, k *kernelSet)) {
	t.Helper()
	for _, k := range testSets() {
		t.Run(k.String(), func(t *testing.T) { f(t, k) })
	}
}

// q32Scale draws a block scale as fp16 stores it: mostly ordinary, sometimes
// zero, negative, the largest or a subnormal.
func q32Scale(r *rand.Rand) uint16 {
	switch r.IntN(8) {
	case 0:
		return 0
	case 1:
		return 0x7bff // 65504
	case 2:
		return uint16(1 + r.IntN(0x3ff)) // subnormal
	case 3:
		return 0x8000 | uint16(0x1400+r.IntN(0x3000)) // negative
	}
	return uint16(0x1400 + r.IntN(0x3000)) // 2⁻¹⁰ … 2⁸
}

// q32Weights returns a row of nb blocks of type typ: random levels (every
// byte value, every fifth bit) with the block scales (and mins) of q32Scale.
func q32Weights(r *rand.Rand, typ gguf.Type, nb int) []byte {
	ts := typ.TypeSize()
	w := make([]byte, nb*ts)
	for i := range w {
		w[i] = byte(r.Uint32())
	}
	for b := range nb {
		blk := w[b*ts : (b+1)*ts]
		if b%5 == 4 && typ == gguf.Q8_0 {
			for j := 2; j < ts; j++ {
				blk[j] = 0x80 // −128, the level ggml's quantizer never writes
			}
		}
		binary.LittleEndian.PutUint16(blk, q32Scale(r))
		if typ == gguf.Q4_1 || typ == gguf.Q5_1 {
			binary.LittleEndian.PutUint16(blk[2:], q32Scale(r))
		}
	}
	return w
}

// q32Act returns an activation row of nb blocks: levels in [−127, 127] (what
// quantizeAct32 gives for finite input), some blocks all ±127 or all zero,
// scales that are fp16 values, and for Q8_1 block sums.
func q32Act(r *rand.Rand, typ gguf.Type, nb int) act {
	a := act{q: make([]int8, qk*nb), d: make([]float32, nb)}
	for b := range nb {
		q := a.q[qk*b : qk*b+qk]
		switch r.IntN(6) {
		case 0:
			for j := range q {
				q[j] = int8(127 - 254*r.IntN(2))
			}
		case 1:
			// An all-zero block.
		default:
			for j := range q {
				q[j] = int8(r.IntN(255) - 127)
			}
		}
		a.d[b] = FP16ToFP32(q32Scale(r) &^ 0x8000)
	}
	if typ == gguf.Q4_1 || typ == gguf.Q5_1 {
		a.s = make([]float32, nb)
		for b := range a.s {
			a.s[b] = FP16ToFP32(q32Scale(r))
		}
	}
	return a
}

// q32Want is the plain Go kernel's product of weight row w and a along p.
func q32Want(typ gguf.Type, w []byte, a act, p path) float32 {
	var r wrow
	r.decode(typ, w, qk*len(a.d))
	return dotBlocks32Path(&r, a, p)
}

// q32Paths are the paths a product of typ can take: Q4_0 is repacked, and
// Q8_0 takes the repacked batch order in batch-invariant products.
func q32Paths(typ gguf.Type) []path {
	switch typ {
	case gguf.Q4_0:
		return []path{pathVecDot, pathGemv, pathGemm}
	case gguf.Q8_0:
		return []path{pathVecDot, pathGemm}
	}
	return []path{pathVecDot}
}

// sameFloat reports whether got and want have the same bits, or are both NaN
// (a NaN's payload is not pinned down: ggml's own vector and scalar code
// produce different ones).
func sameFloat(got, want float32) bool {
	return math.Float32bits(got) == math.Float32bits(want) || got != got && want != want
}

// TestQ32KernelsMatchGo: for every variant, block type, path and row length,
// the one-row and four-row kernels give the plain Go kernel's bits.
func TestQ32KernelsMatchGo(t *testing.T) {
	t.Parallel()
	q32EachVariant(t, func(t *testing.T, ks *kernelSet) {
		v := ks.variant
		r := rand.New(rand.NewPCG(32, uint64(len(v))))
		for _, typ := range q32Types {
			k, k4 := ks.quant[typ], ks.quant4[typ]
			if q32Complete(v) && (k == nil || k4 == nil) {
				t.Fatalf("%v: no kernel under variant %s", typ, v)
			}
			if k == nil {
				continue
			}
			for _, nb := range q32BlockCounts {
				for rep := range 20 {
					w := q32Weights(r, typ, nb)
					var a [4]act
					for i := range a {
						a[i] = q32Act(r, typ, nb)
					}
					for _, p := range q32Paths(typ) {
						var got4 [4]float32
						if k4 != nil {
							got4 = k4(w, &a, p)
						}
						for i := range a {
							want := q32Want(typ, w, a[i], p)
							if got := k(w, a[i], p); !sameFloat(got, want) {
								t.Errorf("%v nb=%d path %d #%d: kernel %g (%#x), Go %g (%#x)",
									typ, nb, p, rep, got, math.Float32bits(got), want, math.Float32bits(want))
							}
							if k4 != nil && !sameFloat(got4[i], want) {
								t.Errorf("%v nb=%d path %d #%d: four-row kernel, row %d: %g (%#x), Go %g (%#x)",
									typ, nb, p, rep, i, got4[i], math.Float32bits(got4[i]), want, math.Float32bits(want))
							}
						}
					}
				}
			}
		}
	})
}

// TestQ32KernelsSpecialScales: infinite and NaN block scales give what the Go
// kernel gives (NaN or ±Inf), in every lane order.
func TestQ32KernelsSpecialScales(t *testing.T) {
	t.Parallel()
	q32EachVariant(t, func(t *testing.T, ks *kernelSet) {
		r := rand.New(rand.NewPCG(33, 0))
		for _, typ := range q32Types {
			k, k4 := ks.quant[typ], ks.quant4[typ]
			if k == nil {
				continue
			}
			for _, h := range []uint16{0x7c00, 0xfc00, 0x7e00, 0x7c01} {
				const nb = 3
				w := q32Weights(r, typ, nb)
				binary.LittleEndian.PutUint16(w[typ.TypeSize():], h)
				var a [4]act
				for i := range a {
					a[i] = q32Act(r, typ, nb)
				}
				a[2].d[0] = float32(math.Inf(1))
				for _, p := range q32Paths(typ) {
					var got4 [4]float32
					if k4 != nil {
						got4 = k4(w, &a, p)
					}
					for i := range a {
						want := q32Want(typ, w, a[i], p)
						if got := k(w, a[i], p); !sameFloat(got, want) || k4 != nil && !sameFloat(got4[i], want) {
							t.Errorf("%v scale %#04x path %d row %d: kernels %g, %g; Go %g", typ, h, p, i, got, got4[i], want)
						}
					}
				}
			}
		}
	})
}

// q32RowCounts are the weight row counts for the multi-row kernels: fewer
// than a group, whole groups of four and of eight, and groups with a rest.
var q32RowCounts = []int{1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 23}

// q32Rows returns rows weight rows of nb blocks, stride bytes apart (the
// bytes between rows are junk that no kernel may read as levels), as the
// shortest slice that holds them, and one row's special block scale h at
// block 1 of rows 2 and 8 when h is not zero.
func q32Rows(r *rand.Rand, typ gguf.Type, nb, rows, stride int, h uint16) []byte {
	ts := typ.TypeSize()
	w := make([]byte, rows*stride)
	for i := range w {
		w[i] = 0xff
	}
	for i := range rows {
		row := w[i*stride : i*stride+nb*ts]
		copy(row, q32Weights(r, typ, nb))
		if h != 0 && (i == 2 || i == 8) && nb > 1 {
			binary.LittleEndian.PutUint16(row[ts:], h)
		}
	}
	return w[:(rows-1)*stride+nb*ts]
}

// q32CheckRows runs kernelSet.quantRows' kernel kr on the rows of w and compares
// each result with the plain Go kernel's bits; the entries of out past the
// rows must keep their values.
func q32CheckRows(t *testing.T, kr func([]byte, int, act, path, []float32), typ gguf.Type, w []byte, stride, rows int, a act, p path, what string) {
	t.Helper()
	out := make([]float32, rows+8)
	for i := range out {
		out[i] = float32(i) + 0.5
	}
	kr(w, stride, a, p, out[:rows])
	nb := len(a.d)
	for i := range rows {
		want := q32Want(typ, w[i*stride:i*stride+nb*typ.TypeSize()], a, p)
		if got := out[i]; !sameFloat(got, want) {
			t.Errorf("%v %s path %d: row %d of %d: %g (%#x), Go %g (%#x)",
				typ, what, p, i, rows, got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
	for i := rows; i < len(out); i++ {
		if out[i] != float32(i)+0.5 {
			t.Errorf("%v %s path %d: %d rows wrote out[%d]", typ, what, p, rows, i)
		}
	}
}

// TestQ32RowsKernelsMatchGo: for every variant, block type, path, row length,
// number of weight rows and row stride, the multi-row kernels give every
// row the plain Go kernel's bits and write nothing past out.
func TestQ32RowsKernelsMatchGo(t *testing.T) {
	t.Parallel()
	q32EachVariant(t, func(t *testing.T, ks *kernelSet) {
		v := ks.variant
		r := rand.New(rand.NewPCG(34, uint64(len(v))))
		for _, typ := range q32Types {
			kr := ks.quantRows[typ]
			if q32Complete(v) && kr == nil {
				t.Fatalf("%v: no multi-row kernel under variant %s", typ, v)
			}
			if kr == nil {
				continue
			}
			for _, nb := range q32BlockCounts {
				for _, rows := range q32RowCounts {
					for _, pad := range []int{0, 5} {
						stride := nb*typ.TypeSize() + pad
						w := q32Rows(r, typ, nb, rows, stride, 0)
						a := q32Act(r, typ, nb)
						for _, p := range q32Paths(typ) {
							q32CheckRows(t, kr, typ, w, stride, rows, a, p, fmt.Sprintf("nb=%d stride=%d", nb, stride))
						}
					}
				}
			}
		}
	})
}

// TestQ32RowsKernelsSpecialScales: infinite and NaN block scales in some
// rows of a group, or in the activation row, give what the Go kernel gives
// in every row.
func TestQ32RowsKernelsSpecialScales(t *testing.T) {
	t.Parallel()
	q32EachVariant(t, func(t *testing.T, ks *kernelSet) {
		r := rand.New(rand.NewPCG(35, 0))
		for _, typ := range q32Types {
			kr := ks.quantRows[typ]
			if kr == nil {
				continue
			}
			const nb, rows = 3, 17
			stride := nb * typ.TypeSize()
			for _, h := range []uint16{0x7c00, 0xfc00, 0x7e00, 0x7c01} {
				w := q32Rows(r, typ, nb, rows, stride, h)
				for _, infX := range []bool{false, true} {
					a := q32Act(r, typ, nb)
					if infX {
						a.d[2] = float32(math.Inf(1))
					}
					for _, p := range q32Paths(typ) {
						q32CheckRows(t, kr, typ, w, stride, rows, a, p, fmt.Sprintf("scale %#04x, infinite d_x %v", h, infX))
					}
				}
			}
		}
	})
}

// TestQ32KernelsFMARoundOnce pins an input where rounding twice (a·b + c to
// float64, then to float32) differs from the single rounding of the FMA
// instruction that these kernels and llama.cpp execute: lane 0 holds 64 after
// block 0, and block 1 adds d·l = 1321·2⁻²⁴ · 1025·2⁻²⁴ · 793 = 2⁻¹⁸ + 2⁻⁴⁸,
// just above half an ulp of 64, which float64 rounds to exactly half. It
// takes block scales 2³⁰ apart within a row and a lane sum with just the right
// factors (2³⁰+1 = 1321·1025·793); the random tests do not meet such rows.
// The plain Go kernel and every SIMD variant must give the single rounding.
func TestQ32KernelsFMARoundOnce(t *testing.T) {
	t.Parallel()
	// Two Q8_0 blocks: d_w = 1 with w_0 = 16, then d_w = 1321·2⁻²⁴ with
	// w_32 = 13; the activations have d_x = 1 and 1025·2⁻²⁴.
	w := make([]byte, 2*34)
	binary.LittleEndian.PutUint16(w, 0x3c00)
	w[2] = 16
	binary.LittleEndian.PutUint16(w[34:], 0x0529)
	w[36] = 13
	a := act{q: make([]int8, 64), d: []float32{1, FP16ToFP32(0x0401)}}
	a.q[0], a.q[32] = 4, 61
	d := new(big.Float).SetPrec(200).SetFloat64(float64(FP16ToFP32(0x0529) * a.d[1]))
	exact := d.Mul(d, big.NewFloat(13*61))
	exact.Add(exact, big.NewFloat(64))
	once, _ := exact.Float32()
	if got := q32Want(gguf.Q8_0, w, a, pathVecDot); got != once {
		t.Errorf("go: %g (%#x), want the single rounding %g (%#x)", got, math.Float32bits(got), once, math.Float32bits(once))
	}
	q32EachVariant(t, func(t *testing.T, ks *kernelSet) {
		k := ks.quant[gguf.Q8_0]
		if k == nil {
			t.Skip("no kernel")
		}
		if got := k(w, a, pathVecDot); got != once {
			t.Errorf("%g (%#x), want the single rounding %g (%#x)", got, math.Float32bits(got), once, math.Float32bits(once))
		}
	})
}

// q32ActRows returns activation rows that probe the Q8 quantizers: Gaussian
// and uniform data, exact ties (amax 127 makes the multiplier 1), zero and
// negative-zero blocks, subnormals (whose amax makes 127/amax overflow),
// huge values, infinities and NaNs.
func q32ActRows(nb int) map[string][]float32 {
	n := qk * nb
	rows := map[string][]float32{
		"gauss":   randomData("gauss", n, uint64(nb)),
		"uniform": randomData("uniform", n, uint64(nb)+100),
	}
	ties := make([]float32, n)
	for i := range ties {
		ties[i] = float32(i%255-127) + 0.5
		if i%qk == 0 {
			ties[i] = 127
		}
	}
	rows["ties"] = ties
	mixed := randomData("gauss", n, uint64(nb)+200)
	for b := range nb {
		blk := mixed[qk*b : qk*b+qk]
		switch b % 7 {
		case 0:
			clear(blk)
		case 1:
			for j := range blk {
				blk[j] = float32(math.Copysign(0, -1))
			}
		case 2:
			for j := range blk {
				blk[j] *= 1e-41 // subnormal
			}
		case 3:
			blk[3] = math.MaxFloat32
			blk[4] = -math.MaxFloat32
		case 4:
			blk[5] = float32(math.Inf(-1))
		case 5:
			blk[0] = 1e-45 // the smallest subnormal, the only non-zero
			clear(blk[1:])
		}
	}
	rows["mixed"] = mixed
	if nb > 0 {
		withNaN := randomData("gauss", n, uint64(nb)+300)
		// A payload that F16C would keep in d but FP32ToFP16 drops.
		withNaN[n-1] = math.Float32frombits(0x7fc02080)
		rows["nan"] = withNaN
	}
	return rows
}

// TestQ32ActQuantMatchesGo: the quantizers MatMul uses give the levels, scales
// and Q8_1 sums of quantizeActQ8_0 and quantizeActQ8_1, bit for bit.
func TestQ32ActQuantMatchesGo(t *testing.T) {
	t.Parallel()
	q32EachVariant(t, func(t *testing.T, ks *kernelSet) {
		for _, nb := range q32BlockCounts {
			for name, x := range q32ActRows(nb) {
				q, d, s := make([]int8, len(x)), make([]float32, nb), make([]float32, nb)
				wq, wd, ws := make([]int8, len(x)), make([]float32, nb), make([]float32, nb)
				for _, q81 := range []bool{false, true} {
					if q81 {
						ks.actQ8_1(x, q, d, s)
						quantizeActQ8_1(x, wq, wd, ws)
					} else {
						ks.actQ8_0(x, q, d)
						quantizeActQ8_0(x, wq, wd)
					}
					what := fmt.Sprintf("%s nb=%d Q8_1=%v", name, nb, q81)
					for j := range q {
						if q[j] != wq[j] {
							t.Fatalf("%s: q[%d] = %d, Go %d (x = %g)", what, j, q[j], wq[j], x[j])
						}
					}
					for b := range d {
						if math.Float32bits(d[b]) != math.Float32bits(wd[b]) || q81 && math.Float32bits(s[b]) != math.Float32bits(ws[b]) {
							t.Fatalf("%s: block %d: d %g s %g, Go d %g s %g", what, b, d[b], s[b], wd[b], ws[b])
						}
					}
				}
			}
		}
	})
}

// q32MatMulCase is one product for the MatMul tests.
type q32MatMulCase struct {
	typ           gguf.Type
	rows, cols, n int
	w             []byte
	x             []float32
}

// q32MatMulCases covers odd and repacked (multiple of 8) row counts, one
// group of the multi-row kernels, more than rowChunk rows and partial
// tiles, and activation row counts around the groups of four (Q4_0's gemm
// and gemv) below and above tileMinRows.
func q32MatMulCases(t *testing.T) []q32MatMulCase {
	var cs []q32MatMulCase
	for _, typ := range q32Types {
		for _, rows := range []int{7, 8, 16, 17, 40} {
			for _, cols := range []int{32, 96, 1056} {
				for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, tileMinRows, tileMinRows + 3} {
					seed := uint64(rows*10000 + cols*10 + n)
					w := make([]byte, rows*typ.RowSize(cols))
					if err := Quantize(typ, randomData("gauss", rows*cols, seed), w); err != nil {
						t.Fatal(err)
					}
					x := randomData("gauss", n*cols, seed+1)
					if n > 2 {
						clear(x[cols : cols+qk]) // an all-zero block
					}
					cs = append(cs, q32MatMulCase{typ, rows, cols, n, w, x})
				}
			}
		}
	}
	return cs
}

// TestQ32MatMulMatchesGo: MatMul under every variant, on one thread and on
// two, gives VariantGo's bits for every block type and shape.
func TestQ32MatMulMatchesGo(t *testing.T) {
	t.Parallel()
	cases := q32MatMulCases(t)
	want := make([][]float32, len(cases))
	s := Scratch{k: goSet()}
	for i, c := range cases {
		want[i] = make([]float32, c.n*c.rows)
		s.MatMul(want[i], c.typ, c.w, c.rows, c.cols, c.x, c.n, kernels.OrderLlama)
	}
	pool := NewPool(2)
	defer pool.Close()
	q32EachVariant(t, func(t *testing.T, ks *kernelSet) {
		for _, threaded := range []*Pool{nil, pool} {
			s := Scratch{Pool: threaded, k: ks}
			for i, c := range cases {
				got := make([]float32, c.n*c.rows)
				s.MatMul(got, c.typ, c.w, c.rows, c.cols, c.x, c.n, kernels.OrderLlama)
				for j := range got {
					if math.Float32bits(got[j]) != math.Float32bits(want[i][j]) {
						t.Errorf("%v %d×%d n=%d threads=%v: out[%d] = %g, Go %g", c.typ, c.rows, c.cols, c.n, threaded != nil, j, got[j], want[i][j])
						break
					}
				}
			}
		}
	})
}

// TestQ32MatMulAllocs: with a warmed Scratch, MatMul allocates nothing under
// any variant, through the one-row, four-row and multi-row kernels.
func TestQ32MatMulAllocs(t *testing.T) {
	q32EachVariant(t, func(t *testing.T, ks *kernelSet) {
		for _, typ := range q32Types {
			for _, rows := range []int{9, 16} {
				for _, n := range []int{1, 2, 5, tileMinRows + 1} {
					const c = 256
					w := make([]byte, rows*typ.RowSize(c))
					if err := Quantize(typ, randomData("gauss", rows*c, 5), w); err != nil {
						t.Fatal(err)
					}
					x, out := randomData("gauss", n*c, 6), make([]float32, n*rows)
					s := Scratch{k: ks}
					s.MatMul(out, typ, w, rows, c, x, n, kernels.OrderLlama)
					if a := testing.AllocsPerRun(20, func() { s.MatMul(out, typ, w, rows, c, x, n, kernels.OrderLlama) }); a != 0 {
						t.Errorf("%v, %d rows, n=%d: %v allocations per MatMul", typ, rows, n, a)
					}
				}
			}
		}
	})
}

// BenchmarkQ32Row times the row kernels alone: one weight row of 2816
// elements against one activation row, or four through the four-row kernel,
// for every variant and path. The data are quantized Gaussians: the
// subnormal scales of the tests would time microcode assists instead.
func BenchmarkQ32Row(b *testing.B) {
	const cols = 2816
	for _, typ := range q32Types {
		w := make([]byte, typ.RowSize(cols))
		if err := Quantize(typ, randomData("gauss", cols, 1), w); err != nil {
			b.Fatal(err)
		}
		var s Scratch
		a := (*[4]act)(s.quantizeActs(typ, randomData("gauss", 4*cols, 2), cols, 4))
		for _, p := range q32Paths(typ) {
			if p == pathGemm {
				continue // the same kernels as pathGemv
			}
			for _, v := range Variants() {
				k, k4 := kernelsFor(v, cpuDot).quant[typ], kernelsFor(v, cpuDot).quant4[typ]
				if k == nil {
					k = func(w []byte, a act, p path) float32 { return q32Want(typ, w, a, p) }
				}
				b.Run(fmt.Sprintf("%v/path=%d/rows=1/%s", typ, p, v), func(b *testing.B) {
					for b.Loop() {
						k(w, a[0], p)
					}
				})
				if k4 != nil {
					b.Run(fmt.Sprintf("%v/path=%d/rows=4/%s", typ, p, v), func(b *testing.B) {
						for b.Loop() {
							k4(w, a, p)
						}
					})
				}
			}
		}
	}
}

// BenchmarkQ32Rows times 16 weight rows of 2816 elements (small enough to
// stay in the L1 cache) against one activation row, for every variant and
// path: through kernelSet.quantRows ("rows") and through kernelSet.quant row
// by row ("each"). Both report the time per 16 rows.
func BenchmarkQ32Rows(b *testing.B) {
	const cols, rows = 2816, 16
	for _, typ := range q32Types {
		rb := typ.RowSize(cols)
		w := make([]byte, rows*rb)
		if err := Quantize(typ, randomData("gauss", rows*cols, 1), w); err != nil {
			b.Fatal(err)
		}
		var s Scratch
		a := s.quantizeActs(typ, randomData("gauss", cols, 2), cols, 1)[0]
		out := make([]float32, rows)
		for _, p := range q32Paths(typ) {
			if p == pathGemm {
				continue // the same kernels as pathGemv
			}
			for _, v := range Variants() {
				k, kr := kernelsFor(v, cpuDot).quant[typ], kernelsFor(v, cpuDot).quantRows[typ]
				if kr != nil {
					b.Run(fmt.Sprintf("%v/path=%d/rows/%s", typ, p, v), func(b *testing.B) {
						for b.Loop() {
							kr(w, rb, a, p, out)
						}
					})
				}
				if k != nil {
					b.Run(fmt.Sprintf("%v/path=%d/each/%s", typ, p, v), func(b *testing.B) {
						for b.Loop() {
							for r := range out {
								out[r] = k(w[r*rb:(r+1)*rb], a, p)
							}
						}
					})
				}
			}
		}
	}
}

// BenchmarkQ32Decode times the products of one decode step (one activation
// row) of a 0.35B llama: 24 layers of attention q, k, v, o (1024 and 512
// rows of 1024) and feed-forward gate, up (2816×1024) and down (1024×2816),
// 170 MB of Q4_0 or 320 MB of Q8_0, on one thread under each variant.
// Unlike the row benchmarks, whose rows stay in the cache, the weights
// stream from memory as in decode. The blocks have scale 1 and levels from
// a fixed pattern: the time does not depend on the values.
func BenchmarkQ32Decode(b *testing.B) {
	shapes := [][2]int{{1024, 1024}, {512, 1024}, {512, 1024}, {1024, 1024}, {2816, 1024}, {2816, 1024}, {1024, 2816}}
	for _, typ := range []gguf.Type{gguf.Q4_0, gguf.Q8_0} {
		type matrix struct {
			w          []byte
			rows, cols int
		}
		var ms []matrix
		var bytes int64
		for range 24 {
			for _, sh := range shapes {
				w := make([]byte, sh[0]*typ.RowSize(sh[1]))
				for i := range w {
					w[i] = byte(i * 37)
				}
				for i := 0; i < len(w); i += typ.TypeSize() {
					binary.LittleEndian.PutUint16(w[i:], 0x3c00)
				}
				ms = append(ms, matrix{w, sh[0], sh[1]})
				bytes += int64(len(w))
			}
		}
		x, out := randomData("gauss", 2816, 2), make([]float32, 2816)
		for _, v := range Variants() {
			b.Run(fmt.Sprintf("%v/%s", typ, v), func(b *testing.B) {
				s := Scratch{k: kernelsFor(v, cpuDot)}
				b.SetBytes(bytes)
				for b.Loop() {
					for _, m := range ms {
						s.MatMul(out[:m.rows], typ, m.w, m.rows, m.cols, x[:m.cols], 1, kernels.OrderLlama)
					}
				}
			})
		}
	}
}

// BenchmarkQ32ActQuant times the Q8_0 and Q8_1 quantizers MatMul uses on a
// row of 2816 Gaussian values, for every variant.
func BenchmarkQ32ActQuant(b *testing.B) {
	const cols = 2816
	x := randomData("gauss", cols, 3)
	q, d, s := make([]int8, cols), make([]float32, cols/qk), make([]float32, cols/qk)
	for _, v := range Variants() {
		k := kernelsFor(v, cpuDot)
		b.Run("Q8_0/"+string(v), func(b *testing.B) {
			for b.Loop() {
				k.actQ8_0(x, q, d)
			}
		})
		b.Run("Q8_1/"+string(v), func(b *testing.B) {
			for b.Loop() {
				k.actQ8_1(x, q, d, s)
			}
		})
	}
}

// TestTile32PackMatchesGo: the assembly packers write the bytes of
// packWeights for whole tiles, scales of every kind included.
func TestTile32PackMatchesGo(t *testing.T) {
	t.Parallel()
	if !cpuDot || !slices.Contains(Variants(), VariantAVX512) {
		t.Skip("no AVX-512 VNNI")
	}
	r := rand.New(rand.NewPCG(31, 32))
	for _, k := range []*tile32{
		{pack: tile32PackQ8_0AVX512, size: 34, qs: 2, bits: 8, offset: 128},
		{pack: tile32PackQ4_0AVX512, size: 18, qs: 2, bits: 4, offset: 8},
	} {
		for _, nb := range []int{1, 3, 88} {
			const stride = 7 // bytes between rows past their blocks
			rowBytes := nb*k.size + stride
			w := make([]byte, tileRows*rowBytes)
			for i := range w {
				w[i] = byte(r.Uint32())
			}
			want := make([]byte, nb*k.weightBytes())
			got := make([]byte, len(want))
			k.packWeights(want, w, rowBytes, tileRows, nb)
			k.pack(&w[0], rowBytes, nb, &got[0])
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("bits %d nb %d: byte %d of the tile is %#x, Go packs %#x", k.bits, nb, i, got[i], want[i])
				}
			}
		}
	}
}
