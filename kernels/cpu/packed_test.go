package cpu

import (
	"testing"

	"github.com/godwit-ai/godwit/models/gguf"
)

// TestPackedMatMul checks that products with weights packed at load equal
// those with the weights as stored, bit for bit, for row counts that fill
// tiles or not, any number of activation rows and both float orders, and
// that a packed weight still multiplies correctly after a change of kernel
// variant.
func TestPackedMatMul(t *testing.T) {
	defer SetVariant(Variants()[0])
	var s Scratch
	s.Pool = NewPool(2)
	defer s.Pool.Close()
	for _, v := range Variants() {
		if err := SetVariant(v); err != nil {
			t.Fatal(err)
		}
		for _, shape := range [][2]int{{16, 32}, {40, 96}, {263, 512}} {
			rows, cols := shape[0], shape[1]
			w := make([]byte, rows*gguf.Q8_0.RowSize(cols))
			if err := Quantize(gguf.Q8_0, randomData("gauss", rows*cols, uint64(rows)), w); err != nil {
				t.Fatal(err)
			}
			p := Pack(gguf.Q8_0, w, rows, cols)
			if want := v == VariantAVX512 && HasVNNI; (p != nil) != want {
				t.Fatalf("%v: Pack gave a packed weight: %v, want %v", v, p != nil, want)
			}
			if p == nil {
				continue
			}
			if p.Bytes() != ((rows+15)/16)*16*gguf.Q8_0.RowSize(cols) {
				t.Errorf("%v %d×%d: packed into %d bytes, want the stored rows' size padded to a tile", v, rows, cols, p.Bytes())
			}
			for _, c := range []struct {
				n         int
				invariant bool
			}{{0, false}, {1, false}, {2, false}, {3, false}, {4, false}, {5, false}, {7, false}, {16, false}, {21, false},
				{1, true}, {2, true}, {3, true}, {4, true}, {6, true}, {16, true}, {23, true}} {
				n := c.n
				s.Invariant = c.invariant
				x := randomData("gauss", n*cols, uint64(n+cols))
				want := make([]float32, n*rows)
				s.MatMul(want, gguf.Q8_0, w, rows, cols, x, n)
				got := make([]float32, n*rows)
				s.MatMulPacked(got, p, x, n)
				if j := firstDiff(got, want); j >= 0 {
					t.Errorf("%v %d×%d n=%d invariant=%v: packed out[%d] = %g, stored %g", v, rows, cols, n, c.invariant, j, got[j], want[j])
				}
				for _, other := range Variants() {
					if other == v {
						continue
					}
					if err := SetVariant(other); err != nil {
						t.Fatal(err)
					}
					s.MatMul(want, gguf.Q8_0, w, rows, cols, x, n)
					s.MatMulPacked(got, p, x, n)
					if j := firstDiff(got, want); j >= 0 {
						t.Errorf("packed for %v, run on %v: %d×%d n=%d invariant=%v: out[%d] = %g, stored %g", v, other, rows, cols, n, c.invariant, j, got[j], want[j])
					}
					if err := SetVariant(v); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

// TestMatMulsPacked checks that weights multiplied as one product give what
// each gives alone, bit for bit, tiles of all of them shared by the threads.
func TestMatMulsPacked(t *testing.T) {
	var s Scratch
	s.Pool = NewPool(2)
	defer s.Pool.Close()
	const cols = 256
	var ps []*Packed
	for i, rows := range []int{256, 40, 64} {
		w := make([]byte, rows*gguf.Q8_0.RowSize(cols))
		if err := Quantize(gguf.Q8_0, randomData("gauss", rows*cols, uint64(i)), w); err != nil {
			t.Fatal(err)
		}
		if p := Pack(gguf.Q8_0, w, rows, cols); p != nil {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		t.Skip("no packed kernels on this CPU")
	}
	for _, invariant := range []bool{false, true} {
		s.Invariant = invariant
		for _, n := range []int{1, 3, 16, 21} {
			x := randomData("gauss", n*cols, uint64(n))
			outs := make([][]float32, len(ps))
			for i, p := range ps {
				outs[i] = make([]float32, n*p.rows)
			}
			s.MatMulsPacked(outs, ps, x, n)
			for i, p := range ps {
				want := make([]float32, n*p.rows)
				s.MatMulPacked(want, p, x, n)
				if j := firstDiff(outs[i], want); j >= 0 {
					t.Errorf("invariant=%v n=%d weight %d: out[%d] = %g together, %g alone", invariant, n, i, j, outs[i][j], want[j])
				}
			}
		}
	}
}
