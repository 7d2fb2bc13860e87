package cpu

import (
	"math"
	"os"
	"syscall"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// BenchmarkF16Bandwidth streams F16 weights of a model's size through
// MatMul with one activation row (decode), from the heap and, when
// GODWIT_BW_FILE names a file, from that file mapped as the loader maps it,
// as MAP_POPULATE maps it (as llama.cpp does) and as a private mapping, on
// one and two threads: decode speed is this bandwidth. The mappings measured
// the same as the heap once touched.
func BenchmarkF16Bandwidth(b *testing.B) {
	const cols = 1024
	size := 640 << 20
	rows := size / (2 * cols)
	heap := make([]byte, size)
	for i := range heap {
		heap[i] = byte(i*7) & 0x3b // finite halves
	}
	sources := map[string][]byte{"heap": heap}
	if name := os.Getenv("GODWIT_BW_FILE"); name != "" {
		f, err := os.Open(name)
		if err != nil {
			b.Fatal(err)
		}
		data, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			b.Fatal(err)
		}
		sources["mmap"] = data
		data, err = syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
		if err != nil {
			b.Fatal(err)
		}
		sources["populate"] = data
		data, err = syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_PRIVATE)
		if err != nil {
			b.Fatal(err)
		}
		sources["private"] = data
	}
	x := make([]float32, cols)
	out := make([]float32, rows)
	for name, w := range sources {
		for _, threads := range []int{1, 2} {
			b.Run(name+"/"+string(rune('0'+threads)), func(b *testing.B) {
				s := Scratch{Pool: NewPool(threads), k: best()}
				defer s.Pool.Close()
				// One layer's worth of rows per product, as decode does.
				step := 4 << 20 / (2 * cols)
				b.SetBytes(int64(size))
				for b.Loop() {
					for r := 0; r+step <= rows; r += step {
						s.MatMul(out[r:r+step], gguf.F16, w[r*2*cols:(r+step)*2*cols], step, cols, x, 1, kernels.OrderLlama)
					}
				}
			})
		}
	}
}

// TestReadBandwidth: the threads' shares of a buffer are whole lines that
// cover it once, for every length and on more threads than it has lines; the
// rate is positive and finite, and below a rate no memory reaches (which
// would mean the reads were skipped).
func TestReadBandwidth(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 65, 200, 1<<20 + 13} {
		for _, threads := range []int{1, 2, 3, 16} {
			next := 0
			for i := range threads {
				lo, hi := readShare(n, i, threads)
				if lo != next || hi < lo || lo%64 != 0 || (hi%64 != 0 && hi != n) {
					t.Fatalf("%d bytes, thread %d of %d: [%d, %d) after %d", n, i, threads, lo, hi, next)
				}
				next = hi
			}
			if next != n {
				t.Errorf("%d bytes on %d threads: the shares end at %d", n, threads, next)
			}
		}
	}
	bufs := [][]byte{make([]byte, 1<<20+13), nil, make([]byte, 63)}
	for _, threads := range []int{1, 3} {
		b := New(threads)
		bw := b.ReadBandwidth(bufs, 3)
		b.Close()
		if !(bw > 0) || math.IsInf(bw, 0) || bw > 1e13 {
			t.Errorf("%d threads: %g bytes/s", threads, bw)
		}
	}
}
