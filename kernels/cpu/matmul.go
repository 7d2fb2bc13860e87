package cpu

import (
	"fmt"

	"github.com/godwit-ai/godwit/models/gguf"
)

// Scratch holds reusable buffers for the activations converted to a weight
// type's companion format, so that MatMul allocates nothing once warmed up.
// Its zero value is ready to use; it is not safe for concurrent use.
type Scratch struct {
	f     []float32 // activations rounded to fp16 or bf16
	row   []float32 // one F32/F16/BF16 weight row as float32
	q     []int8    // quantized activation levels
	d     []float32 // per-block activation scales
	s     []float32 // Q8_1 block sums
	bsums []int16   // Q8_K sums of 16 levels
	w     wrow      // the quantized weight row being multiplied, decoded
}

// grow returns buf resized to n, reusing its storage when it is big enough.
func grow[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}

// MatMul computes out[i*rows+r] = Σ_c W[r][c]·x[i*cols+c] for i in [0, n) and
// r in [0, rows), where W is rows×cols stored row-major in type t, each row
// t.RowSize(cols) bytes. As in llama.cpp's CPU backend, each activation row is
// first converted to t's companion format: F32 weights take x as is, F16 and
// BF16 weights take x rounded to fp16 or bf16, Q8_0/Q4_0/Q5_0 take Q8_0
// blocks, Q4_1/Q5_1 take Q8_1 blocks and the K-quants take Q8_K blocks. The
// products are then summed per block in integers and scaled per block, and
// the float sums done in the order of the kernel llama.cpp's x86 build picks
// for t, the shape and n (see matMulFloat and path), so the result rounds
// exactly like llama.cpp's rather than like an exact product.
//
// It panics when t is not Supported, cols is not a multiple of t's block size,
// or the lengths of w, x and out are not exactly rows·t.RowSize(cols), n·cols
// and n·rows: these are programming errors in the caller, not data errors.
func (s *Scratch) MatMul(out []float32, t gguf.Type, w []byte, rows, cols int, x []float32, n int) {
	if !Supported(t) {
		panic(fmt.Sprintf("cpu: MatMul: tensor type %v is not supported", t))
	}
	if rows < 0 || cols < 0 || n < 0 || cols%t.BlockSize() != 0 {
		panic(fmt.Sprintf("cpu: MatMul: bad shape %d×%d (%v) times %d rows", rows, cols, t, n))
	}
	rowBytes := t.RowSize(cols)
	if len(w) != rows*rowBytes || len(x) != n*cols || len(out) != n*rows {
		panic(fmt.Sprintf("cpu: MatMul: %d×%d %v weights, %d activation rows: want len(w)=%d len(x)=%d len(out)=%d, got %d %d %d",
			rows, cols, t, n, rows*rowBytes, n*cols, n*rows, len(w), len(x), len(out)))
	}
	switch t {
	case gguf.F32:
		s.matMulFloat(out, t, w, rowBytes, rows, x, cols, n)
	case gguf.F16:
		s.f = grow(s.f, n*cols)
		for i, v := range x {
			s.f[i] = FP16ToFP32(FP32ToFP16(v))
		}
		s.matMulFloat(out, t, w, rowBytes, rows, s.f, cols, n)
	case gguf.BF16:
		s.f = grow(s.f, n*cols)
		for i, v := range x {
			s.f[i] = BF16ToFP32(FP32ToBF16(v))
		}
		s.matMulFloat(out, t, w, rowBytes, rows, s.f, cols, n)
	default:
		s.matMulQuant(out, t, w, rowBytes, rows, x, cols, n)
	}
}

// matMulFloat multiplies F32, F16 or BF16 weights (x already rounded to
// the weight's precision), weight rows outermost so that each is decoded
// once. Batches of two or more rows go through llamafile's tinyBLAS in
// llama.cpp when cols is a multiple of 16 and rows of 4; anything else takes
// ggml_vec_dot_* one row at a time, which adds in another order.
func (s *Scratch) matMulFloat(out []float32, t gguf.Type, w []byte, rowBytes, rows int, x []float32, cols, n int) {
	s.row = grow(s.row, cols)
	tiny := n >= 2 && cols%16 == 0 && rows%4 == 0
	for r := range rows {
		decodeFloatRow(t, w[r*rowBytes:(r+1)*rowBytes], s.row)
		for i := range n {
			xi := x[i*cols : (i+1)*cols]
			var v float32
			switch {
			case tiny:
				v = dotLanes16(s.row, xi)
			case t == gguf.F32:
				v = vecDotF32(s.row, xi)
			case t == gguf.F16:
				v = vecDotF16(s.row, xi)
			default:
				v = vecDotBF16(s.row, xi)
			}
			out[i*rows+r] = v
		}
	}
}

// path names the kernel that llama.cpp's x86 build (AVX2/AVX512, llamafile
// and the CPU repack buffer enabled, as by default) runs for one product of a
// quantized weight row and an activation row; it fixes the float order.
type path uint8

const (
	// pathVecDot is ggml_vec_dot_*_q8_*, and for Q8_0, Q4_0 and Q5_0 batches
	// llamafile's tinyBLAS_Q0_AVX, which adds in the same order.
	pathVecDot path = iota
	// pathGemv is a repacked weight (repack.cpp) times one activation row.
	pathGemv
	// pathGemm is a repacked weight times activation rows in groups of four.
	pathGemm
)

// repacked reports whether llama.cpp repacks a weight of type t with rows
// rows into its CPU_REPACK buffer on an AVX2 machine (q4_0 and q4_K 8×8,
// which need rows a multiple of 8). That holds for every multiplied weight:
// token embeddings are looked up from a plain copy, and an output tied to them
// is loaded a second time as an output tensor, which is repacked.
func repacked(t gguf.Type, rows int) bool {
	return (t == gguf.Q4_0 || t == gguf.Q4_K) && rows%8 == 0
}

// matMulQuant quantizes the n activation rows into s, then runs the block dot
// product of t for every pair of rows along the path llama.cpp takes: for
// repacked weights the rows before the last n mod 4 go through gemm, the rest
// through gemv.
func (s *Scratch) matMulQuant(out []float32, t gguf.Type, w []byte, rowBytes, rows int, x []float32, cols, n int) {
	var dot func(*wrow, act, path) float32
	switch t {
	case gguf.Q8_0, gguf.Q4_0, gguf.Q5_0, gguf.Q4_1, gguf.Q5_1:
		// Only repacked Q4_0 takes another order than the eight lanes.
		dot = func(w *wrow, a act, p path) float32 { return dotBlocks32(w, a, p != pathVecDot) }
	case gguf.Q4_K:
		dot = dotQ4_K
	case gguf.Q5_K:
		dot = dotQ5_K
	case gguf.Q6_K:
		dot = dotQ6_K
	}
	kquant := t.BlockSize() == qkK
	q81 := t == gguf.Q4_1 || t == gguf.Q5_1
	nb := cols / qk
	if kquant {
		nb = cols / qkK
	}
	s.q = grow(s.q, n*cols)
	s.d = grow(s.d, n*nb)
	switch {
	case kquant:
		s.bsums = grow(s.bsums, n*nb*16)
	case q81:
		s.s = grow(s.s, n*nb)
	}
	row := func(i int) act {
		a := act{q: s.q[i*cols : (i+1)*cols], d: s.d[i*nb : (i+1)*nb]}
		switch {
		case kquant:
			a.bsums = s.bsums[i*nb*16 : (i+1)*nb*16]
		case q81:
			a.s = s.s[i*nb : (i+1)*nb]
		}
		return a
	}
	for i := range n {
		a, xi := row(i), x[i*cols:(i+1)*cols]
		switch {
		case kquant:
			quantizeActQ8_K(xi, a.q, a.d, a.bsums)
		case q81:
			quantizeActQ8_1(xi, a.q, a.d, a.s)
		default:
			quantizeActQ8_0(xi, a.q, a.d)
		}
	}
	rep := repacked(t, rows)
	for r := range rows {
		s.w.decode(t, w[r*rowBytes:(r+1)*rowBytes], cols)
		for i := range n {
			p := pathVecDot
			switch {
			case rep && i < n-n%4:
				p = pathGemm
			case rep:
				p = pathGemv
			}
			out[i*rows+r] = dot(&s.w, row(i), p)
		}
	}
}
