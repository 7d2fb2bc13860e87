package constrain

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"unsafe"
)

// Language is a compiled output language, independent of any vocabulary:
// compile it once per schema, pattern or choice list and share it between
// requests. It is safe for concurrent use.
type Language struct {
	n       *nfa // nil: the JSON object automaton
	dist    []int32
	maxDist int32

	mu   sync.Mutex
	dfas map[*Vocab]*dfa
}

// jsonObject is the one JSON object language.
var jsonObject = &Language{}

// JSONObjectLanguage is response_format json_object's language: one JSON
// object.
func JSONObjectLanguage() *Language { return jsonObject }

func newLanguage(b *builder, end int32, what string) (*Language, error) {
	if b.big {
		return nil, fmt.Errorf("%s needs an automaton of more than %d states; simplify it", what, maxStates)
	}
	b.n.final = end
	l := &Language{n: &b.n, dist: b.n.distances()}
	if l.dist[0] < 0 {
		return nil, fmt.Errorf("%s accepts no output at all", what)
	}
	for _, d := range l.dist {
		l.maxDist = max(l.maxDist, d)
	}
	return l, nil
}

// CompileSchema compiles a JSON schema (the subset OpenAI's strict mode
// allows, with enum, const, pattern, formats, bounds on lengths, items and
// numbers, anyOf and local $refs). The output is one JSON value the schema
// accepts.
func CompileSchema(schema []byte) (*Language, error) {
	root, err := decodeOrdered(schema)
	if err != nil {
		return nil, &SchemaError{Msg: "not valid JSON: " + err.Error()}
	}
	b := newBuilder()
	c := &schemaCompiler{b: b, root: root, inRef: map[string]int{}}
	end := c.value(0, root, "")
	if c.err != nil {
		return nil, c.err
	}
	l, err := newLanguage(b, end, "the schema")
	if err != nil {
		return nil, &SchemaError{Msg: err.Error()}
	}
	return l, nil
}

// CompileRegex compiles a regular expression in RE2 syntax; the output is
// a text it matches whole.
func CompileRegex(pattern string) (*Language, error) {
	re, err := parseRegex(pattern)
	if err != nil {
		return nil, err
	}
	b := newBuilder()
	end, err := b.regex(0, re, false)
	if err != nil {
		return nil, err
	}
	return newLanguage(b, end, "the pattern")
}

// CompileChoice is the language of exactly one of choices.
func CompileChoice(choices []string) (*Language, error) {
	if len(choices) == 0 {
		return nil, errors.New("the choice list is empty")
	}
	b := newBuilder()
	brs := make([]func(int32) int32, len(choices))
	for i, c := range choices {
		brs[i] = func(s int32) int32 { return b.lit(s, c) }
	}
	return newLanguage(b, b.alt(0, brs...), "the choice list")
}

// dfaFor returns l's automaton over v's tokens, built on first use.
func (l *Language) dfaFor(v *Vocab) *dfa {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dfas == nil {
		l.dfas = map[*Vocab]*dfa{}
	}
	d := l.dfas[v]
	if d == nil {
		d = &dfa{l: l, v: v, index: map[string]int32{}, seen: make([]uint32, len(l.n.states))}
		d.add(d.closure([]int32{0}))
		l.dfas[v] = d
	}
	return d
}

// dfa is the deterministic automaton of a Language, built lazily a state at
// a time as outputs reach them (the subset construction), with each state's
// token mask.
type dfa struct {
	l *Language
	v *Vocab

	mu     sync.Mutex
	states []dstate
	index  map[string]int32 // by the NFA states' set
	masks  int              // states holding a mask
	seen   []uint32         // closure's marks, by NFA state
	gen    uint32
	stack  []int32 // walk's states, by depth in the trie
}

type dstate struct {
	set   []int32    // ε-closed NFA states, sorted
	next  [256]int32 // by byte: 0 not yet known, -1 dead, else state+1
	dist  int32      // fewest bytes to a whole output
	final bool
	mask  *mask
}

// mask is a state's allowed text tokens, a bit per token, and the largest
// distance to a whole output that one of them leads to.
type mask struct {
	bits    []uint64
	maxNext int32
}

func (d *dfa) closure(set []int32) []int32 {
	d.gen++
	out := set[:0:0]
	stack := slices.Clone(set)
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if d.seen[s] == d.gen {
			continue
		}
		d.seen[s] = d.gen
		out = append(out, s)
		stack = append(stack, d.l.n.states[s].eps...)
	}
	slices.Sort(out)
	return out
}

func (d *dfa) add(set []int32) int32 {
	key := unsafe.String((*byte)(unsafe.Pointer(unsafe.SliceData(set))), len(set)*4)
	if id, ok := d.index[key]; ok {
		return id
	}
	st := dstate{set: set, dist: -1}
	for _, s := range set {
		if s == d.l.n.final {
			st.final = true
		}
		if ds := d.l.dist[s]; ds >= 0 && (st.dist < 0 || ds < st.dist) {
			st.dist = ds
		}
	}
	id := int32(len(d.states))
	d.states = append(d.states, st)
	d.index[key] = id
	return id
}

// step returns the state after b from s, or -1; d.mu is held.
func (d *dfa) step(s int32, b byte) int32 {
	if n := d.states[s].next[b]; n != 0 {
		return n - 1
	}
	var to []int32
	for _, ns := range d.states[s].set {
		for _, a := range d.l.n.states[ns].arcs {
			if a.lo <= b && b <= a.hi {
				to = append(to, a.to)
			}
		}
	}
	next := int32(-1)
	if len(to) > 0 {
		if set := d.closure(to); len(set) > 0 {
			next = d.add(set)
			// A state from which no output can be finished is dead.
			if d.states[next].dist < 0 {
				next = -1
			}
		}
	}
	d.states[s].next[b] = next + 1
	return next
}

// maskOf returns s's mask, computed on first use; d.mu is held.
func (d *dfa) maskOf(s int32) *mask {
	if m := d.states[s].mask; m != nil {
		return m
	}
	if d.masks >= maxMasks {
		// Many states: drop the masks and compute them again as needed.
		for i := range d.states {
			d.states[i].mask = nil
		}
		d.masks = 0
	}
	m := &mask{bits: make([]uint64, (d.v.size+63)/64)}
	d.walk(s, func(id, to int32) {
		m.bits[id/64] |= 1 << (id % 64)
		m.maxNext = max(m.maxNext, d.states[to].dist)
	})
	d.states[s].mask = m
	d.masks++
	return m
}

// walk calls f with every text token that s reads whole and the state it
// reads it into; d.mu is held.
func (d *dfa) walk(s int32, f func(id, to int32)) {
	v := d.v
	if cap(d.stack) < v.depth+1 {
		d.stack = make([]int32, v.depth+1)
	}
	stack := d.stack[:v.depth+1]
	stack[0] = s
	for i := 0; i < len(v.trie); {
		n := &v.trie[i]
		from := stack[n.depth-1]
		t := d.states[from].next[n.b] - 1 // known already, mostly
		if t == -1 {
			t = d.step(from, n.b)
		}
		if t < 0 {
			i = int(n.end)
			continue
		}
		stack[n.depth] = t
		for _, id := range v.toks[n.tokLo:n.tokHi] {
			f(id, t)
		}
		i++
	}
}
