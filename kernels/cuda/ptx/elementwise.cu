// Row-wise and elementwise operations on f32 activations: residual add,
// RMSNorm, SwiGLU's gate, RoPE and greedy sampling's argmax.
#include "godwit.cuh"

// add_f32: dst[i] += src[i] for i < n.
extern "C" __global__ void add_f32(float *dst, const float *src, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) {
		dst[i] += src[i];
	}
}

// rmsnorm_f32: one block per row of dim values: out = x / sqrt(mean(x²) + eps) * w.
// blockDim.x is a multiple of 32, at most 1024.
extern "C" __global__ void rmsnorm_f32(float *out, const float *x, const float *w, int dim, float eps) {
	__shared__ float scratch[32];
	const float *row = x + (long)blockIdx.x * dim;
	float *o = out + (long)blockIdx.x * dim;
	float sum = 0.0f;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		sum += row[i] * row[i];
	}
	sum = block_sum(sum, scratch);
	float scale = 1.0f / __builtin_sqrtf(sum / dim + eps);
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		o[i] = row[i] * scale * w[i];
	}
}

// silu_mul_f32: gate[i] = silu(gate[i]) * up[i] for i < n (SwiGLU).
extern "C" __global__ void silu_mul_f32(float *gate, const float *up, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) {
		float g = gate[i];
		gate[i] = g / (1.0f + exp_approx(-g)) * up[i];
	}
}

// rope_f32 rotates, in place, the heads of row blockIdx.x of x (heads ×
// head_dim values) at position pos[blockIdx.x], from the host's table of
// that position: dims values in a and b per position, laid out as the CPU
// backend's ropeTable (normal: pairs (2k, 2k+1); neox: pairs (k, k+dims/2)).
// A rotated value is fma(x0, a, x1·b), as on the CPU: the same bits.
extern "C" __global__ void rope_f32(float *x, const int *pos, const float *a, const float *b, int heads, int head_dim, int dims, int neox) {
	float *row = x + (long)blockIdx.x * heads * head_dim;
	const float *pa = a + (long)pos[blockIdx.x] * dims, *pb = b + (long)pos[blockIdx.x] * dims;
	int half = dims / 2;
	for (int t = threadIdx.x; t < heads * half; t += blockDim.x) {
		int h = t / half, k = t % half;
		int j0 = neox ? k : 2 * k, j1 = neox ? k + half : 2 * k + 1;
		float *hx = row + h * head_dim;
		float x0 = hx[j0], x1 = hx[j1];
		hx[j0] = __builtin_fmaf(x0, pa[j0], x1 * pb[j0]);
		hx[j1] = __builtin_fmaf(x0, pa[j1], x1 * pb[j1]);
	}
}

// argmax_f32: out[blockIdx.x] is the index of the largest of the n values of
// row blockIdx.x of x, the lowest on ties, or -1 when every value is -Inf
// or NaN: greedy sampling, as the CPU's argmax does it.
extern "C" __global__ void argmax_f32(int *out, const float *x, int n) {
	__shared__ float best_v[32];
	__shared__ int best_i[32];
	const float *row = x + (long)blockIdx.x * n;
	float bv = -__builtin_inff();
	int bi = -1;
	for (int i = threadIdx.x; i < n; i += blockDim.x) {
		if (row[i] > bv) { // NaN never is
			bv = row[i];
			bi = i;
		}
	}
	// A thread's candidates come in increasing index: its first best is
	// its lowest. Across threads the larger value wins, the lower index on
	// a tie (-1 loses every tie).
	for (int m = 16; m > 0; m >>= 1) {
		float ov = shfl_xor(bv, m);
		int oi = __nvvm_shfl_sync_bfly_i32(0xffffffffu, bi, m, 0x1f);
		if (ov > bv || (ov == bv && oi >= 0 && (bi < 0 || oi < bi))) {
			bv = ov;
			bi = oi;
		}
	}
	int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
	if (lane == 0) {
		best_v[warp] = bv;
		best_i[warp] = bi;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		for (int w = 1; w < (int)(blockDim.x / 32); w++) {
			if (best_v[w] > best_v[0] || (best_v[w] == best_v[0] && best_i[w] >= 0 && (best_i[0] < 0 || best_i[w] < best_i[0]))) {
				best_v[0] = best_v[w];
				best_i[0] = best_i[w];
			}
		}
		out[blockIdx.x] = best_v[0] > -__builtin_inff() ? best_i[0] : -1;
	}
}
