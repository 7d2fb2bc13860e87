package tokenizer

import "slices"

// encodeBPE appends the tokens of text to out, as llama.cpp's
// llm_tokenizer_bpe: the pre-tokenizer cuts the text into words, each word is
// spelled in GPT-2's byte alphabet and merged pair by pair, lowest merge rank
// first. A final piece outside the vocabulary is looked up byte by byte, and
// bytes without a token are dropped, as llama.cpp drops them.
func (t *Tokenizer) encodeBPE(text string, out []int32) []int32 {
	var (
		word, tmp, key []byte
		syms           []symbol
	)
	var q bigramQueue
	// The words are merged one at a time from the codepoints and their
	// lengths, so that only one word's symbols exist at once, and looked
	// up as bytes (a map index of string(b) does not allocate).
	cpts, segs := splitWords(text, t.steps)
	for start := 0; len(segs) > 0; segs = segs[1:] {
		w := cpts[start : start+int(segs[0])]
		start += int(segs[0])
		word = word[:0]
		for _, c := range w {
			tmp = appendCpt(tmp[:0], c)
			for _, b := range tmp {
				word = appendCpt(word, byteToCpt[b])
			}
		}

		syms = syms[:0]
		if _, ok := t.ids[string(word)]; ok && t.ignoreMerges {
			syms = append(syms, symbol{start: 0, n: int32(len(word)), prev: -1, next: -1})
		} else {
			syms = splitSymbols(word, syms)
		}
		q.items = slices.Grow(q.items[:0], len(syms))
		try := func(left, right int32) {
			if left < 0 || right < 0 {
				return
			}
			l, r := syms[left], syms[right]
			key = appendMergeKey(key[:0], word[l.start:l.start+l.n], word[r.start:r.start+r.n])
			rank, ok := t.ranks[string(key)]
			if !ok {
				return
			}
			q.push(bigram{left: left, size: l.n + r.n, prio: uint32(rank)})
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
		for _, s := range syms {
			if s.n == 0 {
				continue
			}
			piece := word[s.start : s.start+s.n]
			if id, ok := t.ids[string(piece)]; ok {
				out = append(out, id)
				continue
			}
			for j := 0; j < len(piece); j++ {
				if id, ok := t.ids[string(piece[j:j+1])]; ok {
					out = append(out, id)
				}
			}
		}
	}
	return out
}

// appendMergeKey appends the key of the merge of left and right in
// Tokenizer.ranks: left's length, then both.
func appendMergeKey[S string | []byte](b []byte, left, right S) []byte {
	n := len(left)
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(append(b, left...), right...)
}
