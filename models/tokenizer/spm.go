package tokenizer

import (
	"math"
	"slices"
)

// spmSpace is SentencePiece's visible space, U+2581.
const spmSpace = "\u2581"

// symbol is a run of the text being merged, linked to its live neighbours.
// A symbol merged into its left neighbour keeps n == 0. Offsets are int32,
// as in the merge queue, so that a long text costs 16 bytes a character
// (texts are limited to 2 GiB).
type symbol struct {
	start, n   int32
	prev, next int32
}

// splitSymbols cuts s into one symbol per UTF-8 sequence, sized by the lead
// byte alone as llama.cpp does (invalid bytes stand alone; a truncated
// sequence at the end is cut short). It counts them first and grows syms
// once: growing a long text's symbols by appending would allocate five
// times their size.
func splitSymbols[S string | []byte](s S, syms []symbol) []symbol {
	n := 0
	for off := 0; off < len(s); off += utf8Len(s[off]) {
		n++
	}
	syms = slices.Grow(syms, n)
	for off := 0; off < len(s); {
		n := min(utf8Len(s[off]), len(s)-off)
		next := int32(len(syms) + 1)
		if off+n == len(s) {
			next = -1
		}
		syms = append(syms, symbol{start: int32(off), n: int32(n), prev: int32(len(syms) - 1), next: next})
		off += n
	}
	return syms
}

// bigram is a candidate merge of a symbol with its right neighbour, 12
// bytes. size is their joint length when queued: if either has changed
// since, the candidate is stale. The right neighbour is not kept: while the
// left symbol keeps its length it keeps its neighbour (only a merge into it
// changes either), so merge finds it as left's next.
type bigram struct {
	left int32
	size int32
	prio uint32 // lower merges first: a BPE rank, or spmPrio of a score
}

// spmPrio orders SPM scores as bigram.prio does, highest first: the float's
// bits made to sort as unsigned integers, then inverted. Both zeros are the
// same score.
func spmPrio(score float32) uint32 {
	if score == 0 {
		score = 0
	}
	b := math.Float32bits(score)
	if b&(1<<31) != 0 {
		b = ^b
	} else {
		b |= 1 << 31
	}
	return ^b
}

// bigramQueue is a binary heap of bigrams, lowest prio first, ties to the
// leftmost pair, as in llama.cpp.
type bigramQueue struct {
	items []bigram
}

func before(a, b *bigram) bool {
	return a.prio < b.prio || (a.prio == b.prio && a.left < b.left)
}

func (q *bigramQueue) push(b bigram) {
	q.items = append(q.items, b)
	i := len(q.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !before(&q.items[i], &q.items[p]) {
			break
		}
		q.items[i], q.items[p] = q.items[p], q.items[i]
		i = p
	}
}

func (q *bigramQueue) pop() bigram {
	top := q.items[0]
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items = q.items[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && before(&q.items[l], &q.items[m]) {
			m = l
		}
		if r < last && before(&q.items[r], &q.items[m]) {
			m = r
		}
		if m == i {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}

// merge joins b's left symbol's right neighbour into it if the candidate is
// still current, and reports whether it did.
func merge(syms []symbol, b bigram) bool {
	l := &syms[b.left]
	if l.n == 0 || l.next < 0 {
		return false
	}
	r := &syms[l.next]
	if r.n == 0 || l.n+r.n != b.size {
		return false
	}
	l.n += r.n
	r.n = 0
	l.next = r.next
	if r.next >= 0 {
		syms[r.next].prev = b.left
	}
	return true
}

// spmJoins lists every pair of adjacent symbols (as symbolPair packs them)
// that occurs inside some token: a merge can only join two symbols whose
// pair is listed, since every merge makes a token.
func spmJoins(tokens []string) map[uint64]struct{} {
	joins := map[uint64]struct{}{}
	var syms []symbol
	for _, s := range tokens {
		syms = splitSymbols(s, syms[:0])
		for i := 1; i < len(syms); i++ {
			a, b := syms[i-1], syms[i]
			joins[symbolPair(s[a.start:a.start+a.n], s[b.start:b.start+b.n])] = struct{}{}
		}
	}
	return joins
}

// symbolPair packs two symbols of at most 4 bytes each. Zero padding can
// make two pairs alike (a cut-short sequence and a full one ending in a NUL
// byte), which only keeps a boundary that could have been cut.
func symbolPair(a, b string) uint64 {
	pack := func(s string) uint64 {
		var v uint64
		for i := range 4 {
			v <<= 8
			if i < len(s) {
				v |= uint64(s[i])
			}
		}
		return v
	}
	return pack(a)<<32 | pack(b)
}

// spmMerger is the scratch space of encodeSPM, reused from one stretch of
// text to the next.
type spmMerger struct {
	syms []symbol
	q    bigramQueue
}

// encodeSPM appends the tokens of text (spaces already escaped) to out, as
// llama.cpp's llm_tokenizer_spm, which merges over the whole text: where no
// token holds the two symbols either side of a boundary, no merge can ever
// cross it, so the merges on either side are independent of the other's
// and come out the same when the text is cut there and each side merged
// alone. encodeSPM cuts it at every such boundary, so that its memory
// follows the longest stretch between them rather than the text.
func (t *Tokenizer) encodeSPM(text string, out []int32) []int32 {
	var m spmMerger
	start, prev := 0, -1
	for off := 0; off < len(text); {
		n := min(utf8Len(text[off]), len(text)-off)
		if prev >= 0 {
			if _, ok := t.joins[symbolPair(text[prev:off], text[off:off+n])]; !ok {
				out = t.mergeSPM(text[start:off], out, &m)
				start = off
			}
		}
		prev = off
		off += n
	}
	return t.mergeSPM(text[start:], out, &m)
}

// mergeSPM appends the tokens of text to out: starting from single
// characters, it keeps merging the adjacent pair whose concatenation is the
// highest-scoring vocabulary entry. A final piece that is not in the
// vocabulary can only be a single character (every merge produces a
// vocabulary entry), so it is spelled with byte tokens; llama.cpp's
// re-segmentation of merged pieces never applies. Called on a whole text,
// it is llama.cpp's algorithm as it stands, and the tests' oracle for
// encodeSPM's cuts.
func (t *Tokenizer) mergeSPM(text string, out []int32, m *spmMerger) []int32 {
	syms := splitSymbols(text, m.syms[:0])
	m.syms = syms
	if len(syms) == 0 {
		return out
	}
	q := &m.q
	// One candidate per adjacent pair to start with; few more later.
	q.items = slices.Grow(q.items[:0], len(syms))
	try := func(left, right int32) {
		if left < 0 || right < 0 {
			return
		}
		l, r := syms[left], syms[right]
		id, ok := t.ids[text[l.start:r.start+r.n]]
		if !ok {
			return
		}
		var score float32
		if t.scores != nil {
			score = t.scores[id]
		}
		q.push(bigram{left: left, size: l.n + r.n, prio: spmPrio(score)})
	}
	for i := int32(1); i < int32(len(syms)); i++ {
		try(i-1, i)
	}
	for len(q.items) > 0 {
		b := q.pop()
		if !merge(syms, b) {
			continue
		}
		try(syms[b.left].prev, b.left)
		try(b.left, syms[b.left].next)
	}
	for i := int32(0); i != -1; i = syms[i].next {
		s := syms[i]
		piece := text[s.start : s.start+s.n]
		if id, ok := t.ids[piece]; ok {
			out = append(out, id)
			continue
		}
		for j := 0; j < len(piece); j++ {
			if id := t.byteTokens[piece[j]]; id >= 0 {
				out = append(out, id)
			}
		}
	}
	return out
}
