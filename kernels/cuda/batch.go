package cuda

import (
	"fmt"

	"github.com/godwit-ai/godwit/kernels"
)

// AttnBatch is a batch's attention inputs in the form the attention
// kernels take them, small host arrays to copy to the device each step:
// every sequence's block table one after another, and for each query row
// the offset of its sequence's table and its position.
type AttnBatch struct {
	Tables  []int32
	Offsets []int32 // per query row
	Last    []int32 // per query row: its position, the last it attends to
}

// Pack fills b from seqs (as kernels.Backend.AttentionBatch takes them),
// reusing its slices: each table is cut to the blocks its positions use.
// Released blocks (−1, before a sliding window) pass through; the kernels
// do not read them.
func (b *AttnBatch) Pack(seqs []kernels.AttnSeq, blockSize int) error {
	b.Tables, b.Offsets, b.Last = b.Tables[:0], b.Offsets[:0], b.Last[:0]
	for i, s := range seqs {
		n := s.Pos0 + s.Rows
		used := (n + blockSize - 1) / blockSize
		if s.Rows < 0 || s.Pos0 < 0 || used > len(s.Blocks) {
			return fmt.Errorf("cuda: sequence %d: %d rows from position %d need %d blocks of %d, its table has %d",
				i, s.Rows, s.Pos0, used, blockSize, len(s.Blocks))
		}
		off := int32(len(b.Tables))
		b.Tables = append(b.Tables, s.Blocks[:used]...)
		for r := range s.Rows {
			b.Offsets = append(b.Offsets, off)
			b.Last = append(b.Last, int32(s.Pos0+r))
		}
	}
	return nil
}
