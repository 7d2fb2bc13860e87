package cpu

import (
	"fmt"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
)

// orderOf is the order a test's invariant flag names.
func orderOf(invariant bool) kernels.Order {
	if invariant {
		return kernels.OrderBatchInvariant
	}
	return kernels.OrderLlama
}

// TestPackedMatMul checks that products with weights packed at load equal
// those with the weights as stored, bit for bit, for row counts that fill
// tiles or not, any number of activation rows and both float orders, and
// that a packed weight still multiplies correctly with another kernel set.
func TestPackedMatMul(t *testing.T) {
	t.Parallel()
	var s Scratch
	s.Pool = NewPool(2)
	defer s.Pool.Close()
	for _, v := range testSets() {
		for _, shape := range [][3]int{{16, 32, 0}, {40, 96, 0}, {263, 512, 0}, {16, 32, 4}, {40, 96, 4}, {264, 512, 4}, {263, 64, 4}} {
			rows, cols := shape[0], shape[1]
			typ := gguf.Q8_0
			if shape[2] == 4 {
				typ = gguf.Q4_0
			}
			w := make([]byte, rows*typ.RowSize(cols))
			if err := Quantize(typ, randomData("gauss", rows*cols, uint64(rows)), w); err != nil {
				t.Fatal(err)
			}
			p := v.pack(typ, w, rows, cols)
			// Q4_0 is packed where llama.cpp repacks it, for its float order.
			if want := v.variant == VariantAVX512 && v.dot && (typ == gguf.Q8_0 || rows%8 == 0); (p != nil) != want {
				t.Fatalf("%v %v %d×%d: pack gave a packed weight: %v, want %v", v, typ, rows, cols, p != nil, want)
			}
			if p == nil {
				continue
			}
			if p.Bytes() != ((rows+15)/16)*16*typ.RowSize(cols) {
				t.Errorf("%v %v %d×%d: packed into %d bytes, want the stored rows' size padded to a tile", v, typ, rows, cols, p.Bytes())
			}
			for _, c := range []struct {
				n         int
				invariant bool
			}{{0, false}, {1, false}, {2, false}, {3, false}, {4, false}, {5, false}, {7, false}, {16, false}, {21, false},
				{1, true}, {2, true}, {3, true}, {4, true}, {6, true}, {16, true}, {23, true}} {
				n, o := c.n, orderOf(c.invariant)
				s.k = v
				x := randomData("gauss", n*cols, uint64(n+cols))
				want := make([]float32, n*rows)
				s.MatMul(want, typ, w, rows, cols, x, n, o)
				got := make([]float32, n*rows)
				s.MatMulPacked(got, p, x, n, o)
				if j := firstDiff(got, want); j >= 0 {
					t.Errorf("%v %v %d×%d n=%d invariant=%v: packed out[%d] = %g, stored %g", v, typ, rows, cols, n, c.invariant, j, got[j], want[j])
				}
				for _, other := range testSets() {
					if other == v {
						continue
					}
					s.k = other
					s.MatMul(want, typ, w, rows, cols, x, n, o)
					s.MatMulPacked(got, p, x, n, o)
					if j := firstDiff(got, want); j >= 0 {
						t.Errorf("packed for %v, run on %v: %v %d×%d n=%d invariant=%v: out[%d] = %g, stored %g", v, other, typ, rows, cols, n, c.invariant, j, got[j], want[j])
					}
				}
			}
		}
	}
}

// TestMatMulsPacked checks that weights multiplied as one product give what
// each gives alone, bit for bit, tiles of all of them shared by the threads.
func TestMatMulsPacked(t *testing.T) {
	t.Parallel()
	s := Scratch{k: best()}
	s.Pool = NewPool(2)
	defer s.Pool.Close()
	const cols = 256
	var ps []*Packed
	for i, rows := range []int{256, 40, 64} {
		w := make([]byte, rows*gguf.Q8_0.RowSize(cols))
		if err := Quantize(gguf.Q8_0, randomData("gauss", rows*cols, uint64(i)), w); err != nil {
			t.Fatal(err)
		}
		if p := s.k.pack(gguf.Q8_0, w, rows, cols); p != nil {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		t.Skip("no packed kernels on this CPU")
	}
	for _, invariant := range []bool{false, true} {
		o := orderOf(invariant)
		for _, n := range []int{1, 3, 16, 21} {
			x := randomData("gauss", n*cols, uint64(n))
			outs := make([][]float32, len(ps))
			for i, p := range ps {
				outs[i] = make([]float32, n*p.rows)
			}
			s.MatMulsPacked(outs, ps, x, n, o)
			for i, p := range ps {
				want := make([]float32, n*p.rows)
				s.MatMulPacked(want, p, x, n, o)
				if j := firstDiff(outs[i], want); j >= 0 {
					t.Errorf("invariant=%v n=%d weight %d: out[%d] = %g together, %g alone", invariant, n, i, j, outs[i][j], want[j])
				}
			}
		}
	}
}

// BenchmarkPackedDecode times the products of one decode step with weights
// packed at load, as the engine runs them (q, k and v as one product, gate
// and up as one), for the layers of the 125M and 1B shapes of
// docs/performance.md, on one and two threads, and reports the weights read
// per second against the read bandwidth of the same bytes (read-share): the
// kernels' own distance from the box's limit, without attention or norms.
func BenchmarkPackedDecode(b *testing.B) {
	shapes := []struct {
		name                 string
		dim, kv, ffn, layers int
	}{{"125M", 768, 256, 2048, 12}, {"1B", 2048, 512, 8192, 16}}
	for _, sh := range shapes {
		for _, typ := range []gguf.Type{gguf.Q4_0, gguf.Q8_0} {
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%v/%d", sh.name, typ, threads), func(b *testing.B) {
					be := New(threads)
					defer be.Close()
					weight := func(rows, cols int) *models.Weight {
						w := &models.Weight{Type: typ, Rows: rows, Cols: cols, Data: make([]byte, rows*typ.RowSize(cols))}
						for i := range w.Data {
							w.Data[i] = byte(i * 37)
						}
						for i := 0; i < len(w.Data); i += typ.TypeSize() {
							w.Data[i], w.Data[i+1] = 0, 0x3c // scale 1
						}
						if be.Prepare(w) == 0 {
							b.Skipf("%v is not packed on %v", typ, be.Variant())
						}
						return w
					}
					type layer struct {
						qkv, gateUp []*models.Weight
						o, down     *models.Weight
					}
					var ls []layer
					var bufs [][]byte
					var bytes int64
					for range sh.layers {
						l := layer{qkv: []*models.Weight{weight(sh.dim, sh.dim), weight(sh.kv, sh.dim), weight(sh.kv, sh.dim)},
							o: weight(sh.dim, sh.dim), gateUp: []*models.Weight{weight(sh.ffn, sh.dim), weight(sh.ffn, sh.dim)},
							down: weight(sh.dim, sh.ffn)}
						for _, w := range append(append([]*models.Weight{l.o, l.down}, l.qkv...), l.gateUp...) {
							bufs = append(bufs, be.Resident(w))
							bytes += int64(len(w.Data))
						}
						ls = append(ls, l)
					}
					x := randomData("gauss", sh.ffn, 2)
					q, k, v := make([]float32, sh.dim), make([]float32, sh.kv), make([]float32, sh.kv)
					g, u, o := make([]float32, sh.ffn), make([]float32, sh.ffn), make([]float32, sh.dim)
					step := func() {
						for _, l := range ls {
							be.MatMuls([][]float32{q, k, v}, l.qkv, x[:sh.dim], 1, kernels.OrderLlama)
							be.MatMul(o, l.o, x[:sh.dim], 1, kernels.OrderLlama)
							be.MatMuls([][]float32{g, u}, l.gateUp, x[:sh.dim], 1, kernels.OrderLlama)
							be.MatMul(o, l.down, x, 1, kernels.OrderLlama)
						}
					}
					step()
					read := be.ReadBandwidth(bufs, 10)
					b.SetBytes(bytes)
					b.ResetTimer()
					for b.Loop() {
						step()
					}
					b.ReportMetric(float64(bytes)*float64(b.N)/b.Elapsed().Seconds()/read, "read-share")
				})
			}
		}
	}
}
