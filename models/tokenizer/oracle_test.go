package tokenizer

import (
	"container/heap"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The merges as llama.cpp writes them, over a whole text or word with a
// symbol struct per character and a queue of every candidate: the oracle
// the compact merges are checked against.

type symbol struct {
	start, n   int32
	prev, next int32
}

func splitSymbols[S string | []byte](s S, syms []symbol) []symbol {
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

type bigram struct {
	left int32
	size int32
	prio float64
}

// bigramQueue is a container/heap of bigrams, lowest prio first, ties to
// the leftmost pair.
type bigramQueue []bigram

func (q bigramQueue) Len() int { return len(q) }
func (q bigramQueue) Less(i, j int) bool {
	return q[i].prio < q[j].prio || (q[i].prio == q[j].prio && q[i].left < q[j].left)
}
func (q bigramQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *bigramQueue) Push(x any)   { *q = append(*q, x.(bigram)) }
func (q *bigramQueue) Pop() any {
	b := (*q)[len(*q)-1]
	*q = (*q)[:len(*q)-1]
	return b
}

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

// oracleSPM is llama.cpp's llm_tokenizer_spm on text with its spaces
// already escaped.
func (t *Tokenizer) oracleSPM(text string) []int32 {
	var out []int32
	syms := splitSymbols(text, nil)
	var q bigramQueue
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
		heap.Push(&q, bigram{left: left, size: l.n + r.n, prio: -float64(score)})
	}
	for i := int32(1); i < int32(len(syms)); i++ {
		try(i-1, i)
	}
	for len(q) > 0 {
		b := heap.Pop(&q).(bigram)
		if !merge(syms, b) {
			continue
		}
		try(syms[b.left].prev, b.left)
		try(b.left, syms[b.left].next)
	}
	for i := int32(0); len(syms) > 0 && i != -1; i = syms[i].next {
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

// oracleBPE is llama.cpp's merge of one pre-tokenized word (its bytes) in
// the byte alphabet, with the ranks looked up by the bytes the characters
// stand for.
func (t *Tokenizer) oracleBPE(raw []byte) []int32 {
	var out []int32
	var word []byte
	for _, c := range raw {
		word = appendCpt(word, byteToCpt[c])
	}
	if _, ok := t.ids[string(word)]; ok && t.ignoreMerges {
		return append(out, t.ids[string(word)])
	}
	syms := splitSymbols(word, nil)
	var q bigramQueue
	try := func(left, right int32) {
		if left < 0 || right < 0 {
			return
		}
		l, r := syms[left], syms[right]
		a, _ := alphabetBytes(nil, string(word[l.start:l.start+l.n]))
		b, _ := alphabetBytes(nil, string(word[r.start:r.start+r.n]))
		rank, ok := t.ranks[string(appendMergeKey(nil, a, b))]
		if !ok {
			return
		}
		heap.Push(&q, bigram{left: left, size: l.n + r.n, prio: float64(rank)})
	}
	for i := int32(1); i < int32(len(syms)); i++ {
		try(i-1, i)
	}
	for len(q) > 0 {
		b := heap.Pop(&q).(bigram)
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
	return out
}

// mergeTexts are texts for the merges to agree on: runs with no boundary
// no token spans, longer than longText so that the queue is counted and
// must make room, and random texts over a few characters, where equal
// pairs and equal scores abound.
func mergeTexts(rng *rand.Rand) []string {
	texts := []string{"", "a", " ", "é"}
	for _, unit := range []string{"a", " ", "ab", "é", "日", "▁", " a", "aab"} {
		texts = append(texts, strings.Repeat(unit, 5000/len(unit)))
	}
	random := make([]byte, 6000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	texts = append(texts, string(random))
	for _, alphabet := range [][]string{{"a", "b"}, {"a", " "}, {"a", "b", " ", "▁", "é"}, {"e", "r", "t", "h", " ", "\n"}} {
		for _, n := range []int{10, 100, 6000} {
			var b strings.Builder
			for range n {
				b.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			texts = append(texts, b.String())
		}
	}
	return texts
}

// TestMergeOracle: the compact merges give llama.cpp's ids on every SPM
// and BPE vocabulary, merging a whole text (SPM, spaces escaped for the
// oracle) or one word (BPE) at a time.
func TestMergeOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	texts := mergeTexts(rng)
	for _, rel := range []string{"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-phi-3.gguf", "models/stories260K.gguf"} {
		tok := load(t, rel)
		for i, s := range texts {
			want := tok.oracleSPM(strings.ReplaceAll(s, " ", spmSpace))
			if got := tok.encodeSPM(s, false, nil, &merger{}); !slices.Equal(got, want) {
				t.Errorf("%s: text %d (%.20q, %d bytes): %d ids, want %d", rel, i, s, len(s), len(got), len(want))
			}
		}
	}
	for _, v := range []string{"gpt-2", "llama-bpe", "qwen2", "falcon", "refact"} {
		rel := "vocab/ggml-vocab-" + v + ".gguf"
		tok := load(t, rel)
		for i, s := range texts {
			want := tok.oracleBPE([]byte(s))
			if got := encodeWord(tok, s, nil, &merger{}); !slices.Equal(got, want) {
				t.Errorf("%s: text %d (%.20q, %d bytes): %d ids, want %d", rel, i, s, len(s), len(got), len(want))
			}
		}
	}
}

// TestMergeTies: scores shared by tokens of different lengths, and by all
// tokens, merge the leftmost pair of the best score first, as llama.cpp
// does.
func TestMergeTies(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tokens := []string{"<unk>", "<s>", "</s>", "a", "b", "▁", "ab", "ba", "aa", "bb", "aab", "abb", "▁a", "▁b", "aaaa", "abab", "▁ab", "bab", "▁▁"}
	for _, scores := range [][]float32{
		nil,
		{0, 0, 0, 0, 0, 0, -1, -1, -1, -2, -2, -2, -1, -3, -1, -2, -2, -1, -1},
		{0, 0, 0, 0, 0, 0, -1, -1, -2, -2, -1, -1, -3, -3, -1, -1, -2, -2, -3},
	} {
		v := DefaultVocab("llama", "")
		v.Tokens, v.Scores = tokens, scores
		tok, err := New(v)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range mergeTexts(rng) {
			want := tok.oracleSPM(strings.ReplaceAll(s, " ", spmSpace))
			if got := tok.encodeSPM(s, false, nil, &merger{}); !slices.Equal(got, want) {
				t.Errorf("scores %v: text %d (%.20q): %v…, want %v…", scores, i, s, got[:min(len(got), 8)], want[:min(len(want), 8)])
			}
		}
	}
}
