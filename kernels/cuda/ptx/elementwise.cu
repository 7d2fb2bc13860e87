// Row-wise and elementwise operations on f32 activations.
#include "godwit.cuh"

// add_f32: dst[i] += src[i] for i < n.
extern "C" __global__ void add_f32(float *dst, const float *src, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) {
		dst[i] += src[i];
	}
}

// warp_sum adds v over the 32 lanes of a warp; every lane gets the sum.
static __device__ __forceinline__ float warp_sum(float v) {
	for (int m = 16; m > 0; m >>= 1) {
		v += shfl_xor(v, m);
	}
	return v;
}

// rmsnorm_f32: one block per row of dim values: out = x / sqrt(mean(x²) + eps) * w.
// blockDim.x is a multiple of 32, at most 1024.
extern "C" __global__ void rmsnorm_f32(float *out, const float *x, const float *w, int dim, float eps) {
	__shared__ float partial[32];
	const float *row = x + (long)blockIdx.x * dim;
	float *o = out + (long)blockIdx.x * dim;
	float sum = 0.0f;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		sum += row[i] * row[i];
	}
	sum = warp_sum(sum);
	int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
	if (lane == 0) {
		partial[warp] = sum;
	}
	__syncthreads();
	if (warp == 0) {
		sum = lane < (int)(blockDim.x / 32) ? partial[lane] : 0.0f;
		sum = warp_sum(sum);
		if (lane == 0) {
			partial[0] = sum;
		}
	}
	__syncthreads();
	float scale = 1.0f / __builtin_sqrtf(partial[0] / dim + eps);
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		o[i] = row[i] * scale * w[i];
	}
}
