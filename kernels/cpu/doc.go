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
// products per block as ggml_vec_dot_* do. Beyond that, every float operation
// happens in the order, and with the FMAs, of the kernels llama.cpp runs when
// built natively for an AVX2/AVX512F x86 CPU (llamafile's tinyBLAS, the
// repacked q4_0/q4_K kernels, ggml_vec_dot_* with their lane folds, the vector
// expf of softmax and SwiGLU, glibc's sinf/cosf for RoPE and tanhf for
// Gemma's soft caps and fp16 GELU table), written out in
// scalar Go. A value on a rounding boundary of the 8-bit activation
// quantization then lands on the same side as in llama.cpp, and the logits of
// the random-weight test models come out bit for bit the same.
package cpu
