package engine

import (
	"fmt"

	"github.com/godwit-ai/godwit/kernels"
)

// KVCache holds one sequence's keys and values for every layer. Positions
// are appended by Extend, filled by Put during the forward pass, and read by
// attention through Key and Value.
type KVCache interface {
	kernels.KV
	// Len is the number of positions held.
	Len() int
	// Extend adds n positions; it fails when the cache cannot hold them.
	Extend(n int) error
	// Truncate drops every position from n on.
	Truncate(n int)
	// Put stores the key and value rows of one position in one layer.
	Put(layer, pos int, k, v []float32)
}

// FlatCache is a KVCache in contiguous f32 slices per layer, grown as the
// sequence grows up to a maximum length.
type FlatCache struct {
	width  int // kvHeads × headDim
	maxLen int
	n      int
	k, v   [][]float32
}

// NewFlatCache returns an empty cache for layers layers of rows width floats
// wide, holding at most maxLen positions.
func NewFlatCache(layers, width, maxLen int) *FlatCache {
	return &FlatCache{width: width, maxLen: maxLen, k: make([][]float32, layers), v: make([][]float32, layers)}
}

func (c *FlatCache) Len() int { return c.n }

func (c *FlatCache) Extend(n int) error {
	if c.n+n > c.maxLen {
		return fmt.Errorf("kv cache: %d positions would exceed its %d", c.n+n, c.maxLen)
	}
	need := (c.n + n) * c.width
	for l := range c.k {
		if need > cap(c.k[l]) {
			size := max(need, 2*cap(c.k[l]))
			size = min(size, c.maxLen*c.width)
			c.k[l] = append(make([]float32, 0, size), c.k[l]...)
			c.v[l] = append(make([]float32, 0, size), c.v[l]...)
		}
		c.k[l] = c.k[l][:need]
		c.v[l] = c.v[l][:need]
	}
	c.n += n
	return nil
}

func (c *FlatCache) Truncate(n int) {
	if n < c.n {
		c.n = n
		for l := range c.k {
			c.k[l] = c.k[l][:n*c.width]
			c.v[l] = c.v[l][:n*c.width]
		}
	}
}

func (c *FlatCache) Put(layer, pos int, k, v []float32) {
	copy(c.k[layer][pos*c.width:(pos+1)*c.width], k)
	copy(c.v[layer][pos*c.width:(pos+1)*c.width], v)
}

func (c *FlatCache) Key(layer, pos, off, n int) ([]float32, []uint16) {
	return c.k[layer][pos*c.width+off : pos*c.width+off+n], nil
}

func (c *FlatCache) Value(layer, pos, off, n int) ([]float32, []uint16) {
	return c.v[layer][pos*c.width+off : pos*c.width+off+n], nil
}

func (c *FlatCache) Run(pos int) int { return c.n - pos }
