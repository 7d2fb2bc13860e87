package cpu

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// Tests of the K-quant SIMD kernels (kquant_amd64.s): under every variant
// they must give the plain Go kernels' results bit for bit. On a CPU or
// architecture without them the variant loop only runs the Go kernels,
// which the other tests check against ggml.

var kqTypes = []gguf.Type{gguf.Q4_K, gguf.Q5_K, gguf.Q6_K}

// kqEachVariant runs f, as a subtest, with every kernel set this CPU can run,
// AVX-512 with VNNI and without among them where it has VNNI, so that both
// AVX-512 kernel sets run.
func kqEachVariant[T interface {
	testing.TB
	Run(string, func(T)) bool
}](tb T, f func(T, *kernelSet)) {
	for _, k := range testSets() {
		tb.Run(k.String(), func(tb T) { f(tb, k) })
	}
}

// kqHalf returns a random finite fp16 value, often an extreme one.
func kqHalf(r *rand.Rand) uint16 {
	switch r.IntN(8) {
	case 0:
		return []uint16{0x7bff, 0xfbff, 0x0001, 0x8001, 0x0000, 0x8000, 0x3c00, 0x0400}[r.IntN(8)]
	case 1, 2:
		return uint16(r.Uint32()) &^ 0x4000 // exponent below 31: finite
	}
	// Typical magnitudes: 2^-14 .. 2^-2.
	return uint16(r.IntN(2))<<15 | uint16(1+r.IntN(13))<<10 | uint16(r.IntN(1024))
}

// kqWeights returns nb random super-blocks of type typ, each of them
// random bytes, or (one in four each) all levels, scales and mins at their
// largest, or all zero.
func kqWeights(r *rand.Rand, typ gguf.Type, nb int) []byte {
	ts := typ.TypeSize()
	w := make([]byte, nb*ts)
	for b := range nb {
		blk := w[b*ts : (b+1)*ts]
		switch r.IntN(4) {
		case 0, 1:
			for i := range blk {
				blk[i] = byte(r.Uint32())
			}
		case 2:
			for i := range blk {
				blk[i] = 0xff
			}
			if typ == gguf.Q6_K && r.IntN(2) == 0 {
				for i := 192; i < 208; i++ {
					blk[i] = 0x80 // scale −128
				}
			}
		}
		// Random bytes would make some fp16 d or dmin infinite or NaN,
		// whose NaN payloads need not agree; keep them finite.
		if typ == gguf.Q6_K {
			putHalf(blk[208:], kqHalf(r))
		} else {
			putHalf(blk[0:], kqHalf(r))
			putHalf(blk[2:], kqHalf(r))
		}
	}
	return w
}

func putHalf(b []byte, h uint16) { b[0], b[1] = byte(h), byte(h>>8) }

// kqAct returns a random Q8_K activation row of nb blocks. Its levels cover
// all of int8 (−128 too, which Q8_K never stores but the kernels take), and
// its bsums are usually the levels' sums, else any int16.
func kqAct(r *rand.Rand, nb int) act {
	a := act{q: make([]int8, nb*qkK), d: make([]float32, nb), bsums: make([]int16, nb*16)}
	for b := range nb {
		q := a.q[b*qkK : (b+1)*qkK]
		switch r.IntN(6) {
		case 0: // all zero, as quantizeActQ8_K leaves a zero block
			continue
		case 1:
			for i := range q {
				q[i] = []int8{-128, -127, 127}[r.IntN(3)]
			}
		default:
			for i := range q {
				q[i] = int8(r.Uint32())
			}
		}
		a.d[b] = float32(math.Ldexp(r.Float64()+0.5, -r.IntN(24))) * float32(1-2*r.IntN(2))
		for j := range 16 {
			var s int16
			for _, v := range q[16*j : 16*j+16] {
				s += int16(v)
			}
			a.bsums[16*b+j] = s
		}
		if r.IntN(4) == 0 {
			for j := range 16 {
				a.bsums[16*b+j] = int16(r.Uint32())
			}
		}
	}
	return a
}

// kqWant is the plain Go kernel's result.
func kqWant(typ gguf.Type, w []byte, a act, p path) float32 {
	var wr wrow
	wr.decode(typ, w, len(a.d)*qkK)
	switch typ {
	case gguf.Q4_K:
		return dotQ4_K(&wr, a, p)
	case gguf.Q5_K:
		return dotQ5_K(&wr, a, p)
	}
	return dotQ6_K(&wr, a, p)
}

// kqPaths are the float orders a type's products take.
func kqPaths(typ gguf.Type) []path {
	if typ == gguf.Q4_K {
		return []path{pathVecDot, pathGemv, pathGemm}
	}
	return []path{pathVecDot}
}

func kqSame(got, want float32) bool { return math.Float32bits(got) == math.Float32bits(want) }

// TestKQuantKernelsMatchGo: the one-row and four-row kernels of every
// variant equal the Go kernels bit for bit on random and extreme rows of 1,
// 2, 3 and 5 super-blocks, along every path.
func TestKQuantKernelsMatchGo(t *testing.T) {
	t.Parallel()
	kqEachVariant(t, func(t *testing.T, ks *kernelSet) {
		for _, typ := range kqTypes {
			k, k4 := ks.quant[typ], ks.quant4[typ]
			if k == nil {
				continue
			}
			r := rand.New(rand.NewPCG(uint64(typ), 7))
			fails := 0
			for _, nb := range []int{1, 2, 3, 5} {
				for trial := range 60 {
					w := kqWeights(r, typ, nb)
					var a [4]act
					for i := range a {
						a[i] = kqAct(r, nb)
					}
					for _, p := range kqPaths(typ) {
						var want [4]float32
						for i := range a {
							want[i] = kqWant(typ, w, a[i], p)
							if got := k(w, a[i], p); !kqSame(got, want[i]) && fails < 5 {
								fails++
								t.Errorf("%v nb=%d path %d trial %d: one-row kernel %g (%#08x), Go %g (%#08x)",
									typ, nb, p, trial, got, math.Float32bits(got), want[i], math.Float32bits(want[i]))
							}
						}
						if k4 == nil {
							continue
						}
						got := k4(w, &a, p)
						for i := range got {
							if !kqSame(got[i], want[i]) && fails < 5 {
								fails++
								t.Errorf("%v nb=%d path %d trial %d: four-row kernel row %d %g (%#08x), Go %g (%#08x)",
									typ, nb, p, trial, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
							}
						}
					}
				}
			}
		}
	})
}

// TestKQuantRowsMatchGo: the rows kernels (consecutive weight rows with one
// activation row) equal the Go kernels bit for bit on 1, 7, 8, 9 and 17
// random and extreme rows of 1, 2, 3 and 5 super-blocks, along every path
// (Q4_K's gemv takes rows in eights, the rest one by one), with the rows
// packed or a gap apart, and write no result past the last row.
func TestKQuantRowsMatchGo(t *testing.T) {
	t.Parallel()
	kqEachVariant(t, func(t *testing.T, ks *kernelSet) {
		for _, typ := range kqTypes {
			kr := ks.quantRows[typ]
			if kr == nil {
				continue
			}
			r := rand.New(rand.NewPCG(uint64(typ), 9))
			fails := 0
			for _, nb := range []int{1, 2, 3, 5} {
				for _, rows := range []int{1, 7, 8, 9, 17} {
					for trial := range 6 {
						size := nb * typ.TypeSize()
						rowBytes := size
						if trial%2 == 1 {
							rowBytes += 40
						}
						blocks := kqWeights(r, typ, rows*nb)
						w := make([]byte, (rows-1)*rowBytes+size)
						for i := range w {
							w[i] = 0xa5 // the gaps
						}
						for i := range rows {
							copy(w[i*rowBytes:], blocks[i*size:(i+1)*size])
						}
						a := kqAct(r, nb)
						for _, p := range kqPaths(typ) {
							out := make([]float32, rows+1)
							const sentinel = 0x7fc0beef
							out[rows] = math.Float32frombits(sentinel)
							kr(w, rowBytes, a, p, out[:rows])
							if math.Float32bits(out[rows]) != sentinel {
								t.Errorf("%v nb=%d rows=%d path %d: wrote out[%d]", typ, nb, rows, p, rows)
							}
							for i := range rows {
								want := kqWant(typ, w[i*rowBytes:i*rowBytes+size], a, p)
								if !kqSame(out[i], want) && fails < 5 {
									fails++
									t.Errorf("%v nb=%d rows=%d rowBytes=%d path %d trial %d: row %d %g (%#08x), Go %g (%#08x)",
										typ, nb, rows, rowBytes, p, trial, i, out[i], math.Float32bits(out[i]), want, math.Float32bits(want))
								}
							}
						}
					}
				}
			}
		}
	})
}

// kqMatMulRef returns MatMul's result with the plain Go kernels.
func kqMatMulRef(typ gguf.Type, w []byte, rows, cols int, x []float32, n int) []float32 {
	out := make([]float32, n*rows)
	s := Scratch{k: goSet()}
	s.MatMul(out, typ, w, rows, cols, x, n, kernels.OrderLlama)
	return out
}

// TestKQuantMatMulMatchesGo: MatMul over K-quant weights gives the Go
// variant's bits under every variant, on one thread and split over three,
// including batches whose n mod 4 rows take Q4_K's gemv after the gemm
// groups, n = 1..5 with weight rows in eights and not (which the rows
// kernels take), weights with rows not a multiple of 8 (not repacked:
// ggml_vec_dot's order), and activations with zero blocks and outliers.
func TestKQuantMatMulMatchesGo(t *testing.T) {
	t.Parallel()
	type tcase struct {
		typ           gguf.Type
		rows, cols, n int
		w             []byte
		x, want       []float32
		name          string
	}
	var cases []tcase
	for _, typ := range kqTypes {
		for _, shape := range [][3]int{{8, 256, 1}, {16, 512, 2}, {8, 768, 3}, {16, 256, 4}, {8, 1280, 5}, {24, 512, 7}, {5, 512, 6}, {8, 256, 9}, {16, 512, 16},
			{40, 1024, 1}, {17, 768, 1}, {9, 512, 2}, {32, 1280, 2}, {56, 512, 3}, {23, 256, 3}, {48, 768, 4}, {11, 512, 4},
			{64, 256, 5}, {13, 768, 5}} {
			rows, cols, n := shape[0], shape[1], shape[2]
			seed := uint64(rows*cols + n)
			w := make([]byte, rows*typ.RowSize(cols))
			if err := Quantize(typ, randomData("gauss", rows*cols, seed), w); err != nil {
				t.Fatal(err)
			}
			x := randomData("gauss", n*cols, seed+1)
			if n > 1 {
				clear(x[cols : cols+256]) // a zero block
			}
			x[len(x)-1] = 1e4 // an outlier
			cases = append(cases, tcase{typ, rows, cols, n, w, x, kqMatMulRef(typ, w, rows, cols, x, n),
				fmt.Sprintf("%v %d×%d n=%d", typ, rows, cols, n)})
		}
	}
	pool := NewPool(3)
	defer pool.Close()
	kqEachVariant(t, func(t *testing.T, ks *kernelSet) {
		for _, threads := range []*Pool{nil, pool} {
			s := Scratch{Pool: threads, k: ks}
			for _, c := range cases {
				out := make([]float32, c.n*c.rows)
				s.MatMul(out, c.typ, c.w, c.rows, c.cols, c.x, c.n, kernels.OrderLlama)
				for i := range out {
					if !kqSame(out[i], c.want[i]) {
						t.Errorf("%s, pool %v: out[%d] = %g (%#08x), Go variant %g (%#08x)",
							c.name, threads != nil, i, out[i], math.Float32bits(out[i]), c.want[i], math.Float32bits(c.want[i]))
						break
					}
				}
			}
		}
	})
}

// kqActRows returns activation rows (multiples of 256 values) that probe
// quantizeActQ8_K: ordinary data, ties of the largest magnitude with either
// sign first, values on rounding boundaries, zeros (±0), NaN and infinities,
// subnormals and values small enough that −127/max overflows.
func kqActRows() map[string][]float32 {
	rows := map[string][]float32{
		"gauss":   randomData("gauss", 5*256, 11),
		"uniform": randomData("uniform", 3*256, 12),
		"skewed":  randomData("skewed", 2*256, 13),
		"zeros":   make([]float32, 256),
	}
	negz := make([]float32, 256)
	for i := range negz {
		negz[i] = float32(math.Copysign(0, -1))
	}
	rows["-0"] = negz
	for _, m := range []float32{127, -127} {
		x := make([]float32, 512)
		x[200], x[7] = -m, m // the first of the tie (index 7) wins
		for i := 10; i < 100; i++ {
			x[i] = float32(i-55) + 0.5 // k + 0.5 with multiplier 1: ties to even
		}
		x[255+256] = m
		x[256], x[260] = -m, m // a tie within eight values
		rows[fmt.Sprintf("ties %v", m)] = x
	}
	special := randomData("gauss", 4*256, 14)
	special[3] = float32(math.NaN())
	special[256+9] = float32(math.Inf(1))
	special[256+10] = float32(math.Inf(-1))
	for i := 512; i < 768; i++ {
		special[i] = float32(math.NaN())
	}
	special[800] = float32(math.Inf(-1))
	rows["special"] = special
	// NaNs with payloads, whose levels come from the payload bits in
	// quantizeActQ8_K (nearestInt reads the mantissa), in every position.
	payload := randomData("gauss", 2*256, 17)
	for i := range payload {
		if i%3 == 0 {
			payload[i] = math.Float32frombits(uint32(i%2)<<31 | 0x7f800001 | uint32(i*7919)&0x7fffff)
		}
	}
	rows["NaN payloads"] = payload
	tiny := make([]float32, 3*256)
	for i := range tiny {
		tiny[i] = math.Float32frombits(uint32(i%23+1)) * float32(1-2*(i%2)) // subnormals
	}
	for i := 256; i < 512; i++ {
		tiny[i] = float32(i-300) * 1e-38 // −127/max overflows to ±Inf
	}
	for i := 512; i < 768; i++ {
		tiny[i] = float32(i-600) * 1e30 // large but finite
	}
	rows["tiny"] = tiny
	r := rand.New(rand.NewPCG(15, 16))
	bits := make([]float32, 8*256)
	for i := range bits {
		bits[i] = math.Float32frombits(r.Uint32()) // any bit pattern
	}
	rows["bits"] = bits
	return rows
}

// TestKQuantActQ8KMatchesGo: the Q8_K quantizer MatMul uses equals
// quantizeActQ8_K bit for bit (d, levels and bsums) under every variant.
func TestKQuantActQ8KMatchesGo(t *testing.T) {
	t.Parallel()
	kqEachVariant(t, func(t *testing.T, ks *kernelSet) {
		for name, x := range kqActRows() {
			nb := len(x) / qkK
			q, d, bs := make([]int8, len(x)), make([]float32, nb), make([]int16, 16*nb)
			wq, wd, wbs := make([]int8, len(x)), make([]float32, nb), make([]int16, 16*nb)
			for i := range q { // stale contents must be overwritten
				q[i] = 99
			}
			for i := range bs {
				bs[i] = 99
			}
			ks.actQ8_K(x, q, d, bs)
			quantizeActQ8_K(x, wq, wd, wbs)
			for b := range nb {
				if math.Float32bits(d[b]) != math.Float32bits(wd[b]) {
					t.Errorf("%s block %d: d = %g, Go %g", name, b, d[b], wd[b])
				}
			}
			for i := range q {
				if q[i] != wq[i] {
					t.Errorf("%s: q[%d] = %d, Go %d (x = %g)", name, i, q[i], wq[i], x[i])
					break
				}
			}
			for i := range bs {
				if bs[i] != wbs[i] {
					t.Errorf("%s: bsums[%d] = %d, Go %d", name, i, bs[i], wbs[i])
					break
				}
			}
		}
	})
}

// TestKQuantMatMulAllocs: with a warmed Scratch, MatMul over K-quant
// weights allocates nothing under any variant (the four-row wrappers keep
// their pointer arrays on the stack).
func TestKQuantMatMulAllocs(t *testing.T) {
	kqEachVariant(t, func(t *testing.T, ks *kernelSet) {
		for _, typ := range kqTypes {
			for _, n := range []int{1, 2, 3, 5, 6} {
				const rows, cols = 8, 512
				w := make([]byte, rows*typ.RowSize(cols))
				if err := Quantize(typ, randomData("gauss", rows*cols, 5), w); err != nil {
					t.Fatal(err)
				}
				x, out := randomData("gauss", n*cols, 6), make([]float32, n*rows)
				s := Scratch{k: ks}
				s.MatMul(out, typ, w, rows, cols, x, n, kernels.OrderLlama)
				if a := testing.AllocsPerRun(20, func() { s.MatMul(out, typ, w, rows, cols, x, n, kernels.OrderLlama) }); a != 0 {
					t.Errorf("%v n=%d: %v allocations per MatMul", typ, n, a)
				}
			}
		}
	})
}

// TestKQuantAVX2Registers: the AVX2 kernels must stay VEX-encoded to run on
// CPUs without AVX-512, so they may not name X16–X31 (or ZMM or mask
// registers), which the register allocator could otherwise hand out.
func TestKQuantAVX2Registers(t *testing.T) {
	t.Parallel()
	f, err := os.Open("kquant_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	evex := regexp.MustCompile(`\b([XY](1[6-9]|2[0-9]|3[01])|Z[0-9]+|K[1-7])\b`)
	fn, seen := "", 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "TEXT ") {
			fn = line
			if strings.Contains(fn, "AVX2") {
				seen++
			}
			continue
		}
		if strings.Contains(fn, "AVX2") && evex.MatchString(line) {
			t.Errorf("%s: %s", strings.Fields(fn)[1], strings.TrimSpace(line))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if seen == 0 {
		t.Error("no AVX2 kernels found")
	}
}

// BenchmarkKQuantRow times the K-quant kernels alone, per super-block of a
// 16-block (4096-column) row: one activation row (decode) and four (prompt
// batches), under every variant.
func BenchmarkKQuantRow(b *testing.B) {
	const nb = 16
	kqEachVariant(b, func(b *testing.B, ks *kernelSet) {
		for _, typ := range kqTypes {
			r := rand.New(rand.NewPCG(1, 2))
			w := kqWeights(r, typ, nb)
			var a [4]act
			for i := range a {
				a[i] = kqAct(r, nb)
			}
			for _, p := range kqPaths(typ) {
				k, k4 := ks.quant[typ], ks.quant4[typ]
				if k == nil {
					k = func(w []byte, a act, p path) float32 { return kqWant(typ, w, a, p) }
				}
				b.Run(fmt.Sprintf("%v/path%d/rows=1", typ, p), func(b *testing.B) {
					for b.Loop() {
						k(w, a[0], p)
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nb), "ns/block")
				})
				if k4 == nil || p == pathGemv {
					continue
				}
				b.Run(fmt.Sprintf("%v/path%d/rows=4", typ, p), func(b *testing.B) {
					for b.Loop() {
						k4(w, &a, p)
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nb*4), "ns/block")
				})
			}
		}
	})
}

// BenchmarkKQuantRows times a decode step's kernels alone, per super-block:
// 64 weight rows of 4 super-blocks (1024 columns) with one activation row,
// one kernel call per weight row (kernelSet.quant) against one call for all
// (kernelSet.quantRows), under every variant. The weights stay in cache: this
// measures the arithmetic, not the memory traffic.
func BenchmarkKQuantRows(b *testing.B) {
	const rows, nb = 64, 4
	kqEachVariant(b, func(b *testing.B, ks *kernelSet) {
		if len(ks.quantRows) == 0 {
			b.Skip("no rows kernels in this variant")
		}
		for _, typ := range kqTypes {
			k, kr := ks.quant[typ], ks.quantRows[typ]
			if kr == nil {
				continue
			}
			r := rand.New(rand.NewPCG(1, 2))
			w, a, rowBytes := kqWeights(r, typ, rows*nb), kqAct(r, nb), nb*typ.TypeSize()
			out := make([]float32, rows)
			for _, p := range kqPaths(typ)[:min(2, len(kqPaths(typ)))] {
				b.Run(fmt.Sprintf("%v/path%d/one", typ, p), func(b *testing.B) {
					for b.Loop() {
						for i := range out {
							out[i] = k(w[i*rowBytes:(i+1)*rowBytes], a, p)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows*nb), "ns/block")
				})
				b.Run(fmt.Sprintf("%v/path%d/rows", typ, p), func(b *testing.B) {
					for b.Loop() {
						kr(w, rowBytes, a, p, out)
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows*nb), "ns/block")
				})
			}
		}
	})
}

// BenchmarkKQuantActQ8K times the Q8_K quantizer MatMul uses on a
// 4096-value activation row.
func BenchmarkKQuantActQ8K(b *testing.B) {
	x := randomData("gauss", 4096, 3)
	q, d, bs := make([]int8, len(x)), make([]float32, len(x)/qkK), make([]int16, len(x)/16)
	for _, v := range Variants() {
		k := kernelsFor(v, cpuDot)
		b.Run(string(v), func(b *testing.B) {
			b.SetBytes(4 * int64(len(x)))
			for b.Loop() {
				k.actQ8_K(x, q, d, bs)
			}
		})
	}
}
