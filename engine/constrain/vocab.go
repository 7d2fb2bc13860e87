package constrain

import (
	"bytes"
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/godwit-ai/godwit/models/tokenizer"
)

// Vocab is a tokenizer's vocabulary as the masks need it: the bytes of every
// token that stands for text, in a trie, and the end-of-generation tokens.
// Build it once per tokenizer; it is safe for concurrent use.
type Vocab struct {
	size  int
	trie  []tnode // the trie's nodes but the root, in preorder
	toks  []int32 // the tokens ending at each node, by tnode's range
	depth int     // the longest token's bytes
	eog   []int32

	mu    sync.Mutex
	masks map[state]*mask // allowed text tokens by state
}

// maxMasks bounds the mask cache (a 128k vocabulary's mask is 16 KiB).
const maxMasks = 4096

// tnode is a trie node. In preorder a walk is one pass over an array:
// each node's parent is the nearest node before it one byte shallower, and
// a branch the automaton refuses is skipped in one jump to its end.
type tnode struct {
	b            byte
	depth        int32 // bytes from the root: 1 for the root's children
	end          int32 // the index after this node's subtree
	tokLo, tokHi int32 // the tokens whose bytes end here: toks[tokLo:tokHi]
}

// NewVocab indexes tok's vocabulary. Control tokens are left out: they are
// never text, and the end-of-generation ones are allowed only once a
// sentence is whole.
func NewVocab(tok *tokenizer.Tokenizer) *Vocab {
	pieces := make([][]byte, tok.VocabSize())
	var eog []int32
	for id := range int32(len(pieces)) {
		if tok.IsEOG(id) {
			eog = append(eog, id)
		}
		if !tok.IsControl(id) {
			pieces[id] = tok.Piece(id)
		}
	}
	return newVocab(pieces, eog)
}

// newVocab builds the trie of pieces (by token id; empty ones are left
// out).
func newVocab(pieces [][]byte, eog []int32) *Vocab {
	ids := make([]int32, 0, len(pieces))
	for id, p := range pieces {
		if len(p) > 0 {
			ids = append(ids, int32(id))
		}
	}
	// Sorted by bytes, the tokens come in the trie's preorder.
	slices.SortStableFunc(ids, func(a, b int32) int { return bytes.Compare(pieces[a], pieces[b]) })
	v := &Vocab{size: len(pieces), eog: eog, masks: map[state]*mask{}}
	var path []int32 // the open nodes, by depth-1
	var prev []byte
	for _, id := range ids {
		p := pieces[id]
		common := 0
		for common < len(p) && common < len(prev) && p[common] == prev[common] {
			common++
		}
		for _, n := range path[common:] {
			v.trie[n].end = int32(len(v.trie))
		}
		path = path[:common]
		for d := common; d < len(p); d++ {
			path = append(path, int32(len(v.trie)))
			v.trie = append(v.trie, tnode{b: p[d], depth: int32(d + 1), tokLo: int32(len(v.toks)), tokHi: int32(len(v.toks))})
		}
		// Tokens with the same bytes share the node.
		n := &v.trie[path[len(p)-1]]
		if n.tokHi != int32(len(v.toks)) {
			panic("constrain: tokens out of order")
		}
		v.toks = append(v.toks, id)
		n.tokHi++
		v.depth = max(v.depth, len(p))
		prev = p
	}
	for _, n := range path {
		v.trie[n].end = int32(len(v.trie))
	}
	return v
}

// allowed returns s's mask, computed once per state.
func (v *Vocab) allowed(s state) *mask {
	v.mu.Lock()
	m, ok := v.masks[s]
	v.mu.Unlock()
	if ok {
		return m
	}
	m = &mask{bits: make([]uint64, (v.size+63)/64)}
	v.walk(s, func(id int32, t *state) {
		m.bits[id/64] |= 1 << (id % 64)
		m.maxNext = max(m.maxNext, t.dist())
	})
	v.mu.Lock()
	if len(v.masks) >= maxMasks {
		clear(v.masks) // deep, varied nesting: start the cache again
	}
	v.masks[s] = m
	v.mu.Unlock()
	return m
}

// walk calls f with every text token that s reads whole and the state it
// reads it into: a branch ends at the first byte no sentence continues
// with.
func (v *Vocab) walk(s state, f func(id int32, t *state)) {
	stack := make([]state, v.depth+1)
	stack[0] = s
	for i := 0; i < len(v.trie); {
		n := &v.trie[i]
		t := &stack[n.depth]
		*t = stack[n.depth-1]
		if !t.step(n.b) {
			i = int(n.end)
			continue
		}
		for _, id := range v.toks[n.tokLo:n.tokHi] {
			f(id, t)
		}
		i++
	}
}

// Matcher follows one sample's output through a language. Make it with
// NewMatcher.
type Matcher struct {
	v    *Vocab
	d    *dfa  // nil: the JSON object automaton, in s
	ds   int32 // the state in d
	s    state
	keep []float32 // Mask's scratch: the end-of-generation logits
	near []uint64  // Mask's scratch: the tokens that still leave room to finish
	kept []float32 // Mask's scratch: the allowed tokens' logits
}

// NewMatcher returns a matcher at the start of l over v's tokens.
func NewMatcher(l *Language, v *Vocab) *Matcher {
	m := &Matcher{v: v, keep: make([]float32, len(v.eog))}
	if l.n != nil {
		m.d = l.dfaFor(v)
	}
	return m
}

// pdaMaxDist bounds the JSON object automaton's distance to a whole
// object: a key's escape inside the deepest nesting.
const pdaMaxDist = maxDepth + 16

// Mask sets to -Inf the logit of every token that would leave the language:
// text tokens the automaton cannot read whole, end-of-generation tokens
// until the output is whole, and, when left (the tokens the sample may
// still generate, this one included) runs short, every token after which
// the output could no longer be finished in time. Each remaining token can
// always bring the output a byte nearer its end, so a sample that starts
// with room for the shortest output always ends with a whole one.
func (m *Matcher) Mask(logits []float32, left int) {
	var allow *mask
	var dist, maxDist int32
	if m.d != nil {
		m.d.mu.Lock()
		allow = m.d.maskOf(m.ds)
		dist, maxDist = m.d.states[m.ds].dist, m.d.l.maxDist
		m.d.mu.Unlock()
	} else {
		allow = m.v.allowed(m.s)
		dist, maxDist = m.s.dist(), pdaMaxDist
	}
	words := allow.bits
	if room := int32(min(left-1, int(maxDist)+1)); left > 0 && allow.maxNext > room && dist <= room+1 {
		words = m.nearMask(room)
	}
	done := dist == 0
	if done {
		for i, id := range m.v.eog {
			m.keep[i] = logits[id]
		}
	}
	inf := float32(math.Inf(-1))
	allowed := 0
	for _, w := range words {
		allowed += bits.OnesCount64(w)
	}
	if allowed < len(logits)/2 {
		// Few allowed (a state between values refuses almost all of a
		// 128k vocabulary): keep theirs, fill the row, put them back,
		// rather than touch each refused token by its bit.
		m.kept = m.kept[:0]
		for w, allow := range words {
			for on := allow; on != 0; on &= on - 1 {
				if i := w*64 + bits.TrailingZeros64(on); i < len(logits) {
					m.kept = append(m.kept, logits[i])
				}
			}
		}
		if len(logits) > 0 {
			// Doubling copies fill with memmove's wide stores.
			logits[0] = inf
			for n := 1; n < len(logits); n *= 2 {
				copy(logits[n:], logits[:n])
			}
		}
		k := 0
		for w, allow := range words {
			for on := allow; on != 0; on &= on - 1 {
				if i := w*64 + bits.TrailingZeros64(on); i < len(logits) {
					logits[i] = m.kept[k]
					k++
				}
			}
		}
	} else {
		// Only the tokens refused are touched, a word of the mask at a
		// time.
		for w, allow := range words {
			base := w * 64
			for off := ^allow; off != 0; off &= off - 1 {
				if i := base + bits.TrailingZeros64(off); i < len(logits) {
					logits[i] = inf
				}
			}
		}
	}
	if done {
		for i, id := range m.v.eog {
			logits[id] = m.keep[i]
		}
	}
}

// nearMask is the tokens after which the output can be finished within room
// bytes (so within room tokens).
func (m *Matcher) nearMask(room int32) []uint64 {
	if m.near == nil {
		m.near = make([]uint64, (m.v.size+63)/64)
	}
	clear(m.near)
	if m.d != nil {
		m.d.mu.Lock()
		m.d.walk(m.ds, func(id, to int32) {
			if m.d.states[to].dist <= room {
				m.near[id/64] |= 1 << (id % 64)
			}
		})
		m.d.mu.Unlock()
		return m.near
	}
	m.v.walk(m.s, func(id int32, t *state) {
		if t.dist() <= room {
			m.near[id/64] |= 1 << (id % 64)
		}
	})
	return m.near
}

// Advance reads token id, which Mask allowed; it reports false for a token
// the language does not continue with (the matcher then stays as it was).
func (m *Matcher) Advance(tok *tokenizer.Tokenizer, id int32) bool {
	if tok.IsEOG(id) {
		return m.Done()
	}
	return m.advance(tok.Piece(id))
}

// advance reads piece's bytes; it reports false, staying as it was, where
// the language does not continue with them.
func (m *Matcher) advance(piece []byte) bool {
	if m.d != nil {
		m.d.mu.Lock()
		defer m.d.mu.Unlock()
		s := m.ds
		for _, b := range piece {
			if s = m.d.step(s, b); s < 0 {
				return false
			}
		}
		m.ds = s
		return true
	}
	t := m.s
	for _, b := range piece {
		if !t.step(b) {
			return false
		}
	}
	m.s = t
	return true
}

// Done reports whether the output so far is a whole sentence.
func (m *Matcher) Done() bool {
	if m.d != nil {
		m.d.mu.Lock()
		defer m.d.mu.Unlock()
		return m.d.states[m.ds].final
	}
	return m.s.done()
}
