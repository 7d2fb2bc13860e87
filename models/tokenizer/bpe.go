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
func (t *Tokenizer) encodeBPE(text string, out []int32, m *merger) []int32 {
	var buf []byte
	words := splitWords(text, t.steps)
	off := 0
	for _, k := range words {
		m.done = m.base + off
		if k < 0 {
			k = -k
			buf = buf[:0]
			for i := off; i < off+int(k); {
				c, w := decodeOne(text, i)
				buf = appendCpt(buf, c)
				i += w
			}
			out = encodeWord(t, buf, out, m)
		} else {
			out = encodeWord(t, text[off:off+int(k)], out, m)
		}
		off += int(k)
	}
	return out
}

// encodeWord appends the tokens of one word, given as bytes, to out.
func encodeWord[S string | []byte](t *Tokenizer, word S, out []int32, m *merger) []int32 {
	if t.ignoreMerges && len(word) <= t.longestToken {
		if id, ok := t.ids[string(spellBPE(word, m))]; ok {
			return append(m.growIDs(out, 1), id)
		}
	}
	return mergeWord(t, word, out, m)
}

// spellBPE writes b in the byte alphabet into m.key.
func spellBPE[S string | []byte](b S, m *merger) []byte {
	m.key = m.key[:0]
	for i := 0; i < len(b); i++ {
		m.key = appendCpt(m.key, byteToCpt[b[i]])
	}
	return m.key
}

// mergeWord appends the tokens of one word to out.
func mergeWord[S string | []byte](t *Tokenizer, word S, out []int32, m *merger) []int32 {
	size := int32(len(word))
	m.reset(len(word))
	n := m.n
	for i := range n {
		n[i] = 1
	}
	valid := func(c cand) bool {
		l := c.left
		return n[l] != 0 && l+int32(n[l]) < size && int32(n[l])+int32(n[l+int32(n[l])]) == t.mergeLen[c.prio]
	}
	pair := func(l int32) (cand, bool) {
		if l < 0 || l+int32(n[l]) >= size {
			return cand{}, false
		}
		r := l + int32(n[l])
		m.key = appendMergeKey(m.key[:0], word[l:r], word[r:r+int32(n[r])])
		rank, ok := t.ranks[string(m.key)]
		return cand{prio: uint32(rank), left: l}, ok
	}
	k := m.mergePairs(size, pair, valid)
	out = m.growIDs(out, k)
	for i := int32(0); i < size; i += int32(n[i]) {
		piece := word[i : i+int32(n[i])]
		spelled := spellBPE(piece, m)
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
