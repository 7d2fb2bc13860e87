package tokenizer

import "slices"

// merger is the scratch space of the merges, reused from one stretch of
// text (SPM) or word (BPE) to the next. A text of n bytes costs 4n bytes of
// symbols and about 9n of candidates at most, whatever its content.
type merger struct {
	// n is indexed by byte offset: n[i] is the length of the symbol that
	// starts at i, 0 inside a symbol. A symbol's right neighbour starts at
	// i+n[i]; its left one is found by walking back over the zeros, never
	// further than a token's length. A symbol merged into its left
	// neighbour becomes inside of it, so positions only ever die.
	n   []int32
	q   []cand
	key []byte
}

// cand is a candidate merge of the symbol at left with its right
// neighbour, 8 bytes. prio is a BPE rank or an SPM score class, lower
// first; ties go to the leftmost pair, as in llama.cpp. Candidates are
// deleted lazily: when popped, one is valid only if the pair at left is
// still the one it was queued for. Symbols only grow and a pair's start is
// fixed, so the pair is unchanged exactly when its joint length is: a
// changed pair is longer.
type cand struct {
	prio uint32
	left int32
}

func (a cand) before(b cand) bool {
	return a.prio < b.prio || (a.prio == b.prio && a.left < b.left)
}

// reset sizes the symbols for a text of size bytes and empties the queue,
// with room for a candidate per symbol and an eighth more: compact makes
// room when that fills.
func (m *merger) reset(size int) {
	m.n = slices.Grow(m.n[:0], size)[:size]
	clear(m.n)
	m.q = slices.Grow(m.q[:0], size+size/8+16)
}

// prev is the start of the symbol before the one at i, -1 if none.
func (m *merger) prev(i int32) int32 {
	j := i - 1
	for j >= 0 && m.n[j] == 0 {
		j--
	}
	return j
}

func (m *merger) push(c cand) {
	q := append(m.q, c)
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q[i].before(q[p]) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
	m.q = q
}

func (m *merger) pop() cand {
	q := m.q
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	m.q = q
	m.down(0)
	return top
}

func (m *merger) down(i int) {
	q := m.q
	for {
		l, r, b := 2*i+1, 2*i+2, i
		if l < len(q) && q[l].before(q[b]) {
			b = l
		}
		if r < len(q) && q[r].before(q[b]) {
			b = r
		}
		if b == i {
			return
		}
		q[i], q[b] = q[b], q[i]
		i = b
	}
}

// makeRoom, when the queue is at its capacity, drops the candidates valid
// says are stale and rebuilds the heap: a valid one stands for a current
// pair, so at most one a symbol remains and the queue keeps its first size.
func (m *merger) makeRoom(valid func(cand) bool) {
	if len(m.q) < cap(m.q) {
		return
	}
	m.q = slices.DeleteFunc(m.q, func(c cand) bool { return !valid(c) })
	for i := len(m.q)/2 - 1; i >= 0; i-- {
		m.down(i)
	}
}
