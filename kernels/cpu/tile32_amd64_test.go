package cpu

import (
	"testing"

	"github.com/godwit-ai/godwit/models/gguf"
)

// TestPackActsAsm checks the assembly packer of one-lane Q8_0 activation
// groups against packActs in Go, byte for byte, full and partial groups.
func TestPackActsAsm(t *testing.T) {
	t.Parallel()
	if best().variant != VariantAVX512 || !best().dot {
		t.Skip("no AVX-512 VNNI")
	}
	plain := *q8OneTile
	plain.packGroup = nil
	for _, cols := range []int{32, 96, 768} {
		for n := 1; n <= 9; n++ {
			s := Scratch{k: best()}
			acts := s.quantizeActs(gguf.Q8_0, randomData("gauss", n*cols, uint64(n*cols)), cols, n)
			got := q8OneTile.packActs(nil, acts)
			want := plain.packActs(nil, acts)
			if string(got) != string(want) {
				t.Errorf("cols=%d rows=%d: the assembly packs differently", cols, n)
			}
		}
	}
}
