package cpu

import (
	"fmt"
	"runtime"

	"github.com/godwit-ai/godwit/models/gguf"
	"github.com/klauspost/cpuid/v2"
)

// Variant names a set of kernels: the plain Go ones, which run everywhere and
// are the test oracle, or the SIMD assembly for one instruction-set level.
// Every variant adds in the same order as the plain Go kernels (llama.cpp's),
// so all give the same results.
type Variant string

const (
	VariantGo     Variant = "go"
	VariantAVX2   Variant = "avx2"   // AVX2, FMA and F16C
	VariantAVX512 Variant = "avx512" // AVX-512 F, BW and VL (VNNI where present)
	VariantNEON   Variant = "neon"   // arm64 Advanced SIMD (SDOT where present)
)

// cpuDot reports whether this CPU has the integer dot product its best
// variant can use: VPDPBUSD (AVX-512 VNNI) on amd64, SDOT (FEAT_DotProd:
// Cortex-A55/A76 and later, Graviton2 and later; not the Cortex-A72 of a
// Raspberry Pi 4) on arm64.
var cpuDot = runtime.GOARCH == "amd64" && cpuid.CPU.Supports(cpuid.AVX512VNNI) ||
	runtime.GOARCH == "arm64" && cpuid.CPU.Supports(cpuid.ASIMDDP)

// Variants lists the variants this CPU can run, best first; the plain Go
// kernels are always last.
func Variants() []Variant {
	var vs []Variant
	if runtime.GOARCH == "amd64" {
		if cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512BW, cpuid.AVX512VL, cpuid.FMA3, cpuid.F16C) {
			vs = append(vs, VariantAVX512)
		}
		if cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3, cpuid.F16C) {
			vs = append(vs, VariantAVX2)
		}
	}
	if runtime.GOARCH == "arm64" {
		// Advanced SIMD is part of every arm64 CPU.
		vs = append(vs, VariantNEON)
	}
	return append(vs, VariantGo)
}

// kernelSet is one variant's kernels, which a Backend holds and passes to
// everything that computes. Its maps and functions are filled once, when the
// package initialises (kernelSets), and never change, so any number of
// backends of different variants can run side by side.
//
// Which kernel runs where, by set (kernelSet.String; amd64's are made by
// archKernels in variant_amd64.go, arm64's in variant_arm64.go). An empty
// cell is the plain Go kernel, which the go set runs everywhere; every
// kernel adds in the plain Go kernel's order.
//
//	operation                   avx2            avx512-nodot     avx512 (VNNI)     neon, neon-nodot
//	F32/F16/BF16 rows           floatAVX2       floatAVX512      floatAVX512       F32, F16: dotF32Row, dotF16Row
//	F32/F16/BF16 batch tiles    floatAVX2 2×n   floatAVX512 4×n  floatAVX512 4×n
//	fp16/bf16 rounding          floatAVX2       floatAVX512      floatAVX512
//	Q8_0 Q4_0 Q5_0 Q4_1 Q5_1    q32Sets[avx2]   q32Sets[avx2]    q32Sets[avx512]   Q8_0, Q4_0: neonBlocks (SDOT: neon)
//	  their batch tiles                                          tile32
//	  Q8_0 packed at load                                        q8Packed
//	Q4_K Q5_K Q6_K              kquantAVX2      kquantAVX512     kquantVNNI
//	  their batch tiles                                          ktTilers
//	Q8_0/Q8_1/Q8_K quantizers   AVX2            AVX2             AVX2
//	softmax exp, SwiGLU, Add    floatAVX2       floatAVX512      floatAVX512
//	attention q·k, values       floatAVX2       floatAVX512      floatAVX512
//	attention rows, decode,                     attn_amd64.s     attn_amd64.s
//	  tiles; softmax max and
//	  scale; RMSNorm scale;
//	  fp16 KV conversion; RoPE
type kernelSet struct {
	variant Variant
	// dot: the set uses the CPU's integer dot product (VPDPBUSD with
	// AVX-512, SDOT with NEON); false for the variants without one.
	dot bool

	// Matrix products (matmul.go, packed.go); a missing map entry means
	// the plain Go path. Each adds in exactly the plain Go order.

	// quant[t] multiplies one weight row of type t, as stored, with one
	// prepared activation row, in the order p selects.
	quant map[gguf.Type]func(w []byte, a act, p path) float32
	// quant4[t], where set, does quant[t]'s work for four activation rows
	// at once, all taking path p, and unpacks each weight block once for
	// the four.
	quant4 map[gguf.Type]func(w []byte, a *[4]act, p path) [4]float32
	// quantRows[t], where set, does quant[t]'s work for the len(out)
	// weight rows that start rowBytes apart in w, writing row r's result
	// to out[r]. One row's block sums form one chain of dependent FMAs;
	// the kernel runs the chains of several rows side by side.
	quantRows map[gguf.Type]func(w []byte, rowBytes int, a act, p path, out []float32)
	// float[t] multiplies one F32, F16 or BF16 weight row, as stored, with
	// activations already rounded to its precision; lanes16 selects
	// tinyBLAS's order, else ggml_vec_dot's.
	float map[gguf.Type]func(w []byte, x []float32, lanes16 bool) float32
	// floatRows[t], where set, is float[t] in ggml_vec_dot's order for the
	// len(out) weight rows that start rowBytes apart in w, against one
	// activation row whose length is a multiple of 64.
	floatRows map[gguf.Type]func(w []byte, rowBytes int, x, out []float32)
	// float4[t], where set, is float[t] in tinyBLAS's order for four
	// activation rows at once (x holds them one after the other).
	float4 map[gguf.Type]func(out *[4]float32, w []byte, x []float32)
	// quantTile[t], where set, multiplies tiles of weight rows with batches
	// of activation rows (prompt processing): entry 1 for weights llama.cpp
	// repacks (see repacked), entry 0 for the others.
	quantTile map[gguf.Type][2]*quantTiler
	// floatTile[t], where set, is float[t] in tinyBLAS's order for a
	// register tile of weight rows by activation rows.
	floatTile map[gguf.Type]floatTile
	// packed[t], where set, packs and multiplies weights of type t (pack).
	packed map[gguf.Type]*packedKernels
	// roundFP16 and roundBF16 set dst[i] to src[i] rounded to fp16 or bf16.
	roundFP16, roundBF16 func(dst, src []float32)
	// actQ8_0, actQ8_1 and actQ8_K quantize activation rows as
	// quantizeActQ8_0, quantizeActQ8_1 and quantizeActQ8_K do.
	actQ8_0 func(x []float32, q []int8, d []float32)
	actQ8_1 func(x []float32, q []int8, d, s []float32)
	actQ8_K func(x []float32, q []int8, d []float32, bsums []int16)

	// Row operations and attention (ops.go, rope.go, attn_tiles.go).

	// normScale sets o[i] = x[i]·s·w[i] for i < len(o).
	normScale func(o, x, w []float32, s float32)
	// maxRow is the largest value of x, NaN when x holds one; scaleRow sets
	// x[i] = x[i]·s; softmaxExp sets x[i] = expf(x[i] − mx) and returns the
	// sum of softmax.
	maxRow     func(x []float32) float32
	scaleRow   func(x []float32, s float32)
	softmaxExp func(x []float32, mx float32) float64
	// swiGLU16 is swiGLU for len(gate) a multiple of 16, all with the
	// vector expf.
	swiGLU16 func(gate, up []float32)
	// add sets dst[i] += src[i].
	add func(dst, src []float32)
	// dotF32 is vecDotF32 for q·k, and kqv sets the head output o to the
	// sum of the value rows (row p at vs[p·stride:], len(o) wide) weighted
	// by s, in width lanes kept in acc.
	dotF32 func(a, b []float32) float32
	kqv    func(o, s, vs []float32, stride, width int, acc []float32)
	// attnRows, where set, are the kernels of attendRows.
	attnRows *attnRowKernels
	// attnDecode holds, by HeadDim, the decode kernels (attendGroupHalf);
	// other HeadDims take attendRows on an f32 copy.
	attnDecode map[int]attnDecodeKernels
	// attnTile holds, by HeadDim, the batched attention kernels; HeadDims
	// without an entry take attendHead row by row.
	attnTile map[int]attnKernels
	// fromHalf sets dst[i] to the fp16 value src[i]; toHalf rounds src[i]
	// to fp16 (to nearest, ties to even) into dst[i]; fromHalfRows converts
	// the rows of cols values that start stride values apart in src into
	// the rows of dst, one after the other; prefetchRows asks for the
	// cache lines of such rows, where the CPU can.
	fromHalf     func(dst []float32, src []uint16)
	toHalf       func(dst []uint16, src []float32)
	fromHalfRows func(dst []float32, src []uint16, cols, stride int)
	prefetchRows func(src []uint16, cols, stride int)
	// ropeRotate[neox], where set, is ropeTable.rotate's loop in assembly,
	// for dims a multiple of 32 (index 1: NEOX layout).
	ropeRotate [2]func(x []float32, heads, hd int, a, b []float32)
}

// String names the set, as the tests do: its variant, with "-nodot" for a
// variant that has the integer dot product but does not use it.
func (k *kernelSet) String() string {
	if !k.dot && (k.variant == VariantAVX512 || k.variant == VariantNEON) {
		return string(k.variant) + "-nodot"
	}
	return string(k.variant)
}

// goKernels returns a set of the plain Go kernels, which the SIMD sets start
// from.
func goKernels(v Variant, dot bool) *kernelSet {
	return &kernelSet{
		variant:      v,
		dot:          dot,
		quant:        map[gguf.Type]func([]byte, act, path) float32{},
		quant4:       map[gguf.Type]func([]byte, *[4]act, path) [4]float32{},
		quantRows:    map[gguf.Type]func([]byte, int, act, path, []float32){},
		float:        map[gguf.Type]func([]byte, []float32, bool) float32{},
		floatRows:    map[gguf.Type]func([]byte, int, []float32, []float32){},
		float4:       map[gguf.Type]func(*[4]float32, []byte, []float32){},
		quantTile:    map[gguf.Type][2]*quantTiler{},
		floatTile:    map[gguf.Type]floatTile{},
		packed:       map[gguf.Type]*packedKernels{},
		roundFP16:    roundFP16Go,
		roundBF16:    roundBF16Go,
		actQ8_0:      quantizeActQ8_0,
		actQ8_1:      quantizeActQ8_1,
		actQ8_K:      quantizeActQ8_K,
		normScale:    normScaleGo,
		maxRow:       maxRowGo,
		scaleRow:     scaleRowGo,
		softmaxExp:   softmaxExpGo,
		swiGLU16:     swiGLU16Go,
		add:          Add,
		dotF32:       vecDotF32,
		kqv:          kqvGo,
		attnDecode:   map[int]attnDecodeKernels{},
		attnTile:     map[int]attnKernels{},
		fromHalf:     fromHalfGo,
		toHalf:       toHalfGo,
		fromHalfRows: fromHalfRowsGo,
		prefetchRows: func([]uint16, int, int) {},
	}
}

// setKey names a kernelSet.
type setKey struct {
	v   Variant
	dot bool
}

// kernelSets holds every set this build has, made once at initialisation
// (archKernels fills in each SIMD variant's kernels) and never changed.
var kernelSets = func() map[setKey]*kernelSet {
	sets := map[setKey]*kernelSet{}
	for _, key := range archSets {
		k := goKernels(key.v, key.dot)
		archKernels(k)
		sets[key] = k
	}
	sets[setKey{VariantGo, false}] = goKernels(VariantGo, false)
	return sets
}()

// kernelsFor returns the kernel set of variant v, using the integer dot
// product where dot is set and v has one; nil when this build has no such
// variant. It does not check that the CPU can run it.
func kernelsFor(v Variant, dot bool) *kernelSet {
	if v != VariantAVX512 && v != VariantNEON {
		dot = false
	}
	return kernelSets[setKey{v, dot}]
}

// kernelsOf returns the set of v that this CPU runs best, or an error when
// it cannot run v.
func kernelsOf(v Variant) (*kernelSet, error) {
	for _, ok := range Variants() {
		if ok == v {
			return kernelsFor(v, cpuDot), nil
		}
	}
	return nil, fmt.Errorf("kernel variant %q cannot run on this CPU (it can run %v)", v, Variants())
}
