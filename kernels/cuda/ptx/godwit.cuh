// godwit.cuh: what godwit's kernels need of CUDA C, with no CUDA SDK:
// clang's own attributes and builtins (clang-19 -x cuda -nocudainc).
#pragma once

#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __forceinline__ __inline__ __attribute__((always_inline))

#include <__clang_cuda_builtin_vars.h>

// __syncthreads is one of clang's CUDA builtins already.

// shfl_xor is one butterfly step of a warp-wide reduction.
static __device__ __forceinline__ float shfl_xor(float v, int lane_mask) {
	return __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, lane_mask, 0x1f);
}

// half_to_float widens an fp16 value stored as its bits.
static __device__ __forceinline__ float half_to_float(unsigned short h) {
	return (float)__builtin_bit_cast(_Float16, h);
}

// exp_approx is e^x through the hardware's 2^x (ex2.approx), within a few
// ulps: the GPU's results are checked against the CPU's within a tolerance,
// not bit for bit.
static __device__ __forceinline__ float exp_approx(float x) {
	return __nvvm_ex2_approx_f(x * 1.4426950408889634f);
}

// Sum and Max are the reductions of warp_reduce and block_reduce.
struct Sum {
	static __device__ __forceinline__ float apply(float a, float b) { return a + b; }
	static __device__ __forceinline__ float identity() { return 0.0f; }
};
struct Max {
	static __device__ __forceinline__ float apply(float a, float b) { return __builtin_fmaxf(a, b); }
	static __device__ __forceinline__ float identity() { return -__builtin_inff(); }
};

// warp_reduce reduces v over the 32 lanes of a warp; every lane gets the
// result.
template <typename Op> static __device__ __forceinline__ float warp_reduce(float v) {
	for (int m = 16; m > 0; m >>= 1) {
		v = Op::apply(v, shfl_xor(v, m));
	}
	return v;
}

static __device__ __forceinline__ float warp_sum(float v) { return warp_reduce<Sum>(v); }

// block_reduce reduces v over the block (blockDim.x a multiple of 32, at
// most 1024) through scratch[32]; every thread gets the result.
template <typename Op> static __device__ __forceinline__ float block_reduce(float v, float *scratch) {
	int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
	v = warp_reduce<Op>(v);
	__syncthreads();
	if (lane == 0) {
		scratch[warp] = v;
	}
	__syncthreads();
	v = lane < (int)(blockDim.x / 32) ? scratch[lane] : Op::identity();
	return warp_reduce<Op>(v);
}

static __device__ __forceinline__ float block_sum(float v, float *scratch) { return block_reduce<Sum>(v, scratch); }
static __device__ __forceinline__ float block_max(float v, float *scratch) { return block_reduce<Max>(v, scratch); }
