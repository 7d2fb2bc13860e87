package cuda

import (
	"embed"
	"fmt"
)

// The PTX modules, ptx/<name>.cu compiled by `make ptx`:
//   - elementwise: add_f32, rmsnorm_f32, silu_mul_f32, get_rows_f32,
//     get_rows_f16, rope_f32
//   - matmul: matmul_f32, matmul_f16, matmul_q8_0
//   - attention: attention_f32 (paged, sliding window, soft cap)
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
