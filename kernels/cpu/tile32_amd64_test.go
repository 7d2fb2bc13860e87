package cpu

import (
	"testing"

	"github.com/godwit-ai/godwit/models/gguf"
)

// TestPackActsAsm checks the assembly packer of one-lane Q8_0 activation
// groups against packActs in Go, byte for byte, full and partial groups.
func TestPackActsAsm(t *testing.T) {
	if !HasVNNI || CurrentVariant() != VariantAVX512 {
		t.Skip("no AVX-512 VNNI")
	}
	plain := *q8OneTile
	plain.packGroup = nil
	for _, cols := range []int{32, 96, 768} {
		for n := 1; n <= 9; n++ {
			var s Scratch
			acts := s.quantizeActs(gguf.Q8_0, randomData("gauss", n*cols, uint64(n*cols)), cols, n)
			got := q8OneTile.packActs(nil, acts)
			want := plain.packActs(nil, acts)
			if string(got) != string(want) {
				t.Errorf("cols=%d rows=%d: the assembly packs differently", cols, n)
			}
		}
	}
}
