package engine

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/godwit-ai/godwit/kernels"
)

// KVPool is a paged KV cache, as vLLM's PagedAttention keeps it: one pool of
// fixed-size blocks (BlockSize positions of every layer's key and value
// rows) that sequences take as they grow, each through its own block table
// (a Seq). No sequence reserves memory for its maximum length. Attention
// reads the blocks where they lie, as a kernels.KVCache.
//
// Full blocks are also a prefix cache: each is keyed by a hash of every token
// up to its end, so a new sequence whose prompt starts with the same tokens
// takes those blocks instead of recomputing them. Blocks are reference
// counted; a block no sequence holds stays cached until the pool needs room,
// least recently released first. Sequences forked from one prompt share its
// blocks, and the last, partly filled one is copied when a sequence first
// writes to it.
//
// A KVPool is not safe for concurrent use.
type KVPool struct {
	blockSize, layers, width int
	blocks                   int
	toHalf                   func(dst []uint16, src []float32)

	// The blocks, which attention reads through the sequences' tables.
	kv kernels.KVCache

	ref    []int32
	key    []uint64         // a full block's prefix hash; 0 when not cached
	tokens [][]int32        // a cached block's tokens, to rule out collisions
	parent []uint64         // the prefix hash of the block before a cached one
	cached map[uint64]int32 // prefix hash → block
	free   []int32          // unreferenced and uncached: taken first
	lru    lruList          // unreferenced but cached: evicted oldest first
	seed   maphash.Seed

	stats PoolStats
}

// PoolStats counts what a KVPool did.
type PoolStats struct {
	PrefixQueries int64 // prompt tokens looked up in the prefix cache
	PrefixHits    int64 // of those, tokens found there
}

// KVPoolConfig sizes a KVPool.
type KVPoolConfig struct {
	Layers, Width int   // model layers; kvHeads×headDim
	BlockSize     int   // positions per block; 16 when 0
	Bytes         int64 // memory for the blocks
	F32           bool  // store f32 (else fp16)
	// ToHalf rounds rows to fp16 for an fp16 pool (a Backend's ToHalf).
	ToHalf func(dst []uint16, src []float32)
}

// KVBytes is the memory that positions positions take in a pool of layers
// layers of width-wide rows (keys and values), in f32 or fp16.
func KVBytes(layers, width, positions int, f32 bool) int64 {
	elem := int64(2)
	if f32 {
		elem = 4
	}
	return int64(layers) * 2 * int64(positions) * int64(width) * elem
}

// ErrNoBlocks is returned when the pool has no free block left.
var ErrNoBlocks = errors.New("kv cache: out of blocks")

// NewKVPool allocates a pool of as many blocks as cfg.Bytes holds.
func NewKVPool(cfg KVPoolConfig) (*KVPool, error) {
	bs := cfg.BlockSize
	if bs <= 0 {
		bs = 16
	}
	per := KVBytes(cfg.Layers, cfg.Width, bs, cfg.F32)
	if per <= 0 {
		return nil, fmt.Errorf("kv cache: bad shape: %d layers of %d values", cfg.Layers, cfg.Width)
	}
	n := cfg.Bytes / per
	if n < 1 {
		return nil, fmt.Errorf("kv cache: %d bytes do not hold one block of %d positions (%d bytes); raise --kv-cache-mem", cfg.Bytes, bs, per)
	}
	if n > 1<<31-1 {
		n = 1<<31 - 1
	}
	if !cfg.F32 && cfg.ToHalf == nil {
		return nil, errors.New("kv cache: an fp16 pool needs a ToHalf conversion")
	}
	p := &KVPool{blockSize: bs, layers: cfg.Layers, width: cfg.Width, blocks: int(n), toHalf: cfg.ToHalf,
		kv:  kernels.KVCache{Type: kernels.KVF32, BlockSize: bs, Width: cfg.Width},
		ref: make([]int32, n), key: make([]uint64, n), tokens: make([][]int32, n), parent: make([]uint64, n),
		cached: map[uint64]int32{}, seed: maphash.MakeSeed()}
	if !cfg.F32 {
		p.kv.Type = kernels.KVF16
	}
	size := int(n) * bs * cfg.Width
	for range cfg.Layers {
		if p.half() {
			p.kv.K16, p.kv.V16 = append(p.kv.K16, make([]uint16, size)), append(p.kv.V16, make([]uint16, size))
		} else {
			p.kv.K32, p.kv.V32 = append(p.kv.K32, make([]float32, size)), append(p.kv.V32, make([]float32, size))
		}
	}
	p.lru.init(int(n))
	for b := int(n) - 1; b >= 0; b-- {
		p.free = append(p.free, int32(b))
	}
	return p, nil
}

// half reports whether the pool stores fp16.
func (p *KVPool) half() bool { return p.kv.Type == kernels.KVF16 }

// BlockSize is the number of positions per block.
func (p *KVPool) BlockSize() int { return p.blockSize }

// Blocks is the number of blocks in the pool.
func (p *KVPool) Blocks() int { return p.blocks }

// FreeBlocks is how many blocks can be taken now: unused ones and cached
// ones no sequence holds.
func (p *KVPool) FreeBlocks() int { return len(p.free) + p.lru.len }

// Usage is the fraction of blocks held by sequences.
func (p *KVPool) Usage() float64 { return 1 - float64(p.FreeBlocks())/float64(p.blocks) }

// Stats returns the pool's counters.
func (p *KVPool) Stats() PoolStats { return p.stats }

// take returns a block for a sequence to write: an unused one, else the
// least recently released cached one, which leaves the cache.
func (p *KVPool) take() (int32, error) {
	var b int32
	switch {
	case len(p.free) > 0:
		b = p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
	case p.lru.len > 0:
		b = p.lru.popOldest()
		p.uncache(b)
	default:
		return 0, ErrNoBlocks
	}
	p.ref[b] = 1
	return b, nil
}

func (p *KVPool) uncache(b int32) {
	if p.key[b] != 0 {
		delete(p.cached, p.key[b])
		p.key[b], p.parent[b], p.tokens[b] = 0, 0, p.tokens[b][:0]
	}
}

// hold adds a reference to b, taking it out of the eviction list.
func (p *KVPool) hold(b int32) {
	if p.ref[b] == 0 {
		p.lru.remove(b)
	}
	p.ref[b]++
}

// release drops a reference to b.
func (p *KVPool) release(b int32) {
	p.ref[b]--
	switch {
	case p.ref[b] > 0:
	case p.key[b] != 0:
		p.lru.pushNewest(b)
	default:
		p.free = append(p.free, b)
	}
}

// prefixHash is the cache key of a block holding tokens after a prefix
// whose key is parent; never 0.
func (p *KVPool) prefixHash(parent uint64, tokens []int32) uint64 {
	var h maphash.Hash
	h.SetSeed(p.seed)
	var buf [8]byte
	for i := range 8 {
		buf[i] = byte(parent >> (8 * i))
	}
	h.Write(buf[:])
	for _, t := range tokens {
		h.Write([]byte{byte(t), byte(t >> 8), byte(t >> 16), byte(t >> 24)})
	}
	return h.Sum64() | 1
}

// Seq is one sequence's view of a KVPool: its block table and how many
// positions it holds. It implements KVCache. The zero Seq is not usable:
// take one from KVPool.NewSeq.
type Seq struct {
	pool   *KVPool
	blocks []int32
	n      int      // positions computed
	keys   []uint64 // prefix hashes of the full blocks registered so far
}

// NewSeq returns an empty sequence.
func (p *KVPool) NewSeq() *Seq { return &Seq{pool: p} }

// MatchPrefix gives an empty s the cached blocks that hold the longest
// prefix of tokens made of whole blocks, stopping before the last token (a
// sequence needs at least one token computed to get logits), and returns how
// many positions they hold.
func (s *Seq) MatchPrefix(tokens []int32) int {
	p := s.pool
	if s.n != 0 || len(s.blocks) != 0 {
		panic("engine: MatchPrefix on a sequence that holds positions")
	}
	full := (len(tokens) - 1) / p.blockSize
	p.stats.PrefixQueries += int64(len(tokens))
	var parent uint64
	for i := range full {
		blk := tokens[i*p.blockSize : (i+1)*p.blockSize]
		h := p.prefixHash(parent, blk)
		b, ok := p.cached[h]
		if !ok || p.parent[b] != parent || !slices.Equal(p.tokens[b], blk) {
			break
		}
		p.hold(b)
		s.blocks = append(s.blocks, b)
		s.keys = append(s.keys, h)
		parent = h
	}
	s.n = len(s.blocks) * p.blockSize
	p.stats.PrefixHits += int64(s.n)
	return s.n
}

// Reserve makes room for positions up to n, taking blocks as needed, and
// copies a shared last block before it is written to. On ErrNoBlocks s is
// unchanged but for blocks taken already, which it keeps.
func (s *Seq) Reserve(n int) error {
	p := s.pool
	if s.n%p.blockSize != 0 && n > s.n {
		// The block position s.n falls in is about to be written: copy
		// it if another sequence holds it too, else take it out of the
		// prefix cache (Truncate can leave a cached block partly used).
		i := s.n / p.blockSize
		switch b := s.blocks[i]; {
		case p.ref[b] > 1:
			c, err := p.take()
			if err != nil {
				return err
			}
			p.copyBlock(c, b)
			p.release(b)
			s.blocks[i] = c
		case p.key[b] != 0:
			p.uncache(b)
		}
	}
	for len(s.blocks)*p.blockSize < n {
		b, err := p.take()
		if err != nil {
			return err
		}
		s.blocks = append(s.blocks, b)
	}
	return nil
}

func (p *KVPool) copyBlock(dst, src int32) {
	w := p.blockSize * p.width
	kv := &p.kv
	for l := range p.layers {
		if p.half() {
			copy(kv.K16[l][int(dst)*w:][:w], kv.K16[l][int(src)*w:][:w])
			copy(kv.V16[l][int(dst)*w:][:w], kv.V16[l][int(src)*w:][:w])
		} else {
			copy(kv.K32[l][int(dst)*w:][:w], kv.K32[l][int(src)*w:][:w])
			copy(kv.V32[l][int(dst)*w:][:w], kv.V32[l][int(src)*w:][:w])
		}
	}
}

// Commit registers the blocks that tokens (the sequence's tokens from
// position 0, at least Len of them) fill completely in the prefix cache.
func (s *Seq) Commit(tokens []int32) {
	p := s.pool
	for i := len(s.keys); (i+1)*p.blockSize <= s.n; i++ {
		var parent uint64
		if i > 0 {
			parent = s.keys[i-1]
		}
		blk := tokens[i*p.blockSize : (i+1)*p.blockSize]
		h := p.prefixHash(parent, blk)
		s.keys = append(s.keys, h)
		b := s.blocks[i]
		if _, dup := p.cached[h]; dup || p.key[b] != 0 {
			continue // the same tokens are cached in another block already
		}
		p.key[b], p.parent[b] = h, parent
		p.tokens[b] = append(p.tokens[b][:0], blk...)
		p.cached[h] = b
	}
}

// Fork returns a sequence sharing s's positions and the blocks that hold
// them (not the ones only reserved).
func (s *Seq) Fork() *Seq {
	used := s.blocks[:(s.n+s.pool.blockSize-1)/s.pool.blockSize]
	for _, b := range used {
		s.pool.hold(b)
	}
	return &Seq{pool: s.pool, blocks: slices.Clone(used), n: s.n, keys: slices.Clone(s.keys)}
}

// Free returns every block of s to the pool and empties it.
func (s *Seq) Free() {
	for _, b := range s.blocks {
		s.pool.release(b)
	}
	s.blocks, s.keys, s.n = s.blocks[:0], s.keys[:0], 0
}

// Blocks is the number of blocks s holds.
func (s *Seq) Blocks() int { return len(s.blocks) }

func (s *Seq) Len() int { return s.n }

// Extend adds n positions, which Reserve must have made room for.
func (s *Seq) Extend(n int) error {
	if need := s.n + n; need > len(s.blocks)*s.pool.blockSize {
		return fmt.Errorf("kv cache: %d positions, but blocks reserved for %d", need, len(s.blocks)*s.pool.blockSize)
	}
	s.n += n
	return nil
}

// Truncate drops every position from n on; blocks past it go back to the
// pool.
func (s *Seq) Truncate(n int) {
	if n >= s.n {
		return
	}
	p := s.pool
	s.n = n
	keep := (n + p.blockSize - 1) / p.blockSize
	for _, b := range s.blocks[keep:] {
		p.release(b)
	}
	s.blocks = s.blocks[:keep]
	s.keys = s.keys[:min(len(s.keys), n/p.blockSize)]
}

// at is where position pos's row starts in a layer's storage.
func (s *Seq) at(pos int) int {
	bs := s.pool.blockSize
	return (int(s.blocks[pos/bs])*bs + pos%bs) * s.pool.width
}

func (s *Seq) Put(layer, pos int, k, v []float32) {
	p, o := s.pool, s.at(pos)
	if p.half() {
		p.toHalf(p.kv.K16[layer][o:o+p.width], k)
		p.toHalf(p.kv.V16[layer][o:o+p.width], v)
		return
	}
	copy(p.kv.K32[layer][o:o+p.width], k)
	copy(p.kv.V32[layer][o:o+p.width], v)
}

// Storage is the pool's storage, shared by all its sequences.
func (s *Seq) Storage() *kernels.KVCache { return &s.pool.kv }

// Table is s's block table.
func (s *Seq) Table() []int32 { return s.blocks }

// lruList is a doubly linked list of blocks, oldest first, in arrays.
type lruList struct {
	prev, next []int32
	in         []bool
	head, tail int32
	len        int
}

func (l *lruList) init(n int) {
	l.prev, l.next, l.in = make([]int32, n), make([]int32, n), make([]bool, n)
	l.head, l.tail = -1, -1
}

func (l *lruList) pushNewest(b int32) {
	l.prev[b], l.next[b] = l.tail, -1
	if l.tail >= 0 {
		l.next[l.tail] = b
	} else {
		l.head = b
	}
	l.tail = b
	l.in[b] = true
	l.len++
}

func (l *lruList) remove(b int32) {
	if !l.in[b] {
		return
	}
	if l.prev[b] >= 0 {
		l.next[l.prev[b]] = l.next[b]
	} else {
		l.head = l.next[b]
	}
	if l.next[b] >= 0 {
		l.prev[l.next[b]] = l.prev[b]
	} else {
		l.tail = l.prev[b]
	}
	l.in[b] = false
	l.len--
}

func (l *lruList) popOldest() int32 {
	b := l.head
	l.remove(b)
	return b
}
