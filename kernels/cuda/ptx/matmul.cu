// Matrix products of weights in their stored type with f32 activations:
// out[i*rows + r] = sum over c of w[r][c] * x[i*cols + c], for i < n. One
// block of 128 threads per (row r, activation i): a plain GEMV, the oracle
// for faster kernels (issue 18).
#include "godwit.cuh"

// matmul_row is one (row, activation) of a product whose weight element c
// of row r is weight(r, c).
template <typename Weight>
static __device__ __forceinline__ void matmul_row(float *out, Weight weight, const float *x, int rows, int cols) {
	__shared__ float scratch[32];
	int r = blockIdx.x, i = blockIdx.y;
	const float *xi = x + (long)i * cols;
	float sum = 0.0f;
	for (int c = threadIdx.x; c < cols; c += blockDim.x) {
		sum += weight(r, c) * xi[c];
	}
	sum = block_sum(sum, scratch);
	if (threadIdx.x == 0) {
		out[(long)i * rows + r] = sum;
	}
}

extern "C" __global__ void matmul_f32(float *out, const float *w, const float *x, int rows, int cols) {
	matmul_row(out, [=](int r, int c) { return w[(long)r * cols + c]; }, x, rows, cols);
}

extern "C" __global__ void matmul_f16(float *out, const unsigned short *w, const float *x, int rows, int cols) {
	matmul_row(out, [=](int r, int c) { return half_to_float(w[(long)r * cols + c]); }, x, rows, cols);
}

// matmul_q8_0: rows of cols/32 blocks of 34 bytes (an fp16 scale d, then 32
// int8 values q): w[r][c] = d * q.
extern "C" __global__ void matmul_q8_0(float *out, const unsigned char *w, const float *x, int rows, int cols) {
	matmul_row(out, [=](int r, int c) {
		const unsigned char *blk = w + ((long)r * (cols / 32) + c / 32) * 34;
		float d = half_to_float((unsigned short)(blk[0] | blk[1] << 8));
		return d * (float)(signed char)blk[2 + c % 32];
	}, x, rows, cols);
}
