// NEON row dot products for Q8_0, Q4_0, F32 and F16 weights, adding in
// exactly the order of the plain Go kernels (dot.go), so that they give the
// same bits: an 8-lane accumulator of the x86 kernels is a pair of 4-lane
// registers, a 16-lane one four registers, and each fold adds the same lanes
// in the same order as hsum8, reduce16 and fold64.

#include "textflag.h"

// Instructions Go's arm64 assembler does not know, encoded by hand from the
// Arm ARM (and checked against GNU as); d, n and m are register numbers.

// SMULL Vd.8H, Vn.8B, Vm.8B: signed 16-bit products of the low eight bytes.
#define SMULL_8H(d, n, m) WORD $(0x0e20c000 | (m)<<16 | (n)<<5 | (d))
// SMULL2 Vd.8H, Vn.16B, Vm.16B: the same for the high eight bytes.
#define SMULL2_8H(d, n, m) WORD $(0x4e20c000 | (m)<<16 | (n)<<5 | (d))
// SADDLP Vd.4S, Vn.8H: sums of adjacent pairs of 16-bit lanes, 32 bits each.
#define SADDLP_4S(d, n) WORD $(0x4e602800 | (n)<<5 | (d))
// SDOT Vd.4S, Vn.16B, Vm.16B (FEAT_DotProd): adds to each 32-bit lane the
// products of its four bytes.
#define SDOT_4S(d, n, m) WORD $(0x4e809400 | (m)<<16 | (n)<<5 | (d))
// SCVTF Vd.4S, Vn.4S: int32 lanes to float32.
#define SCVTF_4S(d, n) WORD $(0x4e21d800 | (n)<<5 | (d))
// FADD Vd.4S, Vn.4S, Vm.4S: float32 lanes added, each rounded.
#define FADD_4S(d, n, m) WORD $(0x4e20d400 | (m)<<16 | (n)<<5 | (d))
// FADDP Sd, Vn.2S: lane 0 plus lane 1.
#define FADDP_S(d, n) WORD $(0x7e30d800 | (n)<<5 | (d))
// FCVTL Vd.4S, Vn.4H: fp16 lanes 0-3 to float32 (exact).
#define FCVTL_4S(d, n) WORD $(0x0e217800 | (n)<<5 | (d))
// FCVTL2 Vd.4S, Vn.8H: fp16 lanes 4-7 to float32 (exact).
#define FCVTL2_4S(d, n) WORD $(0x4e217800 | (n)<<5 | (d))

// Folds. Each leaves its sum in F0 and uses V0 and V1.

// HSUM4 adds the lanes l of V0 as (l0+l2) + (l1+l3): hsum4, and the end of
// hsum8.
#define HSUM4 \
	VEXT $8, V0.B16, V0.B16, V1.B16 \
	FADD_4S(0, 0, 1)                \
	FADDP_S(0, 0)

// HSUM8 is hsum8 of the eight lanes in Va (0-3) and Vb (4-7): lane i+4 onto
// lane i, then HSUM4.
#define HSUM8(a, b) \
	FADD_4S(0, a, b) \
	HSUM4

// REDUCE16 is reduce16 of the sixteen lanes in Va, Vb, Vc, Vd (0-3, ...,
// 12-15): lane i+8 onto lane i, then hsum8.
#define REDUCE16(a, b, c, d) \
	FADD_4S(0, a, c) \
	FADD_4S(1, b, d) \
	HSUM8(0, 1)

// FOLD64 is fold64 of the 64 lanes in V16-V31 (lanes 4k..4k+3 in V16+k):
// lane t of the result is (t + 32+t) + (16+t + 48+t), then reduce16. It
// also uses V2-V7.
#define FOLD64 \
	FADD_4S(6, 16, 24) \
	FADD_4S(7, 20, 28) \
	FADD_4S(2, 6, 7)   \
	FADD_4S(6, 17, 25) \
	FADD_4S(7, 21, 29) \
	FADD_4S(3, 6, 7)   \
	FADD_4S(6, 18, 26) \
	FADD_4S(7, 22, 30) \
	FADD_4S(4, 6, 7)   \
	FADD_4S(6, 19, 27) \
	FADD_4S(7, 23, 31) \
	FADD_4S(5, 6, 7)   \
	REDUCE16(2, 3, 4, 5)

#define ZERO4(a, b, c, d) \
	VEOR a.B16, a.B16, a.B16 \
	VEOR b.B16, b.B16, b.B16 \
	VEOR c.B16, c.B16, c.B16 \
	VEOR d.B16, d.B16, d.B16

// The block kernels. Registers: R0 the weight row, R1 the activation levels,
// R2 the activation scales, R3 the blocks left, R4 oneLane, R5 sdot; V0, V1
// the weight levels of a block (elements 0-15, 16-31), V2, V3 its activation
// levels; F10 its scale d; V4-V7 scratch; V16, V17 its integer lanes 0-3,
// 4-7; V30, V31 the eight float lanes; F29 the one-lane sum; V8, V9 Q4_0's
// constants.

// SCALE sets F10 = d_w·d_x, rounded as float32: the weight's fp16 scale at R0
// (exact in float32) times the activation scale at R2, advancing both.
#define SCALE \
	MOVHU.P 2(R0), R6    \
	FMOVS   R6, F10      \
	FCVTHS  F10, F10     \
	FMOVS.P 4(R2), F11   \
	FMULS   F11, F10, F10

// LANES_SMULL sets lane t of V16:V17 to the exact sum of the products of
// elements 4t..4t+3: 16-bit products (exact for any bytes: at most 2¹⁴),
// adjacent pairs added into 32 bits, then adjacent pairs of those.
#define LANES_SMULL \
	SMULL_8H(4, 0, 2)              \
	SMULL2_8H(5, 0, 2)             \
	SMULL_8H(6, 1, 3)              \
	SMULL2_8H(7, 1, 3)             \
	SADDLP_4S(4, 4)                \
	SADDLP_4S(5, 5)                \
	SADDLP_4S(6, 6)                \
	SADDLP_4S(7, 7)                \
	VADDP   V5.S4, V4.S4, V16.S4   \
	VADDP   V7.S4, V6.S4, V17.S4

// LANES_SDOT sets the same lanes with SDOT.
#define LANES_SDOT \
	VEOR V16.B16, V16.B16, V16.B16 \
	VEOR V17.B16, V17.B16, V17.B16 \
	SDOT_4S(16, 0, 2)              \
	SDOT_4S(17, 1, 3)

// ACC8 adds d times each integer lane into its float lane with a fused
// multiply-add (the lane sums are at most 2¹⁶, so exact in float32).
#define ACC8 \
	SCVTF_4S(16, 16)              \
	SCVTF_4S(17, 17)              \
	VDUP  V10.S[0], V18.S4        \
	VFMLA V18.S4, V16.S4, V30.S4  \
	VFMLA V18.S4, V17.S4, V31.S4

// ACC1 adds d times the sum of the eight integer lanes into F29 with a fused
// multiply-add, as the repacked kernels do.
#define ACC1 \
	VADD    V17.S4, V16.S4, V16.S4 \
	VADDV   V16.S4, V16            \
	VMOV    V16.S[0], R6           \
	SCVTFWS R6, F16                \
	FMADDS  F10, F29, F16, F29

// BLOCKS runs the block loop; LOAD reads one weight block's levels (after
// its scale) into V0, V1 and advances R0.
#define BLOCKS(LOAD) \
	MOVD  w_base+0(FP), R0          \
	MOVD  x_base+24(FP), R1         \
	MOVD  dx_base+48(FP), R2        \
	MOVD  dx_len+56(FP), R3         \
	MOVBU oneLane+72(FP), R4        \
	MOVBU sdot+73(FP), R5           \
	VMOVI $15, V8.B16               \
	VMOVI $8, V9.B16                \
	VEOR  V29.B16, V29.B16, V29.B16 \
	VEOR  V30.B16, V30.B16, V30.B16 \
	VEOR  V31.B16, V31.B16, V31.B16 \
	CBZ   R3, done                  \
loop:                               \
	SCALE                           \
	LOAD                            \
	VLD1.P 32(R1), [V2.B16, V3.B16] \
	CBNZ  R5, sdot                  \
	LANES_SMULL                     \
	B     lanes                     \
sdot:                               \
	LANES_SDOT                      \
lanes:                              \
	CBNZ  R4, onelane               \
	ACC8                            \
	B     next                      \
onelane:                            \
	ACC1                            \
next:                               \
	SUB   $1, R3                    \
	CBNZ  R3, loop                  \
done:                               \
	CBNZ  R4, ret1                  \
	HSUM8(30, 31)                   \
	FMOVS F0, ret+80(FP)            \
	RET                             \
ret1:                               \
	FMOVS F29, ret+80(FP)           \
	RET

// LOAD_Q8_0 reads the 32 levels of a Q8_0 block.
#define LOAD_Q8_0 \
	VLD1.P 32(R0), [V0.B16, V1.B16]

// LOAD_Q4_0 unpacks the 16 bytes of a Q4_0 block: low nibbles are elements
// 0-15, high nibbles 16-31, each less 8 (V8 holds 15s, V9 8s).
#define LOAD_Q4_0 \
	VLD1.P 16(R0), [V1.B16]        \
	VAND   V8.B16, V1.B16, V0.B16  \
	VUSHR  $4, V1.B16, V1.B16      \
	VSUB   V9.B16, V0.B16, V0.B16  \
	VSUB   V9.B16, V1.B16, V1.B16

// func dotQ8_0NEON(w []byte, x []int8, dx []float32, oneLane, sdot bool) float32
TEXT ·dotQ8_0NEON(SB), NOSPLIT, $0-84
	BLOCKS(LOAD_Q8_0)

// func dotQ4_0NEON(w []byte, x []int8, dx []float32, oneLane, sdot bool) float32
TEXT ·dotQ4_0NEON(SB), NOSPLIT, $0-84
	BLOCKS(LOAD_Q4_0)

// The float kernels. Registers: R0 the weight row, R1 x, R3 the groups of
// 16 (lanes16) or 64 (vecDot) elements left, R4 the elements after them;
// V0-V3 sixteen weights as float32, V4-V7 sixteen of x; the accumulators are
// V16-V19 (lanes16) or V16-V31 (vecDot).

// LOAD_F32 reads sixteen F32 weights.
#define LOAD_F32 \
	VLD1.P 64(R0), [V0.S4, V1.S4, V2.S4, V3.S4]

// LOAD_F16 reads sixteen F16 weights and widens them to float32.
#define LOAD_F16 \
	VLD1.P 32(R0), [V8.H8, V9.H8] \
	FCVTL_4S(0, 8)                \
	FCVTL2_4S(1, 8)               \
	FCVTL_4S(2, 9)                \
	FCVTL2_4S(3, 9)

// FMA16 reads sixteen of x and adds their products with V0-V3 into the
// accumulators a, b, c, e by fused multiply-adds.
#define FMA16(LOAD, a, b, c, e) \
	LOAD                                        \
	VLD1.P 64(R1), [V4.S4, V5.S4, V6.S4, V7.S4] \
	VFMLA  V4.S4, V0.S4, a.S4                   \
	VFMLA  V5.S4, V1.S4, b.S4                   \
	VFMLA  V6.S4, V2.S4, c.S4                   \
	VFMLA  V7.S4, V3.S4, e.S4

// LANES16 is dotLanes16: element j into lane j mod 16, then reduce16.
#define LANES16(LOAD) \
	MOVD w_base+0(FP), R0           \
	MOVD x_base+24(FP), R1          \
	MOVD x_len+32(FP), R3           \
	LSR  $4, R3                     \
	ZERO4(V16, V17, V18, V19)       \
	CBZ  R3, done                   \
loop:                               \
	FMA16(LOAD, V16, V17, V18, V19) \
	SUB  $1, R3                     \
	CBNZ R3, loop                   \
done:                               \
	REDUCE16(16, 17, 18, 19)

// VECDOT64 is vecDot64: element j of each 64 into lane j mod 64, then
// fold64, leaving the sum in F0 and the remaining element count in R4.
#define VECDOT64(LOAD) \
	MOVD w_base+0(FP), R0           \
	MOVD x_base+24(FP), R1          \
	MOVD x_len+32(FP), R3           \
	AND  $63, R3, R4                \
	LSR  $6, R3                     \
	ZERO4(V16, V17, V18, V19)       \
	ZERO4(V20, V21, V22, V23)       \
	ZERO4(V24, V25, V26, V27)       \
	ZERO4(V28, V29, V30, V31)       \
	CBZ  R3, folds                  \
loop:                               \
	FMA16(LOAD, V16, V17, V18, V19) \
	FMA16(LOAD, V20, V21, V22, V23) \
	FMA16(LOAD, V24, V25, V26, V27) \
	FMA16(LOAD, V28, V29, V30, V31) \
	SUB  $1, R3                     \
	CBNZ R3, loop                   \
folds:                              \
	FOLD64

// func lanes16F32NEON(w []byte, x []float32) float32
TEXT ·lanes16F32NEON(SB), NOSPLIT, $0-52
	LANES16(LOAD_F32)
	FMOVS F0, ret+48(FP)
	RET

// func lanes16F16NEON(w []byte, x []float32) float32
TEXT ·lanes16F16NEON(SB), NOSPLIT, $0-52
	LANES16(LOAD_F16)
	FMOVS F0, ret+48(FP)
	RET

// func vecDotF32NEON(w []byte, x []float32) float32
TEXT ·vecDotF32NEON(SB), NOSPLIT, $0-52
	VECDOT64(LOAD_F32)
	CBZ R4, out

	// The rest one by one, each product added to the sum by a fused
	// multiply-add, as vecDotF32.
tail:
	FMOVS.P 4(R0), F1
	FMOVS.P 4(R1), F2
	FMADDS  F2, F0, F1, F0
	SUB     $1, R4
	CBNZ    R4, tail

out:
	FMOVS F0, ret+48(FP)
	RET

// func vecDotF16NEON(w []byte, x []float32) float32
TEXT ·vecDotF16NEON(SB), NOSPLIT, $0-52
	VECDOT64(LOAD_F16)

	// The rest added in float64, each product rounded to float32 first (it
	// is exact: two fp16 values), as vecDotF16.
	FCVTSD F0, F0
	CBZ    R4, out

tail:
	MOVHU.P 2(R0), R6
	FMOVS   R6, F1
	FCVTHS  F1, F1
	FMOVS.P 4(R1), F2
	FMULS   F2, F1, F1
	FCVTSD  F1, F1
	FADDD   F1, F0, F0
	SUB     $1, R4
	CBNZ    R4, tail

out:
	FCVTDS F0, F0
	FMOVS  F0, ret+48(FP)
	RET
