package engine

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
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
// On a model with sliding-window layers (Gemma), whose old positions no
// layer of theirs attends to any more, the layers are split into groups of
// one kind and equal size (vLLM's hybrid allocator): a block holds
// BlockSize positions of one group's layers, a sequence has a block table
// per group, and a sliding group's blocks that fell out of the window go
// back to the pool (table entry −1) while the global groups keep the whole
// history. The prefix cache keys blocks by group too, and a prefix is
// found when the global groups hold it all and the sliding groups its last
// window.
//
// A KVPool is not safe for concurrent use.
type KVPool struct {
	blockSize, layers, width int
	blocks                   int
	toHalf                   func(dst []uint16, src []float32)

	// groups are the layer groups, which a block serves one at a time;
	// groupOf maps a layer to its group. One group of every layer when
	// the model has no sliding window.
	groups  []layerGroup
	groupOf []int
	window  int

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
	// Window and Sliding: the layers Sliding marks (one flag per layer)
	// attend to the last Window positions only, and the pool keeps no
	// more of them. Zero or nil: every layer keeps the whole history.
	Window  int
	Sliding []bool
}

// layerGroup is layers of one kind whose positions share blocks: slot j of
// a block holds layers[j].
type layerGroup struct {
	layers  []int
	sliding bool
}

// groupLayers splits the layers into groups of equal size, global and
// sliding apart: as many layers per group as the rarer kind has, so that
// every block has the same size and one pool serves all the groups.
func groupLayers(layers, window int, sliding []bool) []layerGroup {
	var kinds [2][]int // global, sliding
	for l := range layers {
		k := 0
		if window > 0 && l < len(sliding) && sliding[l] {
			k = 1
		}
		kinds[k] = append(kinds[k], l)
	}
	size := len(kinds[0])
	if len(kinds[1]) > 0 && (size == 0 || len(kinds[1]) < size) {
		size = len(kinds[1])
	}
	var groups []layerGroup
	for k, ls := range kinds {
		for len(ls) > 0 {
			n := min(size, len(ls))
			groups = append(groups, layerGroup{layers: ls[:n], sliding: k == 1})
			ls = ls[n:]
		}
	}
	return groups
}

// KVBytes is the memory that positions positions take in a pool of layers
// layers of width-wide rows (keys and values), in f32 or fp16, every layer
// holding every position.
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
	if cfg.Layers <= 0 || cfg.Width <= 0 || cfg.Window < 0 {
		return nil, fmt.Errorf("kv cache: bad shape: %d layers of %d values, window %d", cfg.Layers, cfg.Width, cfg.Window)
	}
	groups := groupLayers(cfg.Layers, cfg.Window, cfg.Sliding)
	slots := len(groups[0].layers) // the most layers a group has
	per := KVBytes(slots, cfg.Width, bs, cfg.F32)
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
		groups: groups, groupOf: make([]int, cfg.Layers), window: cfg.Window,
		kv:  kernels.KVCache{Type: kernels.KVF32, BlockSize: bs, Width: cfg.Width},
		ref: make([]int32, n), key: make([]uint64, n), tokens: make([][]int32, n), parent: make([]uint64, n),
		cached: map[uint64]int32{}, seed: maphash.MakeSeed()}
	if !cfg.F32 {
		p.kv.Type = kernels.KVF16
	}
	// Each slot's storage serves the layer in that slot of every group:
	// layer l reads its group's blocks there.
	size := int(n) * bs * cfg.Width
	p.kv.K16, p.kv.V16 = make([][]uint16, cfg.Layers), make([][]uint16, cfg.Layers)
	p.kv.K32, p.kv.V32 = make([][]float32, cfg.Layers), make([][]float32, cfg.Layers)
	for j := range slots {
		var k16, v16 []uint16
		var k32, v32 []float32
		if p.half() {
			k16, v16 = make([]uint16, size), make([]uint16, size)
		} else {
			k32, v32 = make([]float32, size), make([]float32, size)
		}
		for g, grp := range groups {
			if j < len(grp.layers) {
				l := grp.layers[j]
				p.groupOf[l] = g
				p.kv.K16[l], p.kv.V16[l], p.kv.K32[l], p.kv.V32[l] = k16, v16, k32, v32
			}
		}
	}
	if p.half() {
		p.kv.K32, p.kv.V32 = nil, nil
	} else {
		p.kv.K16, p.kv.V16 = nil, nil
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

// Groups is the number of layer groups, each with a block table per
// sequence: 1 unless the model has sliding-window layers.
func (p *KVPool) Groups() int { return len(p.groups) }

// BlockBytes is the memory of one block.
func (p *KVPool) BlockBytes() int64 {
	return KVBytes(len(p.groups[0].layers), p.width, p.blockSize, !p.half())
}

// windowBlocks is the most blocks a sliding group holds for a sequence
// between steps of one position: those of its last Window positions.
func (p *KVPool) windowBlocks() int { return (p.window+p.blockSize-1)/p.blockSize + 1 }

// Capacity is the most positions one sequence can hold when it has the
// pool to itself, its sliding groups holding a window each.
func (p *KVPool) Capacity() int {
	full := p.blocks / len(p.groups) * p.blockSize // every group at full length
	var global, sliding int
	for _, g := range p.groups {
		if g.sliding {
			sliding++
		} else {
			global++
		}
	}
	rest := p.blocks - sliding*p.windowBlocks()
	switch {
	case sliding == 0 || rest < 0:
		return full
	case global == 0:
		return math.MaxInt32
	}
	if n := rest / global; n >= p.windowBlocks() {
		return n * p.blockSize
	}
	return full
}

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

// groupKey is the cache key of group g's block of the prefix whose hash is
// h; never 0.
func groupKey(h uint64, g int) uint64 { return (h ^ uint64(g)*0x9e3779b97f4a7c15) | 1 }

// lookup is group g's cached block for the prefix hash h of tokens blk
// after parent, or −1.
func (p *KVPool) lookup(g int, h, parent uint64, blk []int32) int32 {
	b, ok := p.cached[groupKey(h, g)]
	if !ok || p.parent[b] != parent || !slices.Equal(p.tokens[b], blk) {
		return -1
	}
	return b
}

// Seq is one sequence's view of a KVPool: its block tables (one per layer
// group) and how many positions it holds. It implements KVCache. The zero
// Seq is not usable: take one from KVPool.NewSeq.
type Seq struct {
	pool   *KVPool
	tables [][]int32 // per group; −1 for a sliding group's released blocks
	n      int       // positions computed
	keys   []uint64  // prefix hashes of the full blocks registered so far
}

// NewSeq returns an empty sequence.
func (p *KVPool) NewSeq() *Seq { return &Seq{pool: p, tables: make([][]int32, len(p.groups))} }

// MatchPrefix gives an empty s the cached blocks that hold the longest
// prefix of tokens made of whole blocks, stopping before the last token (a
// sequence needs at least one token computed to get logits), and returns how
// many positions they hold. The global groups need every block of the
// prefix cached, the sliding groups those of its last window.
func (s *Seq) MatchPrefix(tokens []int32) int {
	p := s.pool
	if s.n != 0 || s.Blocks() != 0 {
		panic("engine: MatchPrefix on a sequence that holds positions")
	}
	full := (len(tokens) - 1) / p.blockSize
	p.stats.PrefixQueries += int64(len(tokens))
	var hashes []uint64
	var parent uint64
	for i := range full {
		h := p.prefixHash(parent, tokens[i*p.blockSize:(i+1)*p.blockSize])
		hashes, parent = append(hashes, h), h
	}
	parentOf := func(i int) uint64 {
		if i == 0 {
			return 0
		}
		return hashes[i-1]
	}
	blk := func(i int) []int32 { return tokens[i*p.blockSize : (i+1)*p.blockSize] }
	k := full
	for g, grp := range p.groups {
		if !grp.sliding {
			i := 0
			for i < k && p.lookup(g, hashes[i], parentOf(i), blk(i)) >= 0 {
				i++
			}
			k = i
		}
	}
	// The longest prefix whose last window the sliding groups hold too.
	for ; k > 0; k-- {
		ok := true
		for g, grp := range p.groups {
			for i := s.liveFrom(k * p.blockSize); ok && grp.sliding && i < k; i++ {
				ok = p.lookup(g, hashes[i], parentOf(i), blk(i)) >= 0
			}
		}
		if ok {
			break
		}
	}
	for g, grp := range p.groups {
		from := 0
		if grp.sliding {
			from = s.liveFrom(k * p.blockSize)
		}
		for i := range k {
			b := int32(-1)
			if i >= from {
				b = p.lookup(g, hashes[i], parentOf(i), blk(i))
				p.hold(b)
			}
			s.tables[g] = append(s.tables[g], b)
		}
	}
	s.keys = append(s.keys, hashes[:k]...)
	s.n = k * p.blockSize
	p.stats.PrefixHits += int64(s.n)
	return s.n
}

// liveFrom is the first block a sliding group must hold for the next
// position to be computed, next: the one of the first position in its
// window.
func (s *Seq) liveFrom(next int) int {
	return max(0, next+1-s.pool.window) / s.pool.blockSize
}

// Reserve makes room for positions up to n, taking blocks as needed, and
// copies a shared last block before it is written to. The sliding groups
// first release the blocks before the window of the next position. On
// ErrNoBlocks s is unchanged but for blocks taken already, which it keeps.
func (s *Seq) Reserve(n int) error {
	p := s.pool
	if n > s.n {
		for g, grp := range p.groups {
			if !grp.sliding {
				continue
			}
			t := s.tables[g]
			for i := range min(s.liveFrom(s.n), len(t)) {
				if t[i] >= 0 {
					p.release(t[i])
					t[i] = -1
				}
			}
		}
	}
	if s.n%p.blockSize != 0 && n > s.n {
		// The block position s.n falls in is about to be written: copy
		// it if another sequence holds it too, else take it out of the
		// prefix cache (Truncate can leave a cached block partly used).
		i := s.n / p.blockSize
		for g := range p.groups {
			switch b := s.tables[g][i]; {
			case p.ref[b] > 1:
				c, err := p.take()
				if err != nil {
					return err
				}
				p.copyBlock(g, c, b)
				p.release(b)
				s.tables[g][i] = c
			case p.key[b] != 0:
				p.uncache(b)
			}
		}
	}
	for i := s.Room() / p.blockSize; i*p.blockSize < n; i++ {
		for g := range p.groups {
			if len(s.tables[g]) > i {
				continue
			}
			b, err := p.take()
			if err != nil {
				return err
			}
			s.tables[g] = append(s.tables[g], b)
		}
	}
	return nil
}

// Room is how many positions s has blocks for.
func (s *Seq) Room() int {
	n := len(s.tables[0])
	for _, t := range s.tables[1:] {
		n = min(n, len(t))
	}
	return n * s.pool.blockSize
}

// copyBlock copies group g's block src to dst.
func (p *KVPool) copyBlock(g int, dst, src int32) {
	w := p.blockSize * p.width
	kv := &p.kv
	for _, l := range p.groups[g].layers {
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
		for g := range p.groups {
			b, key := s.tables[g][i], groupKey(h, g)
			if b < 0 {
				continue // released already
			}
			if _, dup := p.cached[key]; dup || p.key[b] != 0 {
				continue // the same tokens are cached in another block already
			}
			p.key[b], p.parent[b] = key, parent
			p.tokens[b] = append(p.tokens[b][:0], blk...)
			p.cached[key] = b
		}
	}
}

// Fork returns a sequence sharing s's positions and the blocks that hold
// them (not the ones only reserved).
func (s *Seq) Fork() *Seq {
	used := (s.n + s.pool.blockSize - 1) / s.pool.blockSize
	f := &Seq{pool: s.pool, tables: make([][]int32, len(s.tables)), n: s.n, keys: slices.Clone(s.keys)}
	for g, t := range s.tables {
		f.tables[g] = slices.Clone(t[:used])
		for _, b := range f.tables[g] {
			if b >= 0 {
				s.pool.hold(b)
			}
		}
	}
	return f
}

// Free returns every block of s to the pool and empties it.
func (s *Seq) Free() {
	for g, t := range s.tables {
		for _, b := range t {
			if b >= 0 {
				s.pool.release(b)
			}
		}
		s.tables[g] = t[:0]
	}
	s.keys, s.n = s.keys[:0], 0
}

// Blocks is the number of blocks s holds, of every group.
func (s *Seq) Blocks() int {
	n := 0
	for _, t := range s.tables {
		for _, b := range t {
			if b >= 0 {
				n++
			}
		}
	}
	return n
}

func (s *Seq) Len() int { return s.n }

// Extend adds n positions, which Reserve must have made room for.
func (s *Seq) Extend(n int) error {
	if need := s.n + n; need > s.Room() {
		return fmt.Errorf("kv cache: %d positions, but blocks reserved for %d", need, s.Room())
	}
	s.n += n
	return nil
}

// Truncate drops every position from n on; blocks past it go back to the
// pool. A sliding group cannot take back the blocks it released: when the
// window of position n reaches into them, s is emptied instead (Len tells),
// and its positions must be computed again.
func (s *Seq) Truncate(n int) {
	if n >= s.n {
		return
	}
	p := s.pool
	for g, grp := range p.groups {
		if t := s.tables[g]; grp.sliding && n > 0 {
			if i := s.liveFrom(n); i < len(t) && t[i] < 0 {
				n = 0
			}
		}
	}
	s.n = n
	keep := (n + p.blockSize - 1) / p.blockSize
	for g, t := range s.tables {
		if keep >= len(t) {
			continue
		}
		for _, b := range t[keep:] {
			if b >= 0 {
				p.release(b)
			}
		}
		s.tables[g] = t[:keep]
	}
	s.keys = s.keys[:min(len(s.keys), n/p.blockSize)]
}

// at is where position pos's row starts in layer's storage.
func (s *Seq) at(layer, pos int) int {
	bs := s.pool.blockSize
	return (int(s.tables[s.pool.groupOf[layer]][pos/bs])*bs + pos%bs) * s.pool.width
}

func (s *Seq) Put(layer, pos int, k, v []float32) {
	p, o := s.pool, s.at(layer, pos)
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

// Table is the block table of layer's group.
func (s *Seq) Table(layer int) []int32 { return s.tables[s.pool.groupOf[layer]] }

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
