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
