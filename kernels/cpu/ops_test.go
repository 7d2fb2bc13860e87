package cpu

import (
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

// flatKV is a minimal kernels.KV over one layer, in f32, or in fp16 (hk,
// hv) when half is called.
type flatKV struct {
	k, v   []float32
	hk, hv []uint16
	width  int
	block  int // positions a run holds (0: all)
}

// half returns f stored in fp16, in runs of 16 positions as a paged cache
// gives them.
func (f flatKV) half() flatKV {
	f.block = 16
	f.hk, f.hv = make([]uint16, len(f.k)), make([]uint16, len(f.v))
	toHalfGo(f.hk, f.k)
	toHalfGo(f.hv, f.v)
	return f
}

func (f flatKV) Key(_, pos, off, n int) ([]float32, []uint16) {
	if f.hk != nil {
		return nil, f.hk[pos*f.width+off : pos*f.width+off+n]
	}
	return f.k[pos*f.width+off : pos*f.width+off+n], nil
}

func (f flatKV) Run(pos int) int {
	if f.block > 0 {
		return f.block - pos%f.block
	}
	return len(f.k)/f.width - pos
}

func (f flatKV) Value(_, pos, off, n int) ([]float32, []uint16) {
	if f.hv != nil {
		return nil, f.hv[pos*f.width+off : pos*f.width+off+n]
	}
	return f.v[pos*f.width+off : pos*f.width+off+n], nil
}

// attention is attendHead for every query row and head of q, with lane sums
// of its own.
func (k *kernelSet) attention(out, q []float32, kv kernels.KV, a kernels.Attn, scores []float32) {
	lanes, buf := make([]float32, 64*a.HeadDim), make([]float32, a.HeadDim)
	for j := range len(q) / a.HeadDim { // one job per query row and head
		k.attendHead(out, q, kv, a, j, scores, lanes, buf)
	}
}

func TestAttention(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	const heads, kvHeads, hd, total, n = 4, 2, 8, 9, 3
	a := kernels.Attn{Pos0: total - n, Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 0.3}
	kv := flatKV{k: randVec(r, total*kvHeads*hd), v: randVec(r, total*kvHeads*hd), width: kvHeads * hd}
	q := randVec(r, n*heads*hd)
	out := make([]float32, len(q))
	best().attention(out, q, kv, a, make([]float32, total))
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
				w[p] *= 0.3
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
	close32(t, "attention", out, want, 1e-5)
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
