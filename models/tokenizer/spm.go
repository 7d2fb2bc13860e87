package tokenizer

import (
	"math"
	"slices"
	"strings"
)

// spmSpace is SentencePiece's visible space, U+2581.
const spmSpace = "\u2581"

// spmPrio orders SPM scores highest first: the float's bits made to sort
// as unsigned integers, then inverted. Both zeros are the same score.
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

// spmJoins lists every pair of adjacent symbols (as symbolPair packs them)
// that occurs inside some token: a merge can only join two symbols whose
// pair is listed, since every merge makes a token.
func spmJoins(tokens []string) map[uint64]struct{} {
	joins := map[uint64]struct{}{}
	for _, s := range tokens {
		prev := -1
		for off := 0; off < len(s); {
			n := min(utf8Len(s[off]), len(s)-off)
			if prev >= 0 {
				joins[symbolPair(s[prev:off], s[off:off+n])] = struct{}{}
			}
			prev = off
			off += n
		}
	}
	return joins
}

// spmClasses numbers the distinct scores of the tokens, highest first, and
// gives each class the number of characters and of bytes its tokens have,
// or -1 where they differ: a candidate merge's class then says how long its
// pair was.
func spmClasses(n int, scores []float32, tokens []string) (class []uint32, chars, size []int32) {
	prios := make([]uint32, n)
	for id := range prios {
		var score float32
		if scores != nil {
			score = scores[id]
		}
		prios[id] = spmPrio(score)
	}
	distinct := slices.Compact(slices.Sorted(slices.Values(prios)))
	class = make([]uint32, n)
	chars, size = make([]int32, len(distinct)), make([]int32, len(distinct))
	for i := range chars {
		chars[i], size[i] = -2, -2
	}
	for id, p := range prios {
		c, _ := slices.BinarySearch(distinct, p)
		class[id] = uint32(c)
		chars[c] = alike(chars[c], spmChars(tokens[id]))
		size[c] = alike(size[c], int32(len(tokens[id])))
	}
	return class, chars, size
}

// alike is k if have is k or unset (-2), else -1.
func alike(have, k int32) int32 {
	if have == -2 || have == k {
		return k
	}
	return -1
}

// spmChars counts the symbols s starts as, sized as splitting the text
// sizes them.
func spmChars[S string | []byte](s S) int32 {
	var k int32
	for off := 0; off < len(s); off += utf8Len(s[off]) {
		k++
	}
	return k
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

// encodeSPM appends the tokens of text, after a space if prefix is set, to
// out, as llama.cpp's llm_tokenizer_spm, which merges over the whole text
// with its spaces escaped: a space is read as U+2581 here instead (the two
// are alike to the merges), so that the text needs no escaped copy. Where
// no token holds the two symbols either side of a boundary, no merge can
// ever cross it, so the merges on either side are independent of the
// other's and come out the same when the text is cut there and each side
// merged alone. encodeSPM cuts it at every such boundary, so that its
// memory follows the longest stretch between them rather than the text.
//
// Reading spaces as U+2581 splits the text into the same characters as
// escaping them would, except where a space follows a multi-byte lead byte
// closer than the length it announces (invalid UTF-8): the lead would take
// part of the escaped space, so such a text is escaped after all, when
// the first is found.
func (t *Tokenizer) encodeSPM(text string, prefix bool, out []int32, m *merger) []int32 {
	first := len(out)
	start, prev := 0, ""
	if prefix {
		prev = " "
	}
	// The prefix space is copied with the first stretch alone.
	pending := prefix
	merge := func(end int) {
		s := text[start:end]
		if pending {
			s, pending = " "+s, false
		}
		m.done = m.base + start
		out = t.mergeStretch(s, out, m)
	}
	for off := 0; off < len(text); {
		n := min(utf8Len(text[off]), len(text)-off)
		if n > 1 && strings.IndexByte(text[off+1:off+n], ' ') >= 0 {
			return t.encodeSPM(strings.ReplaceAll(text, " ", spmSpace), prefix, out[:first], m)
		}
		sym := text[off : off+n]
		if prev != "" {
			if _, ok := t.joins[symbolPair(spmSymbol(prev), spmSymbol(sym))]; !ok {
				merge(off)
				start = off
			}
		}
		prev = sym
		off += n
	}
	merge(len(text))
	return out
}

func spmSymbol(s string) string {
	if s == " " {
		return spmSpace
	}
	return s
}

// spmID looks piece up in the vocabulary, with its spaces as U+2581 if
// m.spaces says it may have any.
func spmID[S string | []byte](t *Tokenizer, piece S, m *merger) (int32, bool) {
	if !m.spaces {
		id, ok := t.ids[string(piece)]
		return id, ok
	}
	m.key = appendEscaped(m.key[:0], piece)
	id, ok := t.ids[string(m.key)]
	return id, ok
}

// appendEscaped appends s to dst with its spaces as U+2581.
func appendEscaped[S string | []byte](dst []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			dst = append(dst, spmSpace...)
		} else {
			dst = append(dst, s[i])
		}
	}
	return dst
}

// mergeStretch appends the tokens of text to out: starting from single
// characters, it keeps merging the adjacent pair whose concatenation is the
// highest-scoring vocabulary entry, the leftmost of equals. A final piece
// that is not in the vocabulary can only be a single character (every
// merge produces a vocabulary entry), so it is spelled with byte tokens;
// llama.cpp's re-segmentation of merged pieces never applies.
//
// A short stretch with spaces is merged escaped, which looks pieces up as
// they are; a long one reads its spaces as U+2581 at each look-up instead,
// to cost no more than its length.
func (t *Tokenizer) mergeStretch(text string, out []int32, m *merger) []int32 {
	m.spaces = strings.IndexByte(text, ' ') >= 0
	if !m.spaces || len(text) > longText {
		return mergeSPM(t, text, out, m)
	}
	m.esc = appendEscaped(m.esc[:0], text)
	m.spaces = false
	return mergeSPM(t, m.esc, out, m)
}

func mergeSPM[S string | []byte](t *Tokenizer, text S, out []int32, m *merger) []int32 {
	size := int32(len(text))
	m.reset(len(text))
	n := m.n
	for off := 0; off < len(text); {
		k := min(utf8Len(text[off]), len(text)-off)
		n[off] = uint16(k)
		off += k
	}
	// valid tells whether c's pair is still the one it was queued for; a
	// class whose tokens differ in length needs the pair looked up.
	valid := func(c cand) bool {
		l := c.left
		if n[l] == 0 || l+int32(n[l]) >= size {
			return false
		}
		r := l + int32(n[l])
		pair := text[l : r+int32(n[r])]
		if !m.spaces {
			if want := t.classSize[c.prio]; want >= 0 {
				return int32(len(pair)) == want
			}
		} else if want := t.classChars[c.prio]; want >= 0 {
			return spmChars(pair) == want
		}
		id, ok := spmID(t, pair, m)
		return ok && t.spmClass[id] == c.prio
	}
	pair := func(l int32) (cand, bool) {
		if l < 0 || l+int32(n[l]) >= size {
			return cand{}, false
		}
		r := l + int32(n[l])
		id, ok := spmID(t, text[l:r+int32(n[r])], m)
		return cand{prio: t.spmClass[id], left: l}, ok
	}
	k := m.mergePairs(size, pair, valid)
	out = m.growIDs(out, k)
	for i := int32(0); i < size; i += int32(n[i]) {
		piece := text[i : i+int32(n[i])]
		if id, ok := spmID(t, piece, m); ok {
			out = append(out, id)
			continue
		}
		if len(piece) == 1 && piece[0] == ' ' {
			for j := range len(spmSpace) {
				if id := t.byteTokens[spmSpace[j]]; id >= 0 {
					out = append(out, id)
				}
			}
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
