package constrain

import (
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
	nodes []node // nodes[0] is the root
	eog   []int32

	mu    sync.Mutex
	masks map[state][]uint64 // allowed text tokens by state, a bit per token
}

// maxMasks bounds the mask cache (a 128k vocabulary's mask is 16 KiB).
const maxMasks = 4096

type node struct {
	edges  []edge  // by byte, sorted
	tokens []int32 // the tokens whose bytes end here
}

type edge struct {
	b    byte
	next int32
}

// NewVocab indexes tok's vocabulary. Control tokens are left out: they are
// never text, and the end-of-generation ones are allowed only once a
// sentence is whole.
func NewVocab(tok *tokenizer.Tokenizer) *Vocab {
	v := &Vocab{size: tok.VocabSize(), nodes: []node{{}}, masks: map[state][]uint64{}}
	for id := range int32(v.size) {
		if tok.IsEOG(id) {
			v.eog = append(v.eog, id)
		}
		if tok.IsControl(id) {
			continue
		}
		p := tok.Piece(id)
		if len(p) == 0 {
			continue
		}
		n := int32(0)
		for _, b := range p {
			n = v.child(n, b)
		}
		v.nodes[n].tokens = append(v.nodes[n].tokens, id)
	}
	return v
}

func (v *Vocab) child(n int32, b byte) int32 {
	es := v.nodes[n].edges
	i, ok := slices.BinarySearchFunc(es, b, func(e edge, b byte) int { return int(e.b) - int(b) })
	if ok {
		return es[i].next
	}
	next := int32(len(v.nodes))
	v.nodes = append(v.nodes, node{})
	v.nodes[n].edges = slices.Insert(v.nodes[n].edges, i, edge{b, next})
	return next
}

// allowed returns the text tokens that s can read whole, a bit per token,
// computed once per state.
func (v *Vocab) allowed(s state) []uint64 {
	v.mu.Lock()
	m, ok := v.masks[s]
	v.mu.Unlock()
	if ok {
		return m
	}
	m = make([]uint64, (v.size+63)/64)
	v.walk(0, s, m)
	v.mu.Lock()
	if len(v.masks) >= maxMasks {
		clear(v.masks) // deep, varied nesting: start the cache again
	}
	v.masks[s] = m
	v.mu.Unlock()
	return m
}

// walk marks the tokens below node n that s reads: a branch ends at the
// first byte no sentence continues with.
func (v *Vocab) walk(n int32, s state, m []uint64) {
	for _, e := range v.nodes[n].edges {
		t := s
		if !t.step(e.b) {
			continue
		}
		for _, id := range v.nodes[e.next].tokens {
			m[id/64] |= 1 << (id % 64)
		}
		v.walk(e.next, t, m)
	}
}

// Matcher follows one sample's output through a language. Its zero value is
// not usable: make it with JSONObject.
type Matcher struct {
	v    *Vocab
	s    state
	keep []float32 // Mask's scratch: the end-of-generation logits
}

// JSONObject returns a matcher at the start of response_format json_object's
// language: one JSON object.
func JSONObject(v *Vocab) *Matcher { return &Matcher{v: v, keep: make([]float32, len(v.eog))} }

// Mask sets to -Inf the logit of every token that would leave the language:
// text tokens the automaton cannot read whole, and end-of-generation tokens
// until the sentence is whole.
func (m *Matcher) Mask(logits []float32) {
	done := m.s.done()
	if done {
		for i, id := range m.v.eog {
			m.keep[i] = logits[id]
		}
	}
	inf := float32(math.Inf(-1))
	// Only the tokens refused are touched, a word of the mask at a time.
	for w, allow := range m.v.allowed(m.s) {
		base := w * 64
		for off := ^allow; off != 0; off &= off - 1 {
			if i := base + bits.TrailingZeros64(off); i < len(logits) {
				logits[i] = inf
			}
		}
	}
	if done {
		for i, id := range m.v.eog {
			logits[id] = m.keep[i]
		}
	}
}

// Advance reads token id, which Mask allowed; it reports false for a token
// the language does not continue with (the matcher then stays as it was).
func (m *Matcher) Advance(tok *tokenizer.Tokenizer, id int32) bool {
	if tok.IsEOG(id) {
		return m.s.done()
	}
	t := m.s
	for _, b := range tok.Piece(id) {
		if !t.step(b) {
			return false
		}
	}
	m.s = t
	return true
}

// Done reports whether the output so far is a whole sentence.
func (m *Matcher) Done() bool { return m.s.done() }
