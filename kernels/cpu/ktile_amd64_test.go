package cpu

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// Tests of the K-quant tile kernels (ktile_amd64.s): MatMul through them
// must equal the plain Go MatMul bit for bit.

// ktMatMul runs MatMul with the kernel set k, with threads threads.
func ktMatMul(k *kernelSet, typ gguf.Type, w []byte, rows, cols int, x []float32, n, threads int) []float32 {
	s := Scratch{k: k}
	if threads > 1 {
		s.Pool = NewPool(threads)
		defer s.Pool.Close()
	}
	out := make([]float32, n*rows)
	s.MatMul(out, typ, w, rows, cols, x, n, kernels.OrderLlama)
	return out
}

// TestKTileMatMulMatchesGo: awkward shapes (rows not a multiple of 16,
// some not of 8, so that Q4_K takes both orders; activation rows 16..23
// and more; several widths) give the Go results under every variant, on
// one thread and two.
func TestKTileMatMulMatchesGo(t *testing.T) {
	t.Parallel()
	type shape struct{ rows, cols, n int }
	var shapes []shape
	for _, rows := range []int{8, 12, 16, 24, 37, 40} {
		for _, cols := range []int{256, 768} {
			for _, n := range []int{16, 17, 18, 19, 20, 21, 22, 23} {
				shapes = append(shapes, shape{rows, cols, n})
			}
		}
	}
	shapes = append(shapes, shape{64, 1280, 36}, shape{33, 512, 16}, shape{48, 256, 0}, shape{16, 256, 4})
	r := rand.New(rand.NewPCG(3, 9))
	for _, typ := range []gguf.Type{gguf.Q4_K, gguf.Q5_K, gguf.Q6_K} {
		for _, sh := range shapes {
			nb := sh.cols / qkK
			w := kqWeights(r, typ, sh.rows*nb)
			x := make([]float32, sh.n*sh.cols)
			for i := range x {
				x[i] = float32(r.NormFloat64()) * float32(math.Ldexp(1, r.IntN(8)-4))
			}
			want := ktMatMul(goSet(), typ, w, sh.rows, sh.cols, x, sh.n, 1)
			kqEachVariant(t, func(t *testing.T, ks *kernelSet) {
				for _, threads := range []int{1, 2} {
					got := ktMatMul(ks, typ, w, sh.rows, sh.cols, x, sh.n, threads)
					bad := 0
					for i := range got {
						if !kqSame(got[i], want[i]) {
							if bad < 3 {
								t.Errorf("%v %d×%d n=%d threads=%d: out[%d] (row %d, weight row %d) = %g (%#08x), Go %g (%#08x)",
									typ, sh.rows, sh.cols, sh.n, threads, i, i/sh.rows, i%sh.rows,
									got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
							}
							bad++
						}
					}
					if bad > 3 {
						t.Errorf("… %d mismatches in all", bad)
					}
				}
			})
		}
	}
}

// TestKTileRegistered: under AVX-512 with VNNI the tilers are in place,
// else not.
func TestKTileRegistered(t *testing.T) {
	t.Parallel()
	kqEachVariant(t, func(t *testing.T, ks *kernelSet) {
		on := ks.variant == VariantAVX512 && ks.dot
		if got := ks.quantTile[gguf.Q4_K][1] != nil; got != on {
			t.Errorf("Q4_K repacked tiler registered: %v, want %v", got, on)
		}
		for _, typ := range []gguf.Type{gguf.Q4_K, gguf.Q5_K, gguf.Q6_K} {
			if got := ks.quantTile[typ][0] != nil; got != on {
				t.Errorf("%v tiler registered: %v, want %v", typ, got, on)
			}
		}
	})
}

// BenchmarkKTile times MatMul on prompt-sized batches of K-quant weights
// with the tilers and without (the four-row kernels), under AVX-512 VNNI.
func BenchmarkKTile(b *testing.B) {
	k, err := kernelsOf(VariantAVX512)
	if err != nil || !k.dot {
		b.Skip("no AVX-512 VNNI")
	}
	const rows, cols, n = 512, 1024, 128
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, n*cols)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	out := make([]float32, n*rows)
	for _, typ := range []gguf.Type{gguf.Q4_K, gguf.Q6_K} {
		w := kqWeights(r, typ, rows*cols/qkK)
		// The same set without the tilers of typ.
		untiled := *k
		untiled.quantTile = maps.Clone(k.quantTile)
		delete(untiled.quantTile, typ)
		for _, tiled := range []bool{true, false} {
			b.Run(fmt.Sprintf("%v/tiles=%v", typ, tiled), func(b *testing.B) {
				s := Scratch{k: k}
				if !tiled {
					s.k = &untiled
				}
				for b.Loop() {
					s.MatMul(out, typ, w, rows, cols, x, n, kernels.OrderLlama)
				}
				b.ReportMetric(float64(2*rows*cols*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOP/s")
			})
		}
	}
}

// TestKTilePackFull: the assembly packers of whole tiles write what the
// Go packers do.
func TestKTilePackFull(t *testing.T) {
	t.Parallel()
	if !cpuDot {
		t.Skip("no AVX-512 VNNI")
	}
	r := rand.New(rand.NewPCG(1, 1))
	for _, k := range []*ktTiler{ktQ4KGemm, ktQ6K} {
		size := k.t.TypeSize()
		for _, nb := range []int{1, 3} {
			for _, pad := range []int{0, 32} {
				rowBytes := nb*size + pad
				w := make([]byte, 16*rowBytes)
				for row := range 16 {
					copy(w[row*rowBytes:], kqWeights(r, k.t, nb))
				}
				want := make([]byte, nb*k.wBytes)
				got := make([]byte, nb*k.wBytes)
				k.packW(nil, want, w, rowBytes, 16, nb)
				k.packFull(&got[0], &w[0], rowBytes, nb)
				for i := range want {
					if want[i] != got[i] {
						t.Fatalf("%v nb=%d rowBytes=%d: byte %d (block %d, offset %d) = %#x, Go packer %#x",
							k.t, nb, rowBytes, i, i/k.wBytes, i%k.wBytes, got[i], want[i])
					}
				}
			}
		}
	}
}

// BenchmarkKTileKernels times the tile kernels alone, on packed data that
// stays in the L1 cache: 16 weight rows times four activation rows of
// four super-blocks per call.
func BenchmarkKTileKernels(b *testing.B) {
	if !cpuDot {
		b.Skip("no AVX-512 VNNI")
	}
	const nb = 4
	for _, k := range []*ktTiler{ktQ4KGemm, ktQ4KVec, ktQ5K, ktQ6K} {
		name := k.t.String()
		if k == ktQ4KGemm {
			name += "-gemm"
		}
		b.Run(name, func(b *testing.B) {
			w := make([]byte, nb*k.wBytes)
			a := make([]byte, nb*k.aBytes)
			var out [64]float32
			for b.Loop() {
				k.kernel(&w[0], &a[0], nb, &out[0], 16, 0xffff)
			}
			b.ReportMetric(float64(16*4*nb*qkK)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
		})
	}
}
