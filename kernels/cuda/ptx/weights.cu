// Weights in their stored GGUF type, read element by element: the matrix
// product out[i*rows + r] = sum over c of w[r][c] * x[i*cols + c] (i < n; a
// plain GEMV, one block of threads per (row, activation), the oracle for
// faster kernels) and the embedding lookup. Each type is a struct whose at
// gives element j of a block, laid out as ggml stores it.
#include "godwit.cuh"

typedef unsigned char u8;

static __device__ __forceinline__ float f16_at(const u8 *p) { return half_to_float((unsigned short)(p[0] | p[1] << 8)); }

struct F32 {
	static constexpr int block = 1, bytes = 4;
	static __device__ __forceinline__ float at(const u8 *b, int) { return *(const float *)b; }
};
struct F16 {
	static constexpr int block = 1, bytes = 2;
	static __device__ __forceinline__ float at(const u8 *b, int) { return f16_at(b); }
};
struct BF16 {
	static constexpr int block = 1, bytes = 2;
	static __device__ __forceinline__ float at(const u8 *b, int) {
		return __builtin_bit_cast(float, (unsigned)(b[0] | b[1] << 8) << 16);
	}
};
// Q8_0: d (fp16), 32 int8.
struct Q8_0 {
	static constexpr int block = 32, bytes = 34;
	static __device__ __forceinline__ float at(const u8 *b, int j) { return f16_at(b) * (float)(signed char)b[2 + j]; }
};
// Q4_0: d, 16 bytes of nibbles: element j < 16 in the low nibble of byte j,
// j ≥ 16 in the high nibble of byte j−16; value d·(q − 8).
struct Q4_0 {
	static constexpr int block = 32, bytes = 18;
	static __device__ __forceinline__ float at(const u8 *b, int j) {
		int q = j < 16 ? b[2 + j] & 15 : b[2 + j - 16] >> 4;
		return f16_at(b) * (float)(q - 8);
	}
};
// Q4_1: d, m, nibbles as Q4_0; value d·q + m.
struct Q4_1 {
	static constexpr int block = 32, bytes = 20;
	static __device__ __forceinline__ float at(const u8 *b, int j) {
		int q = j < 16 ? b[4 + j] & 15 : b[4 + j - 16] >> 4;
		return f16_at(b) * (float)q + f16_at(b + 2);
	}
};
// q5 is the 5-bit value j of a Q5_0/Q5_1 block: 4 bytes of fifth bits
// (bit j), then nibbles as Q4_0.
static __device__ __forceinline__ int q5(const u8 *qh, const u8 *qs, int j) {
	unsigned h = qh[0] | qh[1] << 8 | qh[2] << 16 | (unsigned)qh[3] << 24;
	int lo = j < 16 ? qs[j] & 15 : qs[j - 16] >> 4;
	return lo | (int)((h >> j) & 1) << 4;
}
// Q5_0: d, qh, qs; value d·(q − 16).
struct Q5_0 {
	static constexpr int block = 32, bytes = 22;
	static __device__ __forceinline__ float at(const u8 *b, int j) { return f16_at(b) * (float)(q5(b + 2, b + 6, j) - 16); }
};
// Q5_1: d, m, qh, qs; value d·q + m.
struct Q5_1 {
	static constexpr int block = 32, bytes = 24;
	static __device__ __forceinline__ float at(const u8 *b, int j) {
		return f16_at(b) * (float)q5(b + 4, b + 8, j) + f16_at(b + 2);
	}
};
// scale_min_k4 unpacks the 6-bit scale and min of sub-block s (0..7) of a
// Q4_K/Q5_K block's 12 scale bytes.
static __device__ __forceinline__ void scale_min_k4(int s, const u8 *q, int *sc, int *m) {
	if (s < 4) {
		*sc = q[s] & 63;
		*m = q[s + 4] & 63;
	} else {
		*sc = (q[s + 4] & 15) | (q[s - 4] >> 6) << 4;
		*m = (q[s + 4] >> 4) | (q[s] >> 6) << 4;
	}
}
// Q4_K: d, dmin, 12 scale bytes, 128 bytes of nibbles; in each 64 values
// (group g), the first 32 are the low nibbles of bytes 32g.. (sub-block
// 2g), the next 32 their high nibbles (sub-block 2g+1); value
// d·sc·q − dmin·m.
struct Q4_K {
	static constexpr int block = 256, bytes = 144;
	static __device__ __forceinline__ float at(const u8 *b, int j) {
		int g = j / 64, hi = j % 64 / 32, l = j % 32, sc, m;
		scale_min_k4(2 * g + hi, b + 4, &sc, &m);
		int q = b[16 + 32 * g + l] >> (4 * hi) & 15;
		return f16_at(b) * (float)sc * (float)q - f16_at(b + 2) * (float)m;
	}
};
// Q5_K: Q4_K's layout with 32 bytes of fifth bits before the nibbles:
// bit 2g+hi of byte l.
struct Q5_K {
	static constexpr int block = 256, bytes = 176;
	static __device__ __forceinline__ float at(const u8 *b, int j) {
		int g = j / 64, hi = j % 64 / 32, l = j % 32, sc, m;
		scale_min_k4(2 * g + hi, b + 4, &sc, &m);
		int q = (b[48 + 32 * g + l] >> (4 * hi) & 15) | (b[16 + l] >> (2 * g + hi) & 1) << 4;
		return f16_at(b) * (float)sc * (float)q - f16_at(b + 2) * (float)m;
	}
};
// Q6_K: 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales, d;
// in each half of 128 values, quarter t (32 values) takes the low (t < 2)
// or high nibbles of bytes 64n + 32(t mod 2) + l, bits 2t of high byte
// 32n + l, and scale 8n + l/16 + 2t; value d·scale·(q − 32).
struct Q6_K {
	static constexpr int block = 256, bytes = 210;
	static __device__ __forceinline__ float at(const u8 *b, int j) {
		int n = j / 128, t = j % 128 / 32, l = j % 32;
		int lo = b[64 * n + 32 * (t & 1) + l] >> (4 * (t >> 1)) & 15;
		int q = (lo | (b[128 + 32 * n + l] >> (2 * t) & 3) << 4) - 32;
		return f16_at(b + 208) * (float)(signed char)b[192 + 8 * n + l / 16 + 2 * t] * (float)q;
	}
};

// weight is element c of row r of a cols-wide matrix of type T.
template <typename T> static __device__ __forceinline__ float weight(const u8 *w, int cols, int r, int c) {
	return T::at(w + ((long)r * (cols / T::block) + c / T::block) * T::bytes, c % T::block);
}

template <typename T> static __device__ __forceinline__ void matmul(float *out, const u8 *w, const float *x, int rows, int cols) {
	__shared__ float scratch[32];
	int r = blockIdx.x, i = blockIdx.y;
	const float *xi = x + (long)i * cols;
	float sum = 0.0f;
	for (int c = threadIdx.x; c < cols; c += blockDim.x) {
		sum += weight<T>(w, cols, r, c) * xi[c];
	}
	sum = block_sum(sum, scratch);
	if (threadIdx.x == 0) {
		out[(long)i * rows + r] = sum;
	}
}

// get_rows: row blockIdx.x of out is row ids[blockIdx.x] of w, as f32.
template <typename T> static __device__ __forceinline__ void get_rows(float *out, const u8 *w, const int *ids, int cols) {
	float *dst = out + (long)blockIdx.x * cols;
	for (int c = threadIdx.x; c < cols; c += blockDim.x) {
		dst[c] = weight<T>(w, cols, ids[blockIdx.x], c);
	}
}

#define WEIGHT_KERNELS(name, T)                                                                                    \
	extern "C" __global__ void matmul_##name(float *out, const u8 *w, const float *x, int rows, int cols) {          \
		matmul<T>(out, w, x, rows, cols);                                                                        \
	}                                                                                                            \
	extern "C" __global__ void get_rows_##name(float *out, const u8 *w, const int *ids, int cols) {                  \
		get_rows<T>(out, w, ids, cols);                                                                          \
	}

WEIGHT_KERNELS(f32, F32)
WEIGHT_KERNELS(f16, F16)
WEIGHT_KERNELS(bf16, BF16)
WEIGHT_KERNELS(q8_0, Q8_0)
WEIGHT_KERNELS(q4_0, Q4_0)
WEIGHT_KERNELS(q4_1, Q4_1)
WEIGHT_KERNELS(q5_0, Q5_0)
WEIGHT_KERNELS(q5_1, Q5_1)
WEIGHT_KERNELS(q4_k, Q4_K)
WEIGHT_KERNELS(q5_k, Q5_K)
WEIGHT_KERNELS(q6_k, Q6_K)
