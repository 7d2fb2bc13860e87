package engine

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/godwit-ai/godwit/internal/synth"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
)

// checkPool verifies the pool's books against the live sequences: every
// block's reference count is the number of live sequences holding it; each
// unreferenced block is either free or in the eviction list, exactly once,
// the free ones uncached; the cache index and the blocks' keys agree.
func checkPool(t *testing.T, p *KVPool, live []*Seq, step int) {
	t.Helper()
	refs := make([]int32, p.blocks)
	for _, s := range live {
		if s.Room() < s.n {
			t.Fatalf("step %d: %d positions in blocks for %d", step, s.n, s.Room())
		}
		seen := map[int32]bool{}
		for g, table := range s.tables {
			for i, b := range table {
				if b < 0 {
					// Only a sliding group releases blocks, and only
					// those before the window of its next position.
					if !p.groups[g].sliding || i >= s.liveFrom(s.n) {
						t.Fatalf("step %d: group %d released block %d of a sequence of %d", step, g, i, s.n)
					}
					continue
				}
				if seen[b] {
					t.Fatalf("step %d: a sequence holds block %d twice", step, b)
				}
				seen[b] = true
				refs[b]++
			}
		}
	}
	inFree := make([]int, p.blocks)
	for _, b := range p.free {
		inFree[b]++
	}
	lru := 0
	for b := p.lru.head; b >= 0; b = p.lru.next[b] {
		lru++
		if !p.lru.in[b] || p.ref[b] != 0 || p.key[b] == 0 {
			t.Fatalf("step %d: block %d in the eviction list with ref %d key %x", step, b, p.ref[b], p.key[b])
		}
	}
	if lru != p.lru.len {
		t.Fatalf("step %d: eviction list of %d counted as %d", step, lru, p.lru.len)
	}
	for b := range p.blocks {
		switch {
		case p.ref[b] != refs[b]:
			t.Fatalf("step %d: block %d has ref %d, held %d times", step, b, p.ref[b], refs[b])
		case refs[b] > 0 && (inFree[b] > 0 || p.lru.in[b]):
			t.Fatalf("step %d: held block %d is also free", step, b)
		case refs[b] == 0 && inFree[b]+btoi(p.lru.in[b]) != 1:
			t.Fatalf("step %d: unheld block %d is free %d times, evictable %v", step, b, inFree[b], p.lru.in[b])
		case inFree[b] > 0 && p.key[b] != 0:
			t.Fatalf("step %d: free block %d is still cached", step, b)
		}
		if p.key[b] != 0 && p.cached[p.key[b]] != int32(b) {
			t.Fatalf("step %d: block %d's key is not indexed to it", step, b)
		}
	}
	for h, b := range p.cached {
		if p.key[b] != h {
			t.Fatalf("step %d: index entry %x points at block %d keyed %x", step, h, b, p.key[b])
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestPoolRandomOps runs 20000 random sequence operations (new with
// prefix match, grow, commit, fork, truncate, free) on a small pool, so
// that blocks are evicted and copied on write, and checks the books after
// each; it also checks the stored rows survive: a sequence's positions hold
// what it wrote, whatever others did since. It does so on a pool of plain
// layers, and on one whose layers 0 and 2 slide a window of 5 positions
// (three groups of one layer), where sliding blocks are released.
func TestPoolRandomOps(t *testing.T) {
	for _, c := range []struct {
		name    string
		layers  int
		window  int
		sliding []bool
	}{{"global", 2, 0, nil}, {"sliding", 3, 5, []bool{true, false, true}}} {
		t.Run(c.name, func(t *testing.T) { poolRandomOps(t, c.layers, c.window, c.sliding) })
	}
}

func poolRandomOps(t *testing.T, layers, window int, sliding []bool) {
	const width = 3
	p, err := NewKVPool(KVPoolConfig{Layers: layers, Width: width, BlockSize: 4, Bytes: 40 * 2 * 2 * 4 * width * 4, F32: true,
		Window: window, Sliding: sliding})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	type seqState struct {
		s      *Seq
		tokens []int32
	}
	var live []*seqState
	seqs := func() []*Seq {
		out := make([]*Seq, len(live))
		for i, l := range live {
			out[i] = l.s
		}
		return out
	}
	// Row contents are a function of the token and its position, so any
	// sequence with the same prefix holds the same rows.
	row := func(tok int32, pos int) []float32 {
		return []float32{float32(tok), float32(pos), float32(tok*7 + int32(pos))}
	}
	write := func(st *seqState, upto int) error {
		if err := st.s.Reserve(upto); err != nil {
			return err
		}
		from := st.s.Len()
		if err := st.s.Extend(upto - from); err != nil {
			t.Fatal(err)
		}
		for pos := from; pos < upto; pos++ {
			for l := range layers {
				st.s.Put(l, pos, row(st.tokens[pos], pos), row(st.tokens[pos], -pos))
			}
		}
		st.s.Commit(st.tokens)
		return nil
	}
	hits, released := 0, 0
	for step := range 20000 {
		switch op := r.IntN(10); {
		case op < 3 || len(live) == 0: // a new sequence from a few shared prefixes
			n := 1 + r.IntN(20)
			tokens := make([]int32, n+10)
			base := int32(r.IntN(3))
			for i := range tokens {
				tokens[i] = base
				if i > 4+r.IntN(8) {
					tokens[i] = int32(r.IntN(5))
				}
			}
			st := &seqState{s: p.NewSeq(), tokens: tokens}
			hits += st.s.MatchPrefix(tokens[:n])
			if err := write(st, n); err != nil {
				if !errors.Is(err, ErrNoBlocks) {
					t.Fatal(err)
				}
				st.s.Free()
				break
			}
			live = append(live, st)
		case op < 6: // grow
			st := live[r.IntN(len(live))]
			if st.s.Len() < len(st.tokens) {
				if err := write(st, min(len(st.tokens), st.s.Len()+1+r.IntN(5))); err != nil && !errors.Is(err, ErrNoBlocks) {
					t.Fatal(err)
				}
			}
		case op < 7: // fork, then diverge
			st := live[r.IntN(len(live))]
			c := &seqState{s: st.s.Fork(), tokens: slices.Clone(st.tokens)}
			for i := c.s.Len(); i < len(c.tokens); i++ {
				c.tokens[i] = int32(5 + r.IntN(5))
			}
			live = append(live, c)
		case op < 8: // truncate, then diverge
			st := live[r.IntN(len(live))]
			st.s.Truncate(r.IntN(st.s.Len() + 1))
			for i := st.s.Len(); i < len(st.tokens); i++ {
				st.tokens[i] = int32(r.IntN(5))
			}
		default: // free
			i := r.IntN(len(live))
			live[i].s.Free()
			live = slices.Delete(live, i, i+1)
		}
		checkPool(t, p, seqs(), step)
		for _, st := range live {
			released += st.s.Room()/p.blockSize*len(p.groups) - st.s.Blocks()
		}
		// The rows are read as attention reads them: through the block
		// table, in the storage laid out as kernels.KVCache says.
		for _, st := range live {
			kv := st.s.Storage()
			for pos := range st.s.Len() {
				for l := range layers {
					table := st.s.Table(l)
					if table[pos/kv.BlockSize] < 0 {
						continue // released by a sliding group (checkPool checked which)
					}
					o := (int(table[pos/kv.BlockSize])*kv.BlockSize + pos%kv.BlockSize) * kv.Width
					k, v := kv.K32[l][o:o+width], kv.V32[l][o:o+width]
					if !slices.Equal(k, row(st.tokens[pos], pos)) || !slices.Equal(v, row(st.tokens[pos], -pos)) {
						t.Fatalf("step %d: position %d of a sequence holds %v %v, wrote %v", step, pos, k, v, row(st.tokens[pos], pos))
					}
				}
			}
		}
	}
	for _, st := range live {
		st.s.Free()
	}
	checkPool(t, p, nil, -1)
	if p.Usage() != 0 || p.FreeBlocks() != p.Blocks() {
		t.Errorf("after freeing everything: usage %v, %d of %d blocks free", p.Usage(), p.FreeBlocks(), p.Blocks())
	}
	if (window > 0) != (released > 0) {
		t.Errorf("window %d: %d blocks released over the run", window, released)
	}
	if hits == 0 || p.Stats().PrefixHits != int64(hits) {
		t.Errorf("prefix hits %d (stats %d): the test never hit the cache", hits, p.Stats().PrefixHits)
	}
}

// TestPoolTooSmall: a budget below one block is refused with advice.
func TestPoolTooSmall(t *testing.T) {
	_, err := NewKVPool(KVPoolConfig{Layers: 2, Width: 64, Bytes: 1000, ToHalf: func([]uint16, []float32) {}})
	if err == nil {
		t.Fatal("a 1000-byte pool was accepted")
	}
}

// TestSlidingPoolMemory: on a random model of Gemma-3-4B's attention shape
// (34 layers, 8 heads and 4 KV heads of 256, window 1024, 5 sliding layers
// to 1 global; narrow elsewhere, which the KV cache does not see), a
// sequence of 8192 positions, prefilled in chunks of 512 and decoded one
// position at a time, ends holding the global layers' whole history plus a
// window of the sliding layers', not every layer at full length.
func TestSlidingPoolMemory(t *testing.T) {
	f, err := synth.Parse(synth.Spec{Arch: "gemma3", Dim: 64, Layers: 34, Heads: 8, KVHeads: 4, HeadDim: 256, FFN: 64,
		Context: 8192, Type: gguf.Q8_0, Window: 1024}, synth.ByteVocab())
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config
	const ctx = 8192
	width := c.KVHeads * c.HeadDim
	full := KVBytes(c.Layers, width, ctx, false)
	cfg := PoolConfigFor(&c, full, false)
	cfg.ToHalf = func([]uint16, []float32) {}
	p, err := NewKVPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	global := 0
	for l := range c.Layers {
		if !c.Sliding(l) {
			global++
		}
	}
	if global != 5 || p.Groups() != 7 {
		t.Fatalf("%d global layers in %d groups, want 5 in 7 (one global, six sliding of five)", global, p.Groups())
	}
	s := p.NewSeq()
	for n := 0; n < ctx; {
		step := 1
		if n < 4096 {
			step = 512
		}
		if err := s.Reserve(n + step); err != nil {
			t.Fatal(err)
		}
		if err := s.Extend(step); err != nil {
			t.Fatal(err)
		}
		n += step
	}
	held := int64(s.Blocks()) * p.BlockBytes()
	want := KVBytes(global, width, ctx, false) + KVBytes(c.Layers-global, width, c.Window, false)
	// The sliding layers are 29 in six groups of five slots (one slot
	// idle), each holding its window plus the block the next position
	// starts.
	most := KVBytes(global, width, ctx, false) + KVBytes(30, width, c.Window+p.BlockSize(), false)
	if held < want || held > most {
		t.Errorf("an 8k sequence holds %d bytes: want %d (global history + sliding window) to %d", held, want, most)
	}
	t.Logf("8192 positions, fp16: %.0f MiB held (all layers at full length: %.0f MiB; ideal %.0f MiB)",
		float64(held)/(1<<20), float64(full)/(1<<20), float64(want)/(1<<20))
	if got := p.Capacity(); got < ctx {
		t.Errorf("capacity %d: the pool sized for one full-length sequence of every layer holds less than %d", got, ctx)
	}
	s.Free()
	if p.FreeBlocks() != p.Blocks() {
		t.Errorf("%d of %d blocks free after Free", p.FreeBlocks(), p.Blocks())
	}
}
