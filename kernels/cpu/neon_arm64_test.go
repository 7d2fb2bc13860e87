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

// The NEON kernels against the plain Go ones, bit for bit, on random inputs
// of sizes that leave every remainder. On an amd64 machine they run under
// qemu-user (make test-arm64).

// sdotModes are the integer-lane paths this CPU can run: SMULL always, SDOT
// where present (qemu-user emulates it).
func sdotModes() []bool {
	if cpuDot {
		return []bool{false, true}
	}
	return []bool{false}
}

// neonRowKernels are the NEON block kernels on the given integer-lane path.
func neonRowKernels(sdot bool) map[gguf.Type]func([]byte, act, path) float32 {
	b := neonBlocks{sdot: sdot}
	return map[gguf.Type]func([]byte, act, path) float32{gguf.Q8_0: b.dotQ8_0Row, gguf.Q4_0: b.dotQ4_0Row}
}

// randomFP16 returns a finite fp16 value, subnormals included: the scales of
// the weight blocks.
func randomFP16(r *rand.Rand) uint16 {
	for {
		if h := uint16(r.Uint32()); h&0x7c00 != 0x7c00 {
			return h
		}
	}
}

// randomBlocks returns nb random blocks of type t (Q8_0 or Q4_0): any levels
// and any finite scale, so that the sums reach every lane magnitude.
func randomBlocks(r *rand.Rand, t gguf.Type, nb int) []byte {
	w := make([]byte, nb*t.TypeSize())
	for b := range nb {
		blk := w[b*t.TypeSize() : (b+1)*t.TypeSize()]
		for i := range blk {
			blk[i] = byte(r.Uint32())
		}
		binary.LittleEndian.PutUint16(blk, randomFP16(r))
	}
	return w
}

// randomAct returns a Q8_0 activation row of nb blocks quantized from values
// whose magnitude varies from block to block.
func randomAct(r *rand.Rand, nb int) act {
	x := make([]float32, nb*qk)
	for i := range x {
		x[i] = float32(r.NormFloat64() * math.Ldexp(1, r.IntN(16)-8))
	}
	a := act{q: make([]int8, nb*qk), d: make([]float32, nb)}
	quantizeActQ8_0(x, a.q, a.d)
	return a
}

func TestNEONBlockKernels(t *testing.T) {
	t.Parallel()
	if !cpuDot {
		t.Log("no SDOT on this CPU: only the SMULL path runs")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, typ := range []gguf.Type{gguf.Q8_0, gguf.Q4_0} {
		for _, nb := range []int{1, 2, 3, 7, 33} {
			for trial := range 20 {
				w, a := randomBlocks(r, typ, nb), randomAct(r, nb)
				var row wrow
				row.decode(typ, w, nb*qk)
				for _, p := range []path{pathVecDot, pathGemv, pathGemm} {
					want := dotBlocks32Path(&row, a, p)
					for _, sdot := range sdotModes() {
						got := neonRowKernels(sdot)[typ](w, a, p)
						if math.Float32bits(got) != math.Float32bits(want) {
							t.Errorf("%v, %d blocks, trial %d, path %d, sdot %v: NEON %g (%#08x), Go %g (%#08x)",
								typ, nb, trial, p, sdot, got, math.Float32bits(got), want, math.Float32bits(want))
						}
					}
				}
			}
		}
	}
}

func TestNEONFloatKernels(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for _, typ := range []gguf.Type{gguf.F32, gguf.F16} {
		for _, n := range []int{0, 1, 3, 16, 63, 64, 65, 127, 128, 256 + 13, 512} {
			for trial := range 10 {
				w := make([]byte, typ.RowSize(n))
				x, wf := make([]float32, n), make([]float32, n)
				for j := range n {
					// Values over a wide range of exponents, so that the
					// sums round at different places in each lane.
					v := float32(r.NormFloat64() * math.Ldexp(1, r.IntN(24)-12))
					x[j] = float32(r.NormFloat64())
					if typ == gguf.F16 {
						binary.LittleEndian.PutUint16(w[2*j:], randomFP16(r))
						x[j] = FP16ToFP32(FP32ToFP16(x[j]))
					} else {
						binary.LittleEndian.PutUint32(w[4*j:], math.Float32bits(v))
					}
				}
				decodeFloatRow(typ, w, wf)
				k := dotF32Row
				want := vecDotF32(wf, x)
				if typ == gguf.F16 {
					k, want = dotF16Row, vecDotF16(wf, x)
				}
				check := func(order string, got, want float32) {
					if math.Float32bits(got) != math.Float32bits(want) {
						t.Errorf("%v, length %d, trial %d, %s: NEON %g (%#08x), Go %g (%#08x)",
							typ, n, trial, order, got, math.Float32bits(got), want, math.Float32bits(want))
					}
				}
				check("vec_dot", k(w, x, false), want)
				if n%16 == 0 {
					check("lanes16", k(w, x, true), dotLanes16(wf, x))
				}
			}
		}
	}
}

// TestNEONMatMul: MatMul under the NEON variant equals the Go variant for
// every type (those without NEON kernels take the Go path either way), with
// row counts that do and do not repack Q4_0 and batch sizes that take
// tinyBLAS, gemm and gemv.
func TestNEONMatMul(t *testing.T) {
	t.Parallel()
	for _, typ := range allTypes {
		var colsList []int
		switch bs := typ.BlockSize(); bs {
		case 1:
			colsList = []int{16, 64, 65, 127, 256 + 13}
		default:
			for _, nb := range []int{1, 2, 3, 7, 33} {
				if nb*bs <= 33*32 {
					colsList = append(colsList, nb*bs)
				}
			}
		}
		for _, cols := range colsList {
			for _, rows := range []int{1, 4, 8, 13} {
				for _, n := range []int{1, 2, 5} {
					seed := uint64(cols*1000 + rows*10 + n)
					w := make([]byte, rows*typ.RowSize(cols))
					if err := Quantize(typ, randomData("gauss", rows*cols, seed), w); err != nil {
						t.Fatal(err)
					}
					x := randomData("gauss", n*cols, seed+1)
					s := Scratch{k: goSet()}
					want := make([]float32, n*rows)
					s.MatMul(want, typ, w, rows, cols, x, n, kernels.OrderLlama)
					for _, sdot := range sdotModes() {
						got := make([]float32, n*rows)
						s.k = kernelsFor(VariantNEON, sdot)
						s.MatMul(got, typ, w, rows, cols, x, n, kernels.OrderLlama)
						for i := range got {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Errorf("%v %d×%d, n=%d, sdot %v: out[%d] NEON %g, Go %g",
									typ, rows, cols, n, sdot, i, got[i], want[i])
								break
							}
						}
					}
				}
			}
		}
	}
}

func BenchmarkNEONKernels(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	const nb = 64 // a 2048-wide row
	for _, typ := range []gguf.Type{gguf.Q8_0, gguf.Q4_0} {
		w, a := randomBlocks(r, typ, nb), randomAct(r, nb)
		for _, sdot := range sdotModes() {
			k := neonRowKernels(sdot)[typ]
			b.Run(fmt.Sprintf("%v/sdot=%v", typ, sdot), func(b *testing.B) {
				b.SetBytes(int64(len(w)))
				for b.Loop() {
					k(w, a, pathVecDot)
				}
			})
		}
	}
}
