package cuda

import _ "embed"

// ElementwisePTX is ptx/elementwise.cu compiled by `make ptx`: add_f32 and
// rmsnorm_f32.
//
//go:embed ptx/elementwise.ptx
var ElementwisePTX []byte
