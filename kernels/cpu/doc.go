// Package cpu implements the compute kernels on the CPU in plain Go: half and
// bfloat16 conversion, (de)quantization of the GGUF block types F32, F16, BF16,
// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K, and matrix multiplication
// over them.
//
// The numerics follow llama.cpp's CPU backend rather than exact arithmetic,
// because the goal is to reproduce its outputs: dequantization is bit-for-bit
// ggml's dequantize_row_*, quantization is ggml's reference quantizer, and a
// matrix product first rounds each activation row to the weight type's
// companion format (fp16, bf16, Q8_0, Q8_1 or Q8_K) and then sums integer
// products per block as ggml_vec_dot_* do. Only the order in which float
// partial sums are added differs from ggml's SIMD, repacked and llamafile
// kernels, so a result differs from llama.cpp's by float32 rounding of the
// summed magnitudes (a few parts in 10⁷), never by a different rounding of an
// input.
package cpu
