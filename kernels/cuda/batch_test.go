package cuda

import (
	"slices"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
)

// TestPack: two sequences (a prompt chunk of 3 rows, a decode row whose
// window released its first block) pack into one table array, per row
// offsets and positions; a table too short for its positions is refused.
func TestPack(t *testing.T) {
	var b AttnBatch
	seqs := []kernels.AttnSeq{
		{Blocks: []int32{5, 2, 9}, Pos0: 4, Rows: 3},      // positions 4..6: blocks 0 and 1 of 4
		{Blocks: []int32{-1, 7, 3, 8}, Pos0: 10, Rows: 1}, // position 10: blocks 0..2, the first released
	}
	if err := b.Pack(seqs, 4); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.Tables, []int32{5, 2, -1, 7, 3}) || !slices.Equal(b.Offsets, []int32{0, 0, 0, 2}) ||
		!slices.Equal(b.Last, []int32{4, 5, 6, 10}) {
		t.Fatalf("packed %+v", b)
	}
	if err := b.Pack(seqs[:1], 4); err != nil || len(b.Last) != 3 {
		t.Fatalf("repacked: %+v, %v", b, err)
	}
	seqs[0].Pos0 = 10
	if err := b.Pack(seqs, 4); err == nil || !strings.Contains(err.Error(), "need 4 blocks of 4, its table has 3") {
		t.Errorf("a short table: %v", err)
	}
}
