package cuda

import (
	"embed"
	"fmt"
)

// The PTX modules, ptx/<name>.cu compiled by `make ptx`:
//   - elementwise: add_f32, rmsnorm_f32, silu_mul_f32, rope_f32, argmax_f32
//   - weights: matmul_<type> and get_rows_<type> for every GGUF type godwit
//     reads (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)
//   - attention: attention_f32 and attention_f16, over f32 and fp16 caches
//     (paged, sliding window, soft cap)
//
//go:embed ptx/*.ptx
var ptxFiles embed.FS

// PTX is the embedded module name's PTX.
func PTX(name string) ([]byte, error) {
	b, err := ptxFiles.ReadFile("ptx/" + name + ".ptx")
	if err != nil {
		return nil, fmt.Errorf("cuda: no PTX module %q", name)
	}
	return b, nil
}
