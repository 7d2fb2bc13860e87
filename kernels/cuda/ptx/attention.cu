// Paged attention of one query row per block (blockIdx.x: row, blockIdx.y:
// query head) over an f32 or fp16 KV cache laid out as kernels.KVCache says:
// position s of block b at (b*block_size + s)*width in k and v, KV head g at
// offset g*head_dim. Row i attends to positions lo..last[i] (lo: the start
// of its sliding window, 0 without one) through its sequence's block table
// (tables + table_off[i], the sequence of row i). Scores go to dynamic
// shared memory (last+1 floats), then softmax, then the value sum: a plain
// kernel, the oracle for a flash-decoding one.
#include "godwit.cuh"

// kv_at reads element at of an f32 or an fp16 cache.
static __device__ __forceinline__ float kv_at(const float *c, long at) { return c[at]; }
static __device__ __forceinline__ float kv_at(const unsigned short *c, long at) { return half_to_float(c[at]); }

template <typename KV>
static __device__ __forceinline__ void attention(float *out, const float *q, const KV *k, const KV *v,
                                                 const int *tables, const int *table_off, const int *last,
                                                 int heads, int kv_heads, int head_dim, int block_size,
                                                 float scale, float soft_cap, int window) {
	extern __shared__ float scores[];
	__shared__ float scratch[32];
	int i = blockIdx.x, h = blockIdx.y;
	int g = h / (heads / kv_heads), width = kv_heads * head_dim;
	int n = last[i] + 1;
	int lo = window > 0 && n > window ? n - window : 0;
	const int *table = tables + table_off[i];
	const float *qh = q + ((long)i * heads + h) * head_dim;
	// Scores: one warp per position at a time, its lanes across head_dim.
	int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
	for (int p = lo + warp; p < n; p += warps) {
		long at = ((long)table[p / block_size] * block_size + p % block_size) * width + g * head_dim;
		float s = 0.0f;
		for (int d = lane; d < head_dim; d += 32) {
			s += qh[d] * kv_at(k, at + d);
		}
		s = warp_sum(s) * scale;
		if (soft_cap > 0.0f) {
			// soft_cap * tanh(s/soft_cap), as 1 - 2/(e^2|y| + 1), which
			// does not overflow.
			float y = s / soft_cap;
			float t = exp_approx(2.0f * __builtin_fabsf(y));
			s = soft_cap * __builtin_copysignf(1.0f - 2.0f / (t + 1.0f), y);
		}
		if (lane == 0) {
			scores[p - lo] = s;
		}
	}
	__syncthreads();
	float mx = -__builtin_inff();
	for (int p = threadIdx.x; p < n - lo; p += blockDim.x) {
		mx = __builtin_fmaxf(mx, scores[p]);
	}
	mx = block_max(mx, scratch);
	float sum = 0.0f;
	for (int p = threadIdx.x; p < n - lo; p += blockDim.x) {
		float e = exp_approx(scores[p] - mx);
		scores[p] = e;
		sum += e;
	}
	sum = block_sum(sum, scratch);
	__syncthreads();
	float inv = 1.0f / sum;
	float *oh = out + ((long)i * heads + h) * head_dim;
	for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
		float acc = 0.0f;
		for (int p = lo; p < n; p++) {
			long at = ((long)table[p / block_size] * block_size + p % block_size) * width + g * head_dim;
			acc += scores[p - lo] * kv_at(v, at + d);
		}
		oh[d] = acc * inv;
	}
}

#define ATTENTION(name, KV)                                                                                       \
	extern "C" __global__ void name(float *out, const float *q, const KV *k, const KV *v, const int *tables,      \
	                                const int *table_off, const int *last, int heads, int kv_heads, int head_dim, \
	                                int block_size, float scale, float soft_cap, int window) {                    \
		attention(out, q, k, v, tables, table_off, last, heads, kv_heads, head_dim, block_size, scale, soft_cap, \
		          window);                                                                                     \
	}

ATTENTION(attention_f32, float)
ATTENTION(attention_f16, unsigned short)
