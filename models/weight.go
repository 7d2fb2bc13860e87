package models

import "github.com/godwit-ai/godwit/models/gguf"

// Weight is a matrix in its stored type: Rows rows (output features) of Cols
// elements (input features), row-major, each row Type.RowSize(Cols) bytes.
// In GGUF terms Cols is Shape[0] and Rows is Shape[1].
type Weight struct {
	Name string
	Type gguf.Type
	Rows int
	Cols int
	Data []byte
}

// Rope describes rotary position embedding as ggml applies it.
type Rope struct {
	Dims        int       // leading dimensions of each head that rotate
	Base        float32   // frequency base θ
	FreqScale   float32   // position scale (1/linear scaling factor); 0 means 1
	FreqFactors []float32 // per-pair divisors of the frequency (rope_freqs), or nil
	Neox        bool      // rotate pairs (i, i+Dims/2) instead of (2i, 2i+1)
	// AttnFactor multiplies every cosine and sine (ggml's mscale: the
	// rotated values are scaled by it); 0 means 1.
	AttnFactor float32
}
