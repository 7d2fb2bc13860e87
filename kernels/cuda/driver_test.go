package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models/gguf"
)

// TestOpenRefusals: without the driver's library, or with a library that
// is not the driver, Open says which.
func TestOpenRefusals(t *testing.T) {
	if _, err := OpenLibrary("/nonexistent/libcuda.so.1"); err == nil || !strings.Contains(err.Error(), "cannot load /nonexistent/libcuda.so.1") {
		t.Errorf("a missing library: %v", err)
	}
	_, err := OpenLibrary("libc.so.6")
	if err == nil || !strings.Contains(err.Error(), "libc.so.6 lacks cuCtxSetCurrent, cuCtxSynchronize") || !strings.Contains(err.Error(), "not a CUDA driver") {
		t.Errorf("libc as the driver: %v", err)
	}
}

// TestOnGPU runs every embedded kernel on the first GPU against the CPU
// (float64 arithmetic, or the CPU's own formula where the bits must agree).
// It skips where Open finds no driver or no GPU, and fails there under
// GODWIT_REQUIRE_GPU=1 (make gpu-check on a device machine).
func TestOnGPU(t *testing.T) {
	d, err := Open()
	if err != nil {
		if os.Getenv("GODWIT_REQUIRE_GPU") == "1" {
			t.Fatalf("GODWIT_REQUIRE_GPU=1, but: %v", err)
		}
		t.Skipf("no GPU: %v", err)
	}
	devs, err := d.Devices()
	if err != nil || len(devs) == 0 {
		t.Fatalf("devices %v: %v", devs, err)
	}
	version, err := d.Version()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s, driver CUDA %s", devs[0], version)
	c, err := d.NewContext(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g := &gpuRig{t: t, c: c, fns: map[string]Function{}}
	for _, name := range []string{"elementwise", "weights", "attention"} {
		src, err := PTX(name)
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.Load(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer m.Unload()
		g.mods = append(g.mods, m)
	}
	r := rand.New(rand.NewPCG(1, 2))
	t.Run("add_rmsnorm_silu", func(t *testing.T) { g.t = t; elementwiseOnGPU(g, r) })
	t.Run("rope", func(t *testing.T) { g.t = t; ropeOnGPU(g, r) })
	t.Run("weights", func(t *testing.T) { g.t = t; weightsOnGPU(g, r) })
	t.Run("attention", func(t *testing.T) { g.t = t; attentionOnGPU(g, r) })
}

// gpuRig holds a context and its modules' kernels for the GPU tests.
type gpuRig struct {
	t    *testing.T
	c    *Context
	mods []*Module
	fns  map[string]Function
}

// fn is the kernel name, from whichever module has it.
func (g *gpuRig) fn(name string) Function {
	if f, ok := g.fns[name]; ok {
		return f
	}
	for _, m := range g.mods {
		if f, err := m.Function(name); err == nil {
			g.fns[name] = f
			return f
		}
	}
	g.t.Fatalf("no kernel %s", name)
	return Function{}
}

// buf uploads v to a new device buffer, freed when the test ends.
func buf[T any](g *gpuRig, v []T) Buffer {
	g.t.Helper()
	b, err := g.c.Alloc(uint64(len(v)) * uint64(unsafe.Sizeof(*new(T))))
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { g.c.Free(b) })
	if err := Upload(g.c, b, v); err != nil {
		g.t.Fatal(err)
	}
	return b
}

// run launches kernel name and waits for it.
func (g *gpuRig) run(name string, grid, block Dim3, shared uint32, args ...unsafe.Pointer) {
	g.t.Helper()
	if err := g.fn(name).Launch(grid, block, shared, args...); err != nil {
		g.t.Fatalf("%s: %v", name, err)
	}
	if err := g.c.Synchronize(); err != nil {
		g.t.Fatalf("%s: %v", name, err)
	}
}

// read downloads n float32 values of b.
func (g *gpuRig) read(b Buffer, n int) []float32 {
	g.t.Helper()
	out := make([]float32, n)
	if err := Download(g.c, out, b); err != nil {
		g.t.Fatal(err)
	}
	return out
}

// near fails unless got[i] is within tol (relative, at least absolute) of want[i].
func near(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol*math.Max(1, math.Abs(want[i]))) {
			t.Fatalf("%s: [%d] = %g, want %g", what, i, got[i], want[i])
		}
	}
}

func randF32(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func p(v any) unsafe.Pointer {
	switch x := v.(type) {
	case *Buffer:
		return unsafe.Pointer(&x.Ptr)
	case *int32:
		return unsafe.Pointer(x)
	case *float32:
		return unsafe.Pointer(x)
	}
	panic("p: unsupported argument")
}

func elementwiseOnGPU(g *gpuRig, r *rand.Rand) {
	const rows, dim = 3, 1000
	x, w, up := randF32(r, rows*dim), randF32(r, dim), randF32(r, rows*dim)
	bx, bw, bo, bu := buf(g, x), buf(g, w), buf(g, make([]float32, rows*dim)), buf(g, up)
	n, d32, eps := int32(rows*dim), int32(dim), float32(1e-5)
	g.run("add_f32", Dim3{X: uint32(n+255) / 256}, Dim3{X: 256}, 0, p(&bo), p(&bx), p(&n))
	for i, v := range g.read(bo, rows*dim) {
		if v != x[i] {
			g.t.Fatalf("add_f32: [%d] = %g, want %g", i, v, x[i])
		}
	}
	g.run("rmsnorm_f32", Dim3{X: rows}, Dim3{X: 256}, 0, p(&bo), p(&bx), p(&bw), p(&d32), p(&eps))
	want := make([]float64, rows*dim)
	for row := range rows {
		var ss float64
		for _, v := range x[row*dim : (row+1)*dim] {
			ss += float64(v) * float64(v)
		}
		scale := 1 / math.Sqrt(ss/dim+float64(eps))
		for i := range dim {
			want[row*dim+i] = float64(x[row*dim+i]) * scale * float64(w[i])
		}
	}
	near(g.t, "rmsnorm_f32", g.read(bo, rows*dim), want, 1e-5)
	g.run("silu_mul_f32", Dim3{X: uint32(n+255) / 256}, Dim3{X: 256}, 0, p(&bx), p(&bu), p(&n))
	for i, v := range x {
		want[i] = float64(v) / (1 + math.Exp(-float64(v))) * float64(up[i])
	}
	near(g.t, "silu_mul_f32", g.read(bx, rows*dim), want, 1e-5)

	// argmax_f32: the lowest index of the largest value, as the CPU's
	// greedy sampling; -1 for a row of -Inf and NaN.
	inf, nan := float32(math.Inf(-1)), float32(math.NaN())
	logits := make([]float32, 4*dim)
	copy(logits, randF32(r, dim))
	logits[700], logits[900] = 50, 50 // a tie: 700 wins
	for i := range dim {
		logits[dim+i] = float32(i % 3) // 2 first at index 2
		logits[2*dim+i] = inf
		logits[3*dim+i] = nan
	}
	logits[3*dim+999] = -1e30
	bl, bi := buf(g, logits), buf(g, make([]int32, 4))
	g.run("argmax_f32", Dim3{X: 4}, Dim3{X: 256}, 0, p(&bi), p(&bl), p(&d32))
	ids := make([]int32, 4)
	if err := Download(g.c, ids, bi); err != nil {
		g.t.Fatal(err)
	}
	if want := []int32{700, 2, -1, 999}; !slices.Equal(ids, want) {
		g.t.Errorf("argmax_f32: %v, want %v", ids, want)
	}
}

func ropeOnGPU(g *gpuRig, r *rand.Rand) {
	// RoPE from a host table, both layouts, the partial-rotation case too.
	const heads, hd, positions = 3, 16, 9
	for _, c := range []struct {
		dims int
		neox bool
	}{{16, false}, {16, true}, {8, true}} {
		a, b := make([]float32, positions*c.dims), make([]float32, positions*c.dims)
		for i := range a {
			a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
		}
		pos := []int32{0, 8, 3}
		x := randF32(r, len(pos)*heads*hd)
		bx, bp, ba, bb := buf(g, x), buf(g, pos), buf(g, a), buf(g, b)
		h32, hd32, d32, nx := int32(heads), int32(hd), int32(c.dims), int32(0)
		if c.neox {
			nx = 1
		}
		g.run("rope_f32", Dim3{X: uint32(len(pos))}, Dim3{X: 64}, 0, p(&bx), p(&bp), p(&ba), p(&bb), p(&h32), p(&hd32), p(&d32), p(&nx))
		got := g.read(bx, len(x))
		half := c.dims / 2
		for row, ps := range pos {
			for h := range heads {
				hx := x[(row*heads+h)*hd:]
				for k := range half {
					j0, j1 := 2*k, 2*k+1
					if c.neox {
						j0, j1 = k, k+half
					}
					pa, pb := a[int(ps)*c.dims:], b[int(ps)*c.dims:]
					for _, j := range []int{j0, j1} {
						want := float32(math.FMA(float64(hx[j0]), float64(pa[j]), float64(hx[j1]*pb[j])))
						if v := got[(row*heads+h)*hd+j]; math.Abs(float64(v-want)) > 1e-6*math.Max(1, math.Abs(float64(want))) {
							g.t.Fatalf("rope_f32 %+v: row %d head %d [%d] = %g, want %g", c, row, h, j, v, want)
						}
					}
				}
				for j := c.dims; j < hd; j++ {
					if got[(row*heads+h)*hd+j] != hx[j] {
						g.t.Fatalf("rope_f32 %+v: [%d] past the rotated dims changed", c, j)
					}
				}
			}
		}
	}
}

// weightsOnGPU: matmul_<type> and get_rows_<type> of every type, with
// weights quantized by the CPU backend and its dequantization as the
// reference.
func weightsOnGPU(g *gpuRig, r *rand.Rand) {
	const rows, cols, n = 37, 512, 3
	x := randF32(r, n*cols)
	bx, bo := buf(g, x), buf(g, make([]float32, n*rows))
	ids := []int32{7, 0, 36, 7}
	bids, brows := buf(g, ids), buf(g, make([]float32, len(ids)*cols))
	r32, c32 := int32(rows), int32(cols)
	for _, typ := range []gguf.Type{gguf.F32, gguf.F16, gguf.BF16, gguf.Q8_0, gguf.Q4_0, gguf.Q4_1, gguf.Q5_0, gguf.Q5_1,
		gguf.Q4_K, gguf.Q5_K, gguf.Q6_K} {
		w := randF32(r, rows*cols)
		stored := make([]byte, typ.RowSize(cols)*rows)
		if err := cpu.Quantize(typ, w, stored); err != nil {
			g.t.Fatal(err)
		}
		deq := make([]float32, rows*cols)
		if err := cpu.Dequantize(typ, stored, deq); err != nil {
			g.t.Fatal(err)
		}
		bw := buf(g, stored)
		name := strings.ToLower(typ.String())
		g.run("matmul_"+name, Dim3{X: rows, Y: n}, Dim3{X: 128}, 0, p(&bo), p(&bw), p(&bx), p(&r32), p(&c32))
		want := make([]float64, n*rows)
		for i := range n {
			for row := range rows {
				for c := range cols {
					want[i*rows+row] += float64(deq[row*cols+c]) * float64(x[i*cols+c])
				}
			}
		}
		near(g.t, "matmul_"+name, g.read(bo, n*rows), want, 1e-4)
		g.run("get_rows_"+name, Dim3{X: uint32(len(ids))}, Dim3{X: 128}, 0, p(&brows), p(&bw), p(&bids), p(&c32))
		want = make([]float64, len(ids)*cols)
		for i, id := range ids {
			for c := range cols {
				want[i*cols+c] = float64(deq[int(id)*cols+c])
			}
		}
		near(g.t, "get_rows_"+name, g.read(brows, len(ids)*cols), want, 1e-6)
	}
}

func attentionOnGPU(g *gpuRig, r *rand.Rand) {
	const heads, kvHeads, hd, bs = 4, 2, 64, 4
	width := kvHeads * hd
	// Two sequences of 11 and 6 positions in shuffled blocks of 4; a
	// query row each at its last position.
	lens := []int{11, 6}
	var seqs []kernels.AttnSeq
	blocks := 0
	for _, l := range lens {
		s := kernels.AttnSeq{Pos0: l - 1, Rows: 1}
		for range (l + bs - 1) / bs {
			s.Blocks = append(s.Blocks, int32(blocks))
			blocks++
		}
		seqs = append(seqs, s)
	}
	perm := r.Perm(blocks)
	for _, s := range seqs {
		for i, b := range s.Blocks {
			s.Blocks[i] = int32(perm[b])
		}
	}
	var batch AttnBatch
	if err := batch.Pack(seqs, bs); err != nil {
		g.t.Fatal(err)
	}
	tables, offs, last := batch.Tables, batch.Offsets, batch.Last
	k, v := randF32(r, blocks*bs*width), randF32(r, blocks*bs*width)
	// The fp16 cache holds the same values rounded, which the reference
	// then takes too.
	k16, v16 := make([]uint16, len(k)), make([]uint16, len(v))
	for i := range k {
		k16[i], v16[i] = cpu.FP32ToFP16(k[i]), cpu.FP32ToFP16(v[i])
	}
	q := randF32(r, len(lens)*heads*hd)
	bq, bt, bo, bl := buf(g, q), buf(g, tables), buf(g, make([]float32, len(q))), buf(g, last)
	boffs := buf(g, offs)
	h32, kvh32, hd32, bs32 := int32(heads), int32(kvHeads), int32(hd), int32(bs)
	for _, c := range []struct {
		kernel         string
		scale, softCap float32
		window         int32
	}{{"attention_f32", 0.125, 0, 0}, {"attention_f32", 1, 2, 5}, {"attention_f16", 0.125, 0, 0}, {"attention_f16", 1, 2, 5}} {
		bk, bv := buf(g, k), buf(g, v)
		if c.kernel == "attention_f16" {
			bk, bv = buf(g, k16), buf(g, v16)
			for i := range k {
				k[i], v[i] = cpu.FP16ToFP32(k16[i]), cpu.FP16ToFP32(v16[i])
			}
		}
		g.run(c.kernel, Dim3{X: uint32(len(lens)), Y: heads}, Dim3{X: 128}, uint32(4*11),
			p(&bo), p(&bq), p(&bk), p(&bv), p(&bt), p(&boffs), p(&bl),
			p(&h32), p(&kvh32), p(&hd32), p(&bs32), p(&c.scale), p(&c.softCap), p(&c.window))
		want := make([]float64, len(q))
		for i, l := range lens {
			table := tables[offs[i]:]
			at := func(pos int) int { return (int(table[pos/bs])*bs + pos%bs) * width }
			for h := range heads {
				gk := h / (heads / kvHeads) * hd
				lo := 0
				if c.window > 0 && l > int(c.window) {
					lo = l - int(c.window)
				}
				s := make([]float64, l)
				mx := math.Inf(-1)
				for pos := lo; pos < l; pos++ {
					for d := range hd {
						s[pos] += float64(q[(i*heads+h)*hd+d]) * float64(k[at(pos)+gk+d])
					}
					s[pos] *= float64(c.scale)
					if c.softCap > 0 {
						s[pos] = float64(c.softCap) * math.Tanh(s[pos]/float64(c.softCap))
					}
					mx = math.Max(mx, s[pos])
				}
				var sum float64
				for pos := lo; pos < l; pos++ {
					s[pos] = math.Exp(s[pos] - mx)
					sum += s[pos]
				}
				for pos := lo; pos < l; pos++ {
					for d := range hd {
						want[(i*heads+h)*hd+d] += s[pos] / sum * float64(v[at(pos)+gk+d])
					}
				}
			}
		}
		near(g.t, fmt.Sprintf("%+v", c), g.read(bo, len(q)), want, 1e-4)
	}
}
