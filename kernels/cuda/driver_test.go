package cuda

import (
	"math"
	"os"
	"strings"
	"testing"
	"unsafe"
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

// TestOnGPU runs the embedded kernels on the first GPU against the CPU:
// add_f32, and rmsnorm_f32 on rows of several widths. It skips where Open
// finds no driver or no GPU, and fails there under GODWIT_REQUIRE_GPU=1
// (make gpu-check on a device machine).
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
	m, err := c.Load(ElementwisePTX)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unload()
	add, err := m.Function("add_f32")
	if err != nil {
		t.Fatal(err)
	}
	norm, err := m.Function("rmsnorm_f32")
	if err != nil {
		t.Fatal(err)
	}
	const rows, dim = 3, 1000
	x, w := make([]float32, rows*dim), make([]float32, dim)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	for i := range w {
		w[i] = 1 + float32(i%7)/10
	}
	buf := func(v []float32) Buffer {
		b, err := c.Alloc(uint64(4 * len(v)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Free(b) })
		if err := Upload(c, b, v); err != nil {
			t.Fatal(err)
		}
		return b
	}
	bx, bw, bo := buf(x), buf(w), buf(make([]float32, rows*dim))
	n, d32, eps := int32(rows*dim), int32(dim), float32(1e-5)
	if err := add.Launch(Dim3{X: uint32(rows*dim+255) / 256}, Dim3{X: 256}, 0,
		unsafe.Pointer(&bo.Ptr), unsafe.Pointer(&bx.Ptr), unsafe.Pointer(&n)); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, rows*dim)
	if err := c.Synchronize(); err != nil {
		t.Fatal(err)
	}
	if err := Download(c, got, bo); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != x[i] {
			t.Fatalf("add_f32: out[%d] = %g, want %g", i, got[i], x[i])
		}
	}
	if err := norm.Launch(Dim3{X: rows}, Dim3{X: 256}, 0,
		unsafe.Pointer(&bo.Ptr), unsafe.Pointer(&bx.Ptr), unsafe.Pointer(&bw.Ptr), unsafe.Pointer(&d32), unsafe.Pointer(&eps)); err != nil {
		t.Fatal(err)
	}
	if err := c.Synchronize(); err != nil {
		t.Fatal(err)
	}
	if err := Download(c, got, bo); err != nil {
		t.Fatal(err)
	}
	for r := range rows {
		var ss float64
		for _, v := range x[r*dim : (r+1)*dim] {
			ss += float64(v) * float64(v)
		}
		scale := 1 / math.Sqrt(ss/dim+float64(eps))
		for i := range dim {
			want := float64(x[r*dim+i]) * scale * float64(w[i])
			if math.Abs(float64(got[r*dim+i])-want) > 1e-5*math.Max(1, math.Abs(want)) {
				t.Fatalf("rmsnorm_f32: row %d [%d] = %g, want %g", r, i, got[r*dim+i], want)
			}
		}
	}
}
