package constrain

import "unicode/utf8"

// nfa is a nondeterministic automaton over bytes, built by the schema,
// regular-expression and choice compilers. State 0 is the start.
type nfa struct {
	states []nstate
	final  int32
}

type nstate struct {
	eps  []int32
	arcs []arc
}

// arc reads one byte in [lo, hi].
type arc struct {
	lo, hi byte
	to     int32
}

// maxStates bounds an automaton's size: a schema or pattern that needs more
// (huge repeat counts, deep nesting) is refused rather than compiled.
const maxStates = 200_000

// builder grows an nfa. Each construction takes the state it starts from
// and returns the state it ends in; it fails only by growing too big, which
// is reported once at the end.
type builder struct {
	n   nfa
	big bool
}

func newBuilder() *builder { return &builder{n: nfa{states: make([]nstate, 1)}} }

func (b *builder) state() int32 {
	if len(b.n.states) >= maxStates {
		b.big = true
		return 0
	}
	b.n.states = append(b.n.states, nstate{})
	return int32(len(b.n.states) - 1)
}

func (b *builder) eps(from, to int32) {
	if !b.big {
		b.n.states[from].eps = append(b.n.states[from].eps, to)
	}
}

func (b *builder) rng(from int32, lo, hi byte) int32 {
	to := b.state()
	if !b.big {
		b.n.states[from].arcs = append(b.n.states[from].arcs, arc{lo, hi, to})
	}
	return to
}

// lit reads s.
func (b *builder) lit(from int32, s string) int32 {
	for i := range len(s) {
		from = b.rng(from, s[i], s[i])
	}
	return from
}

// alt reads any one of the branches.
func (b *builder) alt(from int32, branches ...func(int32) int32) int32 {
	end := b.state()
	for _, br := range branches {
		b.eps(br(from), end)
	}
	return end
}

// opt reads body or nothing. Its end is a state of its own: joining the
// skip to body's end would let a loop in body (a star's) be entered from
// the skip.
func (b *builder) opt(from int32, body func(int32) int32) int32 {
	end := b.state()
	b.eps(body(from), end)
	b.eps(from, end)
	return end
}

// star reads body any number of times.
func (b *builder) star(from int32, body func(int32) int32) int32 {
	loop := b.state()
	b.eps(from, loop)
	b.eps(body(loop), loop)
	return loop
}

// repeat reads body between lo and hi times; hi < 0 means no bound.
func (b *builder) repeat(from int32, lo, hi int, body func(int32) int32) int32 {
	for range lo {
		if b.big {
			return from
		}
		from = body(from)
	}
	if hi < 0 {
		return b.star(from, body)
	}
	end := b.state()
	for range hi - lo {
		if b.big {
			return end
		}
		b.eps(from, end)
		from = body(from)
	}
	b.eps(from, end)
	return end
}

// sepRepeat reads between lo and hi items separated by sep; hi < 0 means no
// bound.
func (b *builder) sepRepeat(from int32, lo, hi int, item, sep func(int32) int32) int32 {
	if hi == 0 {
		return from
	}
	rest := func(s int32) int32 { return item(sep(s)) }
	restHi := hi - 1
	if hi < 0 {
		restHi = -1
	}
	one := func(s int32) int32 { return b.repeat(item(s), max(lo-1, 0), restHi, rest) }
	if lo == 0 {
		return b.opt(from, one)
	}
	return one(from)
}

// runes reads one UTF-8 encoded character in one of the ranges (pairs of
// inclusive bounds, as regexp/syntax writes them).
func (b *builder) runes(from int32, ranges []rune) int32 {
	end := b.state()
	for i := 0; i+1 < len(ranges); i += 2 {
		utf8Ranges(ranges[i], ranges[i+1], func(seq []arc) {
			s := from
			for j, a := range seq {
				if j == len(seq)-1 {
					if !b.big {
						b.n.states[s].arcs = append(b.n.states[s].arcs, arc{a.lo, a.hi, end})
					}
					break
				}
				s = b.rng(s, a.lo, a.hi)
			}
		})
	}
	return end
}

// utf8Ranges calls emit with sequences of byte ranges whose concatenations
// are exactly the UTF-8 encodings of the characters in [lo, hi], leaving
// out surrogates (which UTF-8 cannot encode).
func utf8Ranges(lo, hi rune, emit func([]arc)) {
	if hi > utf8.MaxRune {
		hi = utf8.MaxRune
	}
	if lo > hi {
		return
	}
	if lo < 0xD800 && hi > 0xDFFF {
		utf8Ranges(lo, 0xD7FF, emit)
		utf8Ranges(0xE000, hi, emit)
		return
	}
	if lo >= 0xD800 && hi <= 0xDFFF {
		return
	}
	if lo >= 0xD800 && lo <= 0xDFFF {
		lo = 0xE000
	}
	if hi >= 0xD800 && hi <= 0xDFFF {
		hi = 0xD7FF
	}
	if lo > hi {
		return
	}
	// Split where the encoded length changes.
	for _, edge := range []rune{0x7F, 0x7FF, 0xFFFF} {
		if lo <= edge && hi > edge {
			utf8Ranges(lo, edge, emit)
			utf8Ranges(edge+1, hi, emit)
			return
		}
	}
	n := utf8.RuneLen(lo)
	if n == 1 {
		emit([]arc{{byte(lo), byte(hi), 0}})
		return
	}
	// Split until every continuation byte but the ones that vary together
	// spans its whole range.
	for i := 1; i < n; i++ {
		m := rune(1)<<(6*i) - 1
		if lo&^m != hi&^m {
			if lo&m != 0 {
				utf8Ranges(lo, lo|m, emit)
				utf8Ranges((lo|m)+1, hi, emit)
				return
			}
			if hi&m != m {
				utf8Ranges(lo, (hi&^m)-1, emit)
				utf8Ranges(hi&^m, hi, emit)
				return
			}
		}
	}
	var a, z [utf8.UTFMax]byte
	utf8.EncodeRune(a[:], lo)
	utf8.EncodeRune(z[:], hi)
	seq := make([]arc, n)
	for i := range n {
		seq[i] = arc{a[i], z[i], 0}
	}
	emit(seq)
}

// distances returns, for every state, the fewest bytes that take it to the
// final state (-1 where none do), found backwards from the final state.
func (n *nfa) distances() []int32 {
	type edge struct {
		from int32
		w    int32
	}
	back := make([][]edge, len(n.states))
	for from, s := range n.states {
		for _, to := range s.eps {
			back[to] = append(back[to], edge{int32(from), 0})
		}
		for _, a := range s.arcs {
			back[a.to] = append(back[a.to], edge{int32(from), 1})
		}
	}
	dist := make([]int32, len(n.states))
	for i := range dist {
		dist[i] = -1
	}
	// A 0-1 breadth-first search, a level at a time: epsilons cost nothing.
	dist[n.final] = 0
	cur := []int32{n.final}
	for level := int32(0); len(cur) > 0; level++ {
		var next []int32
		for i := 0; i < len(cur); i++ {
			s := cur[i]
			if dist[s] != level {
				continue // reached more cheaply since it was queued
			}
			for _, e := range back[s] {
				d := level + e.w
				if dist[e.from] >= 0 && dist[e.from] <= d {
					continue
				}
				dist[e.from] = d
				if e.w == 0 {
					cur = append(cur, e.from)
				} else {
					next = append(next, e.from)
				}
			}
		}
		cur = next
	}
	return dist
}
