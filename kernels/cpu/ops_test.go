package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models"
)

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func close32(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > tol*(1+math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %g, want %g", what, i, got[i], want[i])
		}
	}
}

func TestRMSNorm(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	const dim = 67
	x, w := randVec(r, 3*dim), randVec(r, dim)
	out := make([]float32, len(x))
	best().rmsNorm(out, x, w, dim, 1e-5)
	want := make([]float64, len(x))
	for row := 0; row < 3; row++ {
		var ss float64
		for _, v := range x[row*dim : (row+1)*dim] {
			ss += float64(v) * float64(v)
		}
		s := 1 / math.Sqrt(ss/dim+1e-5)
		for i := 0; i < dim; i++ {
			want[row*dim+i] = float64(x[row*dim+i]) * s * float64(w[i])
		}
	}
	close32(t, "rmsnorm", out, want, 1e-6)
	best().rmsNorm(x, x, w, dim, 1e-5) // in place
	close32(t, "rmsnorm in place", x, want, 1e-6)
}

func TestRoPE(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	const heads, headDim, dims = 3, 16, 12
	ff := []float32{1, 1, 2, 4, 8, 8}
	for _, neox := range []bool{false, true} {
		for _, factors := range [][]float32{nil, ff} {
			rope := &models.Rope{Dims: dims, Base: 10000, FreqScale: 0.5, FreqFactors: factors, Neox: neox}
			pos := []int32{0, 5, 37}
			x := randVec(r, len(pos)*heads*headDim)
			want := make([]float64, len(x))
			for i := range x {
				want[i] = float64(x[i])
			}
			for i, p := range pos {
				for h := 0; h < heads; h++ {
					base := (i*heads + h) * headDim
					for k := 0; k < dims/2; k++ {
						theta := float64(p) * math.Pow(10000, -2*float64(k)/dims) * 0.5
						if factors != nil {
							theta /= float64(factors[k])
						}
						a, b := base+2*k, base+2*k+1
						if neox {
							a, b = base+k, base+k+dims/2
						}
						x0, x1 := float64(x[a]), float64(x[b])
						want[a] = x0*math.Cos(theta) - x1*math.Sin(theta)
						want[b] = x0*math.Sin(theta) + x1*math.Cos(theta)
					}
				}
			}
			RoPE(x, pos, heads, headDim, rope)
			close32(t, "rope", x, want, 1e-4)
		}
	}
}

// TestRoPETable checks the backend's RoPE, which rotates from a table of
// the positions it has seen, against the plain RoPE bit for bit, for every
// kernel set, both pair layouts, dims that the assembly takes or not, and
// positions out of order that make the table grow.
func TestRoPETable(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	for _, v := range testSets() {
		b := newBackend(v, 2)
		defer b.Close()
		for _, c := range []struct{ heads, headDim, dims int }{{4, 64, 64}, {2, 128, 64}, {3, 16, 12}, {2, 64, 32}} {
			for _, neox := range []bool{false, true} {
				for _, factors := range [][]float32{nil, randVec(r, c.dims/2)} {
					rope := &models.Rope{Dims: c.dims, Base: 500000, FreqScale: 0.25, FreqFactors: factors, Neox: neox}
					// Positions seen before come again after the table grew.
					for _, pos := range [][]int32{{3}, {0, 1, 2}, {700, 5, 64, 63}, {4000}, {3, 2}, {4001, 0, 699}} {
						x := randVec(r, len(pos)*c.heads*c.headDim)
						want := append([]float32(nil), x...)
						RoPE(want, pos, c.heads, c.headDim, rope)
						b.RoPE(x, pos, c.heads, c.headDim, rope)
						if j := firstDiff(x, want); j >= 0 {
							t.Errorf("%v %+v neox=%v factors=%v pos=%v: value %d = %g, want %g", v, c, neox, factors != nil, pos, j, x[j], want[j])
						}
					}
				}
			}
		}
	}
}

// flatKV is one sequence's keys and values in one layer, rows of width
// values in position order, which cache lays out as a kernels.KVCache: f32
// or fp16, in one block or in blocks of block positions.
type flatKV struct {
	k, v  []float32
	width int
	fp16  bool
	block int // positions per block (0: one block of all)
}

// half returns f stored in fp16, in blocks of 16 positions as a paged cache
// gives them.
func (f flatKV) half() flatKV {
	f.fp16, f.block = true, 16
	return f
}

// cache returns f's rows as a one-layer cache and f's block table in it.
func (f flatKV) cache() (*kernels.KVCache, []int32) {
	c, tables := testCache(f.fp16, f.block, f.width, f)
	return c, tables[0]
}

// testCache lays sequences' rows out as one layer of a cache of
// width-wide rows, f32 or fp16, in blocks of block positions (0: one block
// per sequence, as long as the longest), and returns it with each
// sequence's block table. The blocks are stored in the reverse of the
// order they are taken in, so that reading the rows needs the tables.
func testCache(fp16 bool, block, width int, seqs ...flatKV) (*kernels.KVCache, [][]int32) {
	if block == 0 {
		for _, s := range seqs {
			block = max(block, len(s.k)/width)
		}
	}
	blocks := 0
	for _, s := range seqs {
		blocks += (len(s.k)/width + block - 1) / block
	}
	c := &kernels.KVCache{Type: kernels.KVF32, BlockSize: block, Width: width}
	k, v := make([]float32, blocks*block*width), make([]float32, blocks*block*width)
	var tables [][]int32
	next := blocks
	for _, s := range seqs {
		var table []int32
		for p := 0; p < len(s.k)/width; p += block {
			next--
			table = append(table, int32(next))
			n := min(block, len(s.k)/width-p)
			copy(k[next*block*width:], s.k[p*width:(p+n)*width])
			copy(v[next*block*width:], s.v[p*width:(p+n)*width])
		}
		tables = append(tables, table)
	}
	if fp16 {
		c.Type = kernels.KVF16
		c.K16, c.V16 = [][]uint16{make([]uint16, len(k))}, [][]uint16{make([]uint16, len(v))}
		toHalfGo(c.K16[0], k)
		toHalfGo(c.V16[0], v)
	} else {
		c.K32, c.V32 = [][]float32{k}, [][]float32{v}
	}
	return c, tables
}

// attention is attendHead for every query row and head of q, over the one
// sequence at blocks in kv, with lane sums of its own.
func (k *kernelSet) attention(out, q []float32, kv *kernels.KVCache, blocks []int32, a kernels.Attn, scores []float32) {
	lanes := make([]float32, 64*a.HeadDim)
	n, group := len(q)/(a.Heads*a.HeadDim), a.Heads/a.KVHeads
	var h headKV
	for kvh := range a.KVHeads {
		h.view(k, seqKV{kv, a.Layer, blocks}, a, kvh, windowStart(a.Pos0, a), a.Pos0+n)
		for hh := kvh * group; hh < (kvh+1)*group; hh++ {
			for i := range n { // one job per query row and head
				k.attendHead(out, q, &h, a, i*a.Heads+hh, scores, lanes)
			}
		}
	}
}

// TestAttention checks attention against float64 arithmetic, plain and
// with Gemma 2's soft cap and a sliding window of 3 positions.
func TestAttention(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	const heads, kvHeads, hd, total, n = 4, 2, 8, 9, 3
	kv := flatKV{k: randVec(r, total*kvHeads*hd), v: randVec(r, total*kvHeads*hd), width: kvHeads * hd}
	q := randVec(r, n*heads*hd)
	for _, a := range []kernels.Attn{
		{Pos0: total - n, Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 0.3},
		{Pos0: total - n, Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 1, SoftCap: 0.5, Window: 3},
	} {
		want := make([]float64, len(q))
		for i := 0; i < n; i++ {
			for h := 0; h < heads; h++ {
				g := h / (heads / kvHeads)
				last := a.Pos0 + i
				w := make([]float64, last+1)
				var sum, mx float64 = 0, math.Inf(-1)
				for p := range w {
					for d := 0; d < hd; d++ {
						w[p] += float64(q[(i*heads+h)*hd+d]) * float64(kv.k[p*kv.width+g*hd+d])
					}
					w[p] *= float64(a.Scale)
					if c := float64(a.SoftCap); c > 0 {
						w[p] = c * math.Tanh(w[p]/c)
					}
					if a.Window > 0 && last-p >= a.Window {
						w[p] = math.Inf(-1)
					}
					mx = math.Max(mx, w[p])
				}
				for p := range w {
					w[p] = math.Exp(w[p] - mx)
					sum += w[p]
				}
				for p := range w {
					for d := 0; d < hd; d++ {
						want[(i*heads+h)*hd+d] += w[p] / sum * float64(kv.v[p*kv.width+g*hd+d])
					}
				}
			}
		}
		// One block, read in place, and blocks of 4 positions, gathered
		// through the block table.
		for _, block := range []int{0, 4} {
			kv.block = block
			c, blocks := kv.cache()
			out := make([]float32, len(q))
			best().attention(out, q, c, blocks, a, make([]float32, total))
			close32(t, fmt.Sprintf("attention %+v in blocks of %d", a, block), out, want, 1e-5)
		}
	}
}

func TestSwiGLUAndAdd(t *testing.T) {
	t.Parallel()
	g, u := []float32{-2, 0, 1.5}, []float32{3, 4, -1}
	best().swiGLU(g, u)
	want := []float64{-2 / (1 + math.Exp(2)) * 3, 0, 1.5 / (1 + math.Exp(-1.5)) * -1}
	close32(t, "swiglu", g, want, 1e-6)
	x := []float32{1, 2, 3, 4}
	best().addBias(x, []float32{10, 20})
	close32(t, "addbias", x, []float64{11, 22, 13, 24}, 0)
}
