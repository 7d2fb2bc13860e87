package tokenizer

// encodeBPE appends the tokens of text to out, as llama.cpp's
// llm_tokenizer_bpe: the pre-tokenizer cuts the text into words, each word is
// spelled in GPT-2's byte alphabet and merged pair by pair, lowest merge rank
// first. A final piece outside the vocabulary is looked up byte by byte, and
// bytes without a token are dropped, as llama.cpp drops them.
//
// Each character of the alphabet stands for one byte, so the words are
// merged as their bytes, with merge ranks keyed by bytes: a word costs its
// length in bytes, and only the pieces looked up in the vocabulary are
// spelled in the alphabet.
func (t *Tokenizer) encodeBPE(text string, out []int32) []int32 {
	var (
		word []byte
		m    merger
	)
	cpts, segs := splitWords(text, t.steps)
	for start := 0; len(segs) > 0; segs = segs[1:] {
		w := cpts[start : start+int(segs[0])]
		start += int(segs[0])
		word = word[:0]
		for _, c := range w {
			word = appendCpt(word, c)
		}
		if t.ignoreMerges && len(word) <= t.longestToken {
			if id, ok := t.ids[string(t.spellBPE(word, &m))]; ok {
				out = append(out, id)
				continue
			}
		}
		out = t.mergeWord(word, out, &m)
	}
	return out
}

// spellBPE writes b in the byte alphabet into m.key.
func (t *Tokenizer) spellBPE(b []byte, m *merger) []byte {
	m.key = m.key[:0]
	for _, c := range b {
		m.key = appendCpt(m.key, byteToCpt[c])
	}
	return m.key
}

// mergeWord appends the tokens of one word to out.
func (t *Tokenizer) mergeWord(word []byte, out []int32, m *merger) []int32 {
	size := int32(len(word))
	m.reset(len(word))
	n := m.n
	for i := range n {
		n[i] = 1
	}
	valid := func(c cand) bool {
		l := c.left
		return n[l] != 0 && l+n[l] < size && n[l]+n[l+n[l]] == t.mergeLen[c.prio]
	}
	try := func(l int32) {
		if l < 0 || l+n[l] >= size {
			return
		}
		r := l + n[l]
		m.key = appendMergeKey(m.key[:0], word[l:r], word[r:r+n[r]])
		rank, ok := t.ranks[string(m.key)]
		if !ok {
			return
		}
		m.makeRoom(valid)
		m.push(cand{prio: uint32(rank), left: l})
	}
	for l := int32(0); l < size-1; l++ {
		try(l)
	}
	for len(m.q) > 0 {
		c := m.pop()
		if !valid(c) {
			continue
		}
		l := c.left
		r := l + n[l]
		n[l] += n[r]
		n[r] = 0
		try(m.prev(l))
		try(l)
	}
	for i := int32(0); i < size; i += n[i] {
		piece := word[i : i+n[i]]
		spelled := t.spellBPE(piece, m)
		if id, ok := t.ids[string(spelled)]; ok {
			out = append(out, id)
			continue
		}
		for _, b := range spelled {
			if id := t.byteIDs[b]; id >= 0 {
				out = append(out, id)
			}
		}
	}
	return out
}

// alphabetBytes appends the bytes the characters of s stand for in the
// byte alphabet to b, and reports whether they all do.
func alphabetBytes(b []byte, s string) ([]byte, bool) {
	for _, c := range s {
		v, ok := cptToByte[c]
		if !ok {
			return b, false
		}
		b = append(b, v)
	}
	return b, true
}

// appendMergeKey appends the key of the merge of left and right in
// Tokenizer.ranks: left's length, then both.
func appendMergeKey[S string | []byte](b []byte, left, right S) []byte {
	n := len(left)
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(append(b, left...), right...)
}
