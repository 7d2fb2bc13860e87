package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// The SIMD float kernels (float_amd64.s) must give exactly the plain Go
// kernels' bits for every input; the tests below run every variant this CPU
// has against the Go functions themselves. A NaN result only has to be a NaN
// (its payload may differ); everything else, infinities, −0 and subnormals
// included, must match bit for bit.

// awkwardLens are row lengths around the 16-, 32- and 64-wide blocks.
var awkwardLens = []int{0, 1, 7, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 127, 128, 200, 256 + 13, 1024}

// forEachSIMD runs f, as a subtest, with every SIMD kernel set of this CPU
// (none on other architectures).
func forEachSIMD(t *testing.T, f func(t *testing.T, k *kernelSet)) {
	t.Helper()
	for _, k := range testSets() {
		if k.variant == VariantGo {
			continue
		}
		t.Run(k.String(), func(t *testing.T) { f(t, k) })
	}
}

// sameBits reports whether got and want are the same float32: equal bits,
// or both NaN.
func sameBits(got, want float32) bool {
	return math.Float32bits(got) == math.Float32bits(want) || got != got && want != want
}

func checkSame(t *testing.T, what string, got, want []float32) {
	t.Helper()
	bad := 0
	for i := range want {
		if !sameBits(got[i], want[i]) {
			if bad++; bad <= 5 {
				t.Errorf("%s[%d] = %g (%#08x), Go gives %g (%#08x)", what, i,
					got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
		}
	}
}

// spread returns n values of both signs whose magnitudes spread over 2^±e,
// with a zero now and then, so that sums of them round at every step.
func spread(r *rand.Rand, n, e int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Ldexp(r.NormFloat64(), r.IntN(2*e+1)-e))
		if r.IntN(50) == 0 {
			v[i] = 0
		}
	}
	return v
}

// floatRow encodes x as a row of t and returns it with its decoded values.
func floatRow(t gguf.Type, x []float32) ([]byte, []float32) {
	w := make([]byte, t.RowSize(len(x)))
	for j, v := range x {
		switch t {
		case gguf.F32:
			binary.LittleEndian.PutUint32(w[4*j:], math.Float32bits(v))
		case gguf.F16:
			binary.LittleEndian.PutUint16(w[2*j:], FP32ToFP16(v))
		case gguf.BF16:
			binary.LittleEndian.PutUint16(w[2*j:], FP32ToBF16(v))
		}
	}
	d := make([]float32, len(x))
	decodeFloatRow(t, w, d)
	return w, d
}

// goFloatDot is the plain Go row dot that kernelSet.float[t] replaces.
func goFloatDot(t gguf.Type, w, x []float32, lanes16 bool) float32 {
	switch {
	case lanes16:
		return dotLanes16(w, x)
	case t == gguf.F32:
		return vecDotF32(w, x)
	case t == gguf.F16:
		return vecDotF16(w, x)
	}
	return vecDotBF16(w, x)
}

var floatTypes = []gguf.Type{gguf.F32, gguf.F16, gguf.BF16}

// TestSIMDFloatDots: kernelSet.float[t] equals the Go row dots in both
// orders for random rows of every awkward length, the activations rounded to
// the weight's precision as MatMul passes them or not, and so does
// kernelSet.float4[t] for four activation rows.
func TestSIMDFloatDots(t *testing.T) {
	t.Parallel()
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, typ := range floatTypes {
			k := ks.float[typ]
			if k == nil {
				t.Fatalf("%v: no SIMD kernel", typ)
			}
			for _, n := range awkwardLens {
				for trial := range 20 {
					// F16 holds magnitudes up to 65504, the others far more.
					e := 12
					if typ == gguf.F16 {
						e = 6
					}
					w, wd := floatRow(typ, spread(r, n, e))
					x := spread(r, n, e)
					if trial%2 == 0 {
						switch typ {
						case gguf.F16:
							roundFP16Go(x, x)
						case gguf.BF16:
							roundBF16Go(x, x)
						}
					}
					for _, lanes16 := range []bool{false, true} {
						if lanes16 && n%16 != 0 {
							continue
						}
						got, want := k(w, x, lanes16), goFloatDot(typ, wd, x, lanes16)
						if !sameBits(got, want) {
							t.Errorf("%v n=%d lanes16=%v trial %d: %g (%#08x), Go gives %g (%#08x)",
								typ, n, lanes16, trial, got, math.Float32bits(got), want, math.Float32bits(want))
						}
					}
					if k4 := ks.float4[typ]; k4 != nil && n%16 == 0 {
						x4 := append(spread(r, 3*n, e), x...)
						var got [4]float32
						k4(&got, w, x4)
						for i, v := range got {
							if want := dotLanes16(wd, x4[i*n:(i+1)*n]); !sameBits(v, want) {
								t.Errorf("%v n=%d four rows, row %d, trial %d: %g, Go gives %g", typ, n, i, trial, v, want)
							}
						}
					}
				}
			}
		}
	})
}

// TestSIMDFloatTiles: every tiled kernel, for each count of activation rows
// it takes, gives each output exactly dotLanes16's bits, with weight rows
// and outputs further apart than a tile needs, and writes nothing else.
func TestSIMDFloatTiles(t *testing.T) {
	t.Parallel()
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, typ := range floatTypes {
			tile := ks.floatTile[typ]
			if tile.k == nil {
				t.Fatalf("%v: no tiled kernel", typ)
			}
			rm := tile.rows
			for _, cols := range []int{16, 32, 48, 64, 256 + 16, 1024} {
				for n := 1; n <= len(tile.k); n++ {
					e := 12
					if typ == gguf.F16 {
						e = 6
					}
					size := typ.RowSize(1)
					ldw := size*cols + 2*size*r.IntN(3)
					w := make([]byte, (rm-1)*ldw+size*cols)
					wd := make([][]float32, rm)
					for i := range rm {
						row, dec := floatRow(typ, spread(r, cols, e))
						copy(w[i*ldw:], row)
						wd[i] = dec
					}
					x := spread(r, n*cols, e)
					ldo := rm + r.IntN(3)
					out := make([]float32, (n-1)*ldo+rm+1)
					const canary = float32(-12345)
					for i := range out {
						out[i] = canary
					}
					tile.k[n-1](out, ldo, w, ldw, x, cols)
					for j := range n {
						for i := range rm {
							want := dotLanes16(wd[i], x[j*cols:(j+1)*cols])
							if got := out[j*ldo+i]; !sameBits(got, want) {
								t.Errorf("%v cols=%d %dx%d tile, out(%d,%d) = %g, Go gives %g", typ, cols, rm, n, i, j, got, want)
							}
						}
						for i := rm; j < n-1 && i < ldo; i++ {
							if out[j*ldo+i] != canary {
								t.Errorf("%v cols=%d %dx%d tile wrote out[%d]", typ, cols, rm, n, j*ldo+i)
							}
						}
					}
					if out[len(out)-1] != canary {
						t.Errorf("%v cols=%d %dx%d tile wrote past its last output", typ, cols, rm, n)
					}
				}
			}
		}
	})
}

// TestSIMDFloatDotsSpecial: rows with infinities, NaNs, −0 and subnormals
// give the same results as Go (NaN for NaN).
func TestSIMDFloatDotsSpecial(t *testing.T) {
	t.Parallel()
	special := []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		float32(math.Copysign(0, -1)), 0x1p-140, -0x1p-149, 0x1p-20, 65504, -3e38}
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, typ := range floatTypes {
			for _, n := range []int{16, 64, 65, 127} {
				for trial := range 50 {
					w, x := spread(r, n, 4), spread(r, n, 4)
					for range 1 + trial%3 {
						if r.IntN(2) == 0 {
							w[r.IntN(n)] = special[r.IntN(len(special))]
						} else {
							x[r.IntN(n)] = special[r.IntN(len(special))]
						}
					}
					wb, wd := floatRow(typ, w)
					for _, lanes16 := range []bool{false, n%16 == 0} {
						got, want := ks.float[typ](wb, x, lanes16), goFloatDot(typ, wd, x, lanes16)
						if !sameBits(got, want) {
							t.Errorf("%v n=%d lanes16=%v trial %d: %g, Go gives %g", typ, n, lanes16, trial, got, want)
						}
					}
				}
			}
		}
	})
}

// roundingInputs returns float32 bit patterns around every rounding boundary
// of fp16 and bf16 in every exponent, both signs, NaNs with payloads
// included, then random patterns.
func roundingInputs(r *rand.Rand) []float32 {
	var v []float32
	mans := []uint32{0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x7fff, 0x8000, 0x8001,
		0x18000, 0x7fe000, 0x7ff000, 0x7fffff, 0x400000, 0x400001}
	for sign := range uint32(2) {
		for exp := range uint32(256) {
			for _, m := range mans {
				v = append(v, math.Float32frombits(sign<<31|exp<<23|m))
			}
			for range 8 {
				v = append(v, math.Float32frombits(sign<<31|exp<<23|r.Uint32()&0x7fffff))
			}
		}
	}
	for range 20000 {
		v = append(v, math.Float32frombits(r.Uint32()))
	}
	return v
}

// TestSIMDActivationRounding: the fp16 and bf16 roundings of MatMul equal
// FP32ToFP16/FP32ToBF16 and back bit for bit, NaNs included.
func TestSIMDActivationRounding(t *testing.T) {
	t.Parallel()
	in := roundingInputs(rand.New(rand.NewPCG(11, 12)))
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		for _, c := range []struct {
			name     string
			got, ref func(dst, src []float32)
		}{{"fp16", ks.roundFP16, roundFP16Go}, {"bf16", ks.roundBF16, roundBF16Go}} {
			for _, n := range append(awkwardLens, len(in)) {
				for off := 0; off+n <= len(in); off += max(n, len(in)/7) {
					src := in[off : off+n]
					got, want := make([]float32, n), make([]float32, n)
					c.got(got, src)
					c.ref(want, src)
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s n=%d: %#08x → %#08x, Go gives %#08x", c.name, n,
								math.Float32bits(src[i]), math.Float32bits(got[i]), math.Float32bits(want[i]))
						}
					}
				}
			}
		}
	})
}

// TestSIMDDotF32: attention's q·k equals vecDotF32.
func TestSIMDDotF32(t *testing.T) {
	t.Parallel()
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		r := rand.New(rand.NewPCG(13, 14))
		for _, n := range awkwardLens {
			for trial := range 20 {
				w, x := spread(r, n, 12), spread(r, n, 12)
				if got, want := ks.dotF32(w, x), vecDotF32(w, x); !sameBits(got, want) {
					t.Errorf("n=%d trial %d: %g, Go gives %g", n, trial, got, want)
				}
			}
		}
	})
}

// TestSIMDAttention: attention under each SIMD variant equals the Go
// variant's, for one and several query rows (the 64- and 16-lane sums, and
// from attnTileMinRows rows the tile kernels), head widths with and without
// a leftover past the registers and with and without decode kernels (192),
// contexts that end inside and at the end of a lane round, and on one
// thread and two (the Backend splits by head).
func TestSIMDAttention(t *testing.T) {
	t.Parallel()
	type shape struct {
		hd, total, n int
		half         bool
		block        int // the fp16 cache's block size, when not 16 (-1: one block)
	}
	var shapes []shape
	for _, hd := range []int{4, 8, 20, 64, 72, 128, 192} {
		for _, tn := range [][2]int{{1, 1}, {9, 3}, {64, 1}, {64, 2}, {130, 1}, {130, 5}, {300, 4}, {16, 16}, {40, 33}} {
			shapes = append(shapes, shape{hd, tn[0], tn[1], false, 0}, shape{hd, tn[0], tn[1], true, 0})
		}
	}
	// Runs shorter and longer than the 16 positions decode reads at a
	// time, and one run of the whole cache.
	for _, block := range []int{8, 40, -1} {
		for _, tn := range [][2]int{{130, 1}, {97, 2}} {
			shapes = append(shapes, shape{64, tn[0], tn[1], true, block})
		}
	}
	run := func(s shape, seed uint64, b *Backend) []float32 {
		r := rand.New(rand.NewPCG(seed, 15))
		const heads, kvHeads = 4, 2
		a := kernels.Attn{Pos0: s.total - s.n, Heads: heads, KVHeads: kvHeads, HeadDim: s.hd, Scale: 0.3}
		kv := flatKV{k: spread(r, s.total*kvHeads*s.hd, 2), v: spread(r, s.total*kvHeads*s.hd, 8), width: kvHeads * s.hd}
		if s.half {
			kv = kv.half()
			if s.block != 0 {
				kv.block = max(s.block, 0)
			}
		}
		q := spread(r, s.n*heads*s.hd, 2)
		out := make([]float32, len(q))
		c, blocks := kv.cache()
		b.Attention(out, q, c, blocks, a)
		return out
	}
	g := newBackend(goSet(), 1)
	defer g.Close()
	want := make([][]float32, len(shapes))
	for i, s := range shapes {
		want[i] = run(s, uint64(i), g)
	}
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		b1, b2 := newBackend(ks, 1), newBackend(ks, 2)
		defer b1.Close()
		defer b2.Close()
		for _, b := range []*Backend{b1, b2} {
			for i, s := range shapes {
				checkSame(t, fmt.Sprintf("attention hd=%d total=%d n=%d half=%v block=%d threads=%d", s.hd, s.total, s.n, s.half, s.block, b.Threads()),
					run(s, uint64(i), b), want[i])
			}
		}
	})
}

// TestSIMDRMSNorm: RMSNorm under each SIMD variant equals the Go variant's,
// for row widths with and without a tail past the vectors and batches of
// fewer and more rows than it sums side by side, in place too.
func TestSIMDRMSNorm(t *testing.T) {
	t.Parallel()
	run := func(k *kernelSet, dim, rows int, seed uint64, inPlace bool) []float32 {
		r := rand.New(rand.NewPCG(seed, 17))
		x, w := spread(r, rows*dim, 6), spread(r, dim, 2)
		out := x
		if !inPlace {
			out = make([]float32, len(x))
		}
		k.rmsNorm(out, x, w, dim, 1e-6)
		return out
	}
	type shape struct{ dim, rows int }
	shapes := []shape{{1, 1}, {15, 3}, {16, 4}, {67, 5}, {768, 16}, {2048, 9}}
	want := make([][]float32, len(shapes))
	for i, s := range shapes {
		want[i] = run(goSet(), s.dim, s.rows, uint64(i), false)
	}
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		for i, s := range shapes {
			for _, inPlace := range []bool{false, true} {
				checkSame(t, fmt.Sprintf("rmsnorm dim=%d rows=%d in place=%v", s.dim, s.rows, inPlace), run(ks, s.dim, s.rows, uint64(i), inPlace), want[i])
			}
		}
	})
}

// TestSIMDSoftmaxSwiGLU: Softmax and SwiGLU under each SIMD variant equal the
// Go variant's for awkward lengths and gates large enough that expf
// overflows and underflows.
func TestSIMDSoftmaxSwiGLU(t *testing.T) {
	t.Parallel()
	type result struct{ sm, sw []float32 }
	run := func(k *kernelSet, n int, seed uint64) result {
		r := rand.New(rand.NewPCG(seed, 16))
		sm := spread(r, n, 5)
		if n > 3 {
			sm[n/2] = float32(math.Inf(-1)) // a masked position
		}
		if n%5 == 2 {
			sm[n-1] = float32(math.NaN()) // which the maximum must keep
		}
		k.softmax(sm)
		gate, up := spread(r, n, 7), spread(r, n, 3)
		k.swiGLU(gate, up)
		return result{sm, gate}
	}
	var want []result
	for i, n := range awkwardLens {
		want = append(want, run(goSet(), n, uint64(i)))
	}
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		for i, n := range awkwardLens {
			got := run(ks, n, uint64(i))
			checkSame(t, fmt.Sprintf("Softmax n=%d", n), got.sm, want[i].sm)
			checkSame(t, fmt.Sprintf("SwiGLU n=%d", n), got.sw, want[i].sw)
		}
	})
}

// TestSIMDExpf: the vector expf equals expf for float32 values spread over
// the whole range (every 4099th bit pattern of each sign, so every exponent
// and the overflow, underflow and subnormal results), and ±Inf.
func TestSIMDExpf(t *testing.T) {
	t.Parallel()
	var x []float32
	for b := uint32(0); b < 0x7f800000; b += 4099 {
		x = append(x, math.Float32frombits(b), math.Float32frombits(b|0x80000000))
	}
	x = append(x, float32(math.Inf(1)), float32(math.Inf(-1)))
	x = x[:len(x)&^15]
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		got := append([]float32(nil), x...)
		ks.softmaxExp(got, 0) // x − 0 is x
		for i, v := range x {
			if want := expf(v); !sameBits(got[i], want) {
				t.Fatalf("expf(%g = %#08x) = %g (%#08x), Go gives %g (%#08x)", v, math.Float32bits(v),
					got[i], math.Float32bits(got[i]), want, math.Float32bits(want))
			}
		}
	})
}

// TestSIMDMatMul: MatMul of F32, F16 and BF16 weights under each SIMD
// variant equals the Go variant's for one, five and nine activation rows (the
// ggml_vec_dot and tinyBLAS orders, the latter by four rows at a time and
// then one), and allocates nothing once warmed.
func TestSIMDMatMul(t *testing.T) {
	type shape struct{ rows, cols, n int }
	var shapes []shape
	for _, rows := range []int{4, 7, 8, 12, 20} {
		for _, cols := range []int{16, 48, 64, 65, 127, 256 + 13, 1024} {
			for _, n := range []int{1, 2, 5, 9, 13} {
				shapes = append(shapes, shape{rows, cols, n})
			}
		}
	}
	type input struct {
		w   []byte
		x   []float32
		out []float32
	}
	inputs := map[gguf.Type][]input{}
	r := rand.New(rand.NewPCG(17, 18))
	for _, typ := range floatTypes {
		for _, s := range shapes {
			w := make([]byte, s.rows*typ.RowSize(s.cols))
			for i := range s.rows {
				row, _ := floatRow(typ, spread(r, s.cols, 6))
				copy(w[i*typ.RowSize(s.cols):], row)
			}
			inputs[typ] = append(inputs[typ], input{w, spread(r, s.n*s.cols, 6), make([]float32, s.n*s.rows)})
		}
	}
	want := map[gguf.Type][][]float32{}
	sc := Scratch{k: goSet()}
	for _, typ := range floatTypes {
		for i, s := range shapes {
			in := inputs[typ][i]
			sc.MatMul(in.out, typ, in.w, s.rows, s.cols, in.x, s.n, kernels.OrderLlama)
			want[typ] = append(want[typ], append([]float32(nil), in.out...))
		}
	}
	pool := NewPool(3)
	defer pool.Close()
	pooled := Scratch{Pool: pool}
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		sc.k, pooled.k = ks, ks
		for _, typ := range floatTypes {
			for i, s := range shapes {
				in := inputs[typ][i]
				sc.MatMul(in.out, typ, in.w, s.rows, s.cols, in.x, s.n, kernels.OrderLlama)
				checkSame(t, fmt.Sprintf("%v %d×%d n=%d", typ, s.rows, s.cols, s.n), in.out, want[typ][i])
				if a := testing.AllocsPerRun(5, func() { sc.MatMul(in.out, typ, in.w, s.rows, s.cols, in.x, s.n, kernels.OrderLlama) }); a != 0 {
					t.Errorf("%v %d×%d n=%d: %v allocations per MatMul", typ, s.rows, s.cols, s.n, a)
				}
				// Three threads, splitting the rows in eights, some with
				// nothing to do.
				pooled.MatMul(in.out, typ, in.w, s.rows, s.cols, in.x, s.n, kernels.OrderLlama)
				checkSame(t, fmt.Sprintf("%v %d×%d n=%d, three threads", typ, s.rows, s.cols, s.n), in.out, want[typ][i])
			}
		}
	})
}

// BenchmarkAttention is one thread's attention over a 512-position context,
// 8 heads of 128, for one query row (64 lanes) and for 16 (16 lanes).
func BenchmarkAttention(b *testing.B) {
	const heads, hd, total = 8, 128, 512
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			a := kernels.Attn{Pos0: total - n, Heads: heads, KVHeads: heads, HeadDim: hd, Scale: 0.1}
			k, v := randVec(r, total*heads*hd), randVec(r, total*heads*hd)
			q := randVec(r, n*heads*hd)
			out, scores, lanes := make([]float32, len(q)), make([]float32, total), make([]float32, 64*hd)
			kvs := make([]headKV, heads) // each KV head, read in place
			for h := range kvs {
				kvs[h] = headKV{k: k[h*hd:], v: v[h*hd:], stride: heads * hd}
			}
			for b.Loop() {
				for j := range len(q) / hd {
					best().attendHead(out, q, &kvs[j%heads], a, j, scores, lanes)
				}
			}
		})
	}
}

// BenchmarkSwiGLU is one feed-forward row of 8192.
func BenchmarkSwiGLU(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	gate, up := randVec(r, 8192), randVec(r, 8192)
	g := make([]float32, len(gate))
	for b.Loop() {
		copy(g, gate)
		best().swiGLU(g, up)
	}
}

// TestSIMDHalfRows: the fp16 conversions of KV caches equal FP16ToFP32 for
// every fp16 value and FP32ToFP16 for random, tie, subnormal and special
// floats (NaNs only as NaNs), at awkward lengths.
func TestSIMDHalfRows(t *testing.T) {
	t.Parallel()
	all := make([]uint16, 1<<16)
	for i := range all {
		all[i] = uint16(i)
	}
	r := rand.New(rand.NewPCG(21, 22))
	fs := make([]float32, 5000)
	for i := range fs {
		switch i % 5 {
		case 0:
			fs[i] = math.Float32frombits(r.Uint32())
		case 1: // halfway between two fp16 values
			fs[i] = FP16ToFP32(uint16(r.IntN(0x7c00))) + math.Float32frombits(0x33000000)*float32(1+r.IntN(2))
		default:
			fs[i] = float32(r.NormFloat64()) * float32(math.Pow(2, float64(r.IntN(60)-40)))
		}
	}
	forEachSIMD(t, func(t *testing.T, ks *kernelSet) {
		for _, n := range append(awkwardLens, len(all)) {
			got := make([]float32, n)
			ks.fromHalf(got, all[:n])
			for i := range got {
				if want := FP16ToFP32(all[i]); !sameBits(got[i], want) && !(got[i] != got[i] && want != want) {
					t.Fatalf("fromHalf(%#04x) = %#08x, want %#08x", all[i], math.Float32bits(got[i]), math.Float32bits(want))
				}
			}
		}
		for _, n := range append(awkwardLens, len(fs)) {
			got := make([]uint16, n)
			ks.toHalf(got, fs[:n])
			for i, h := range got {
				want := FP32ToFP16(fs[i])
				nan := func(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }
				if h != want && !(nan(h) && nan(want)) {
					t.Fatalf("toHalf(%#08x) = %#04x, want %#04x", math.Float32bits(fs[i]), h, want)
				}
			}
		}
		// Rows a cache row apart, as a KV head's keys lie in a block.
		for _, c := range [][3]int{{64, 256, 16}, {128, 128, 3}, {16, 40, 7}, {24, 64, 5}, {64, 64, 1}} {
			cols, stride, rows := c[0], c[1], c[2]
			got := make([]float32, rows*cols)
			ks.fromHalfRows(got, all[:(rows-1)*stride+cols], cols, stride)
			for i, v := range got {
				h := all[i/cols*stride+i%cols]
				if want := FP16ToFP32(h); !sameBits(v, want) && !(v != v && want != want) {
					t.Fatalf("fromHalfRows cols=%d stride=%d: value %d of %#04x = %#08x, want %#08x", cols, stride, i, h, math.Float32bits(v), math.Float32bits(want))
				}
			}
		}
	})
}
