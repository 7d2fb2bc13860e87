package engine

import (
	"fmt"

	"github.com/godwit-ai/godwit/kernels"
)

// KVCache holds one sequence's keys and values for every layer. Positions
// are appended by Extend and filled by Put during the forward pass;
// attention reads them where they lie, in Storage at the block table Table.
type KVCache interface {
	// Len is the number of positions held.
	Len() int
	// Extend adds n positions; it fails when the cache cannot hold them.
	Extend(n int) error
	// Truncate drops every position from n on.
	Truncate(n int)
	// Put stores the key and value rows of one position in one layer.
	Put(layer, pos int, k, v []float32)
	// Storage is the storage the positions are in, which sequences
	// batched in one Step share.
	Storage() *kernels.KVCache
	// Table is the block table of layer's positions, valid until the
	// next Extend, Truncate or Reserve.
	Table(layer int) []int32
}

// FlatCache is a KVCache in contiguous f32 slices per layer, grown as the
// sequence grows up to a maximum length: one block of that length.
type FlatCache struct {
	n     int
	kv    kernels.KVCache // its K32 and V32 hold the positions held
	table [1]int32        // its one block, 0
}

// NewFlatCache returns an empty cache for layers layers of rows width floats
// wide, holding at most maxLen positions.
func NewFlatCache(layers, width, maxLen int) *FlatCache {
	return &FlatCache{kv: kernels.KVCache{Type: kernels.KVF32, BlockSize: max(maxLen, 1), Width: width,
		K32: make([][]float32, layers), V32: make([][]float32, layers)}}
}

func (c *FlatCache) Len() int { return c.n }

func (c *FlatCache) Extend(n int) error {
	width, maxLen := c.kv.Width, c.kv.BlockSize
	if c.n+n > maxLen {
		return fmt.Errorf("kv cache: %d positions would exceed its %d", c.n+n, maxLen)
	}
	need := (c.n + n) * width
	k, v := c.kv.K32, c.kv.V32
	for l := range k {
		if need > cap(k[l]) {
			size := max(need, 2*cap(k[l]))
			size = min(size, maxLen*width)
			k[l] = append(make([]float32, 0, size), k[l]...)
			v[l] = append(make([]float32, 0, size), v[l]...)
		}
		k[l] = k[l][:need]
		v[l] = v[l][:need]
	}
	c.n += n
	return nil
}

func (c *FlatCache) Truncate(n int) {
	if n < c.n {
		c.n = n
		for l := range c.kv.K32 {
			c.kv.K32[l] = c.kv.K32[l][:n*c.kv.Width]
			c.kv.V32[l] = c.kv.V32[l][:n*c.kv.Width]
		}
	}
}

func (c *FlatCache) Put(layer, pos int, k, v []float32) {
	w := c.kv.Width
	copy(c.kv.K32[layer][pos*w:(pos+1)*w], k)
	copy(c.kv.V32[layer][pos*w:(pos+1)*w], v)
}

func (c *FlatCache) Storage() *kernels.KVCache { return &c.kv }

func (c *FlatCache) Table(int) []int32 { return c.table[:] }
