package cpu

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/godwit-ai/godwit/models/gguf"
)

// Elements per block: 32 for the legacy types, 256 for the K-quant super-blocks.
const (
	qk  = 32
	qkK = 256
)

// Supported reports whether the type can be dequantized and multiplied here:
// F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K.
func Supported(t gguf.Type) bool {
	switch t {
	case gguf.F32, gguf.F16, gguf.BF16, gguf.Q8_0, gguf.Q4_0, gguf.Q4_1,
		gguf.Q5_0, gguf.Q5_1, gguf.Q4_K, gguf.Q5_K, gguf.Q6_K:
		return true
	}
	return false
}

// checkSizes validates that n elements of t fit its blocks and take exactly
// bytes bytes.
func checkSizes(t gguf.Type, n, bytes int) error {
	if !Supported(t) {
		return fmt.Errorf("cpu: tensor type %v is not supported", t)
	}
	if bs := t.BlockSize(); n%bs != 0 {
		return fmt.Errorf("cpu: %d %v values are not a whole number of %d-element blocks", n, t, bs)
	}
	if want := t.RowSize(n); bytes != want {
		return fmt.Errorf("cpu: %d %v values take %d bytes, got %d", n, t, want, bytes)
	}
	return nil
}

// Quantize encodes src (its length a multiple of t's block size) into dst,
// which must hold exactly t.RowSize(len(src)) bytes, byte for byte as
// llama.cpp's quantize_row_*_ref do (for K-quants, the make_qkx2_quants /
// make_qx_quants search without an importance matrix, which is what
// llama-quantize runs when given none). F16 and BF16 round to nearest even;
// F32 is copied. Used to write random-weight models, so it favours fidelity
// to ggml over speed.
func Quantize(t gguf.Type, src []float32, dst []byte) error {
	if err := checkSizes(t, len(src), len(dst)); err != nil {
		return err
	}
	switch t {
	case gguf.F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case gguf.F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], FP32ToFP16(v))
		}
	case gguf.BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], FP32ToBF16(v))
		}
	default:
		quantizeBlocks(t, src, dst)
	}
	return nil
}

// A note on float32(a*b) in this package: the Go spec lets a compiler fuse
// a*b+c into one FMA (arm64 does), while ggml's reference code is built for
// baseline x86-64 and rounds every product. An explicit conversion forces the
// rounding, so quantized bytes and dot products are the same on every
// architecture.

// quantizeBlocks runs the block quantizer of t over every block of src.
func quantizeBlocks(t gguf.Type, src []float32, dst []byte) {
	bs, ts := t.BlockSize(), t.TypeSize()
	var f func(x []float32, y []byte)
	switch t {
	case gguf.Q8_0:
		f = quantizeBlockQ8_0
	case gguf.Q4_0:
		f = quantizeBlockQ4_0
	case gguf.Q4_1:
		f = quantizeBlockQ4_1
	case gguf.Q5_0:
		f = quantizeBlockQ5_0
	case gguf.Q5_1:
		f = quantizeBlockQ5_1
	case gguf.Q4_K:
		f = quantizeBlockQ4_K
	case gguf.Q5_K:
		f = quantizeBlockQ5_K
	case gguf.Q6_K:
		f = quantizeBlockQ6_K
	}
	for b := 0; b < len(src)/bs; b++ {
		f(src[b*bs:(b+1)*bs], dst[b*ts:(b+1)*ts])
	}
}

func putF16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, FP32ToFP16(f)) }

func getF16(b []byte) float32 { return FP16ToFP32(binary.LittleEndian.Uint16(b)) }

// nearestInt rounds to nearest, ties to even, with ggml's magic-number trick:
// adding 1.5·2²³ leaves the rounded integer in the low mantissa bits. Valid for
// |f| < 2²²; callers pass values scaled to a few hundred levels at most (for
// non-finite input the result is meaningless, as in ggml, but harmless).
func nearestInt(f float32) int {
	v := float32(f) + 12582912 // the conversion keeps a caller's product from fusing into this add
	return int(math.Float32bits(v)&0x7fffff) - 0x400000
}

// absMax returns the value of largest magnitude in x (the first such, keeping
// its sign) and that magnitude, as the reference quantizers find it.
func absMax(x []float32) (maxv, amax float32) {
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, maxv = a, v
		}
	}
	return maxv, amax
}

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

func minMax(x []float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

// quantizeBlockQ8_0 is quantize_row_q8_0_ref: d = amax/127, q = round(x/d)
// with halves away from zero.
func quantizeBlockQ8_0(x []float32, y []byte) {
	var amax float32
	for _, v := range x {
		amax = max(amax, abs32(v))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putF16(y, d)
	for j, v := range x {
		y[2+j] = byte(int8(math.Round(float64(v * id))))
	}
}

// quantizeBlockQ4_0 is quantize_row_q4_0_ref: the value of largest magnitude
// maps to −8, and q = min(15, trunc(x/d + 8.5)).
func quantizeBlockQ4_0(x []float32, y []byte) {
	maxv, _ := absMax(x)
	d := maxv / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putF16(y, d)
	for j := range qk / 2 {
		lo := min(15, int(float32(x[j]*id)+8.5))
		hi := min(15, int(float32(x[j+qk/2]*id)+8.5))
		y[2+j] = byte(lo) | byte(hi)<<4
	}
}

// quantizeBlockQ4_1 is quantize_row_q4_1_ref: d = (max−min)/15, m = min,
// q = min(15, trunc((x−min)/d + 0.5)).
func quantizeBlockQ4_1(x []float32, y []byte) {
	lo, hi := minMax(x)
	d := (hi - lo) / 15
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putF16(y, d)
	putF16(y[2:], lo)
	for j := range qk / 2 {
		a := min(15, int(float32((x[j]-lo)*id)+0.5))
		b := min(15, int(float32((x[j+qk/2]-lo)*id)+0.5))
		y[4+j] = byte(a) | byte(b)<<4
	}
}

// quantizeBlockQ5_0 is quantize_row_q5_0_ref: like Q4_0 with 5 bits, the
// fifth bits gathered in a 32-bit mask.
func quantizeBlockQ5_0(x []float32, y []byte) {
	maxv, _ := absMax(x)
	d := maxv / -16
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putF16(y, d)
	var qh uint32
	for j := range qk / 2 {
		a := min(31, int(float32(x[j]*id)+16.5))
		b := min(31, int(float32(x[j+qk/2]*id)+16.5))
		y[6+j] = byte(a&0xf) | byte(b&0xf)<<4
		qh |= uint32(a>>4&1)<<j | uint32(b>>4&1)<<(j+qk/2)
	}
	binary.LittleEndian.PutUint32(y[2:], qh)
}

// quantizeBlockQ5_1 is quantize_row_q5_1_ref. As in ggml, q is not clamped:
// (x−min)/d stays below 31.5 for every finite block.
func quantizeBlockQ5_1(x []float32, y []byte) {
	lo, hi := minMax(x)
	d := (hi - lo) / 31
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putF16(y, d)
	putF16(y[2:], lo)
	var qh uint32
	for j := range qk / 2 {
		a := uint8(int(float32((x[j]-lo)*id) + 0.5))
		b := uint8(int(float32((x[j+qk/2]-lo)*id) + 0.5))
		y[8+j] = a&0xf | (b&0xf)<<4
		qh |= uint32(a>>4&1)<<j | uint32(b>>4&1)<<(j+qk/2)
	}
	binary.LittleEndian.PutUint32(y[4:], qh)
}
