package tokenizer

import "slices"

// merger is the scratch space of the merges, reused from one stretch of
// text (SPM) or word (BPE) to the next. A text of n bytes costs 2n bytes of
// symbols and 9 bytes a candidate, at most one a byte.
type merger struct {
	// n is indexed by byte offset: n[i] is the length of the symbol that
	// starts at i, 0 inside a symbol. A symbol is a character or a merge's
	// result, which New holds to 65535 bytes. A symbol's right neighbour
	// starts at i+n[i]; its left one is found by walking back over the
	// zeros, never further than a token's length. A symbol merged into its
	// left neighbour becomes inside of it, so positions only ever die.
	n   []uint16
	q   []cand
	key []byte

	esc    []byte // SPM: a short stretch escaped
	spaces bool   // SPM: the text merged may have spaces, to read as U+2581

	// done of the text's total bytes come before the stretch or word
	// merged (base before the fragment), and its ids start at first in
	// out, for growIDs to extrapolate from.
	done, base, total, first int
}

// growIDs makes room for k more ids in out (see growAtRate).
func (m *merger) growIDs(out []int32, k int) []int32 {
	return growAtRate(out, k, m.first, m.done, m.total)
}

// growAtRate makes room for k more elements in s, whose elements from
// first on are the output of work done in part (done of total). Once a
// sixteenth is done, it grows s by what the rest will need at the rate so
// far, and an eighth more; until then it doubles. Doubling all along
// allocates up to four times the final size, all of it held in the heap
// until a collection comes.
func growAtRate[T any](s []T, k, first, done, total int) []T {
	if cap(s)-len(s) >= k {
		return s
	}
	if done == 0 || done < total/16 || done >= total {
		return grow(s, k)
	}
	rest := int(int64(len(s)-first) * int64(total-done) / int64(done) * 9 / 8)
	return slices.Grow(s, max(k, rest))
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

// reset sizes the symbols for a text of size bytes and empties the queue.
func (m *merger) reset(size int) {
	m.n = slices.Grow(m.n[:0], size)[:size]
	clear(m.n)
	m.q = m.q[:0]
}

// longText is the length past which a text's first candidates are counted
// before the queue is sized for them, at the cost of looking each up
// twice, instead of sizing the queue for a candidate per byte.
const longText = 4096

// sizeQueue makes room for first candidates and an eighth more (makeRoom
// makes room when that fills), and heapify orders them once they are in.
func (m *merger) sizeQueue(first int) {
	m.q = slices.Grow(m.q[:0], first+first/8+16)
}

func (m *merger) heapify() {
	for i := len(m.q)/2 - 1; i >= 0; i-- {
		m.down(i)
	}
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
// pair, and there are fewer pairs after every merge. If that leaves less
// than an eighth free, the queue grows, so that it is not sifted again at
// every push.
func (m *merger) makeRoom(valid func(cand) bool) {
	if len(m.q) < cap(m.q) {
		return
	}
	m.q = slices.DeleteFunc(m.q, func(c cand) bool { return !valid(c) })
	m.heapify()
	if free := cap(m.q) - len(m.q); free < cap(m.q)/8 {
		m.q = slices.Grow(m.q, cap(m.q)/4)
	}
}

// grow makes room for n more elements by at least doubling s: append grows
// a long slice by a quarter at a time, which allocates five times its final
// size along the way, all of it in the heap until a collection comes.
func grow[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	return slices.Grow(s, max(n, len(s)))
}

// mergePairs merges the symbols of a text of size bytes, whose lengths the
// caller set in m.n, best candidate first until none is left, and returns
// how many symbols remain. pair gives the candidate of the symbol at l and
// its right neighbour, if they make a token; valid says whether a queued
// candidate's pair is still current.
func (m *merger) mergePairs(size int32, pair func(l int32) (cand, bool), valid func(cand) bool) int {
	n := m.n
	first := int(size)
	if size > longText {
		first = 0
		for l := int32(0); l < size; l += int32(n[l]) {
			if _, ok := pair(l); ok {
				first++
			}
		}
	}
	m.sizeQueue(first)
	for l := int32(0); l < size; l += int32(n[l]) {
		if c, ok := pair(l); ok {
			m.q = append(m.q, c)
		}
	}
	m.heapify()
	try := func(l int32) {
		if c, ok := pair(l); ok {
			m.makeRoom(valid)
			m.push(c)
		}
	}
	for len(m.q) > 0 {
		c := m.pop()
		if !valid(c) {
			continue
		}
		l := c.left
		r := l + int32(n[l])
		n[l] += n[r]
		n[r] = 0
		try(m.prev(l))
		try(l)
	}
	k := 0
	for i := int32(0); i < size; i += int32(n[i]) {
		k++
	}
	return k
}
