package constrain

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/models/gguf"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// feed steps s through text and reports whether every byte was read.
func feed(s *state, text string) bool {
	for i := range len(text) {
		if !s.step(text[i]) {
			return false
		}
	}
	return true
}

func TestJSONObjectAutomaton(t *testing.T) {
	for _, doc := range []string{
		`{}`, ` { } `, `{"a":1}`, `{"a": -0.5e+10, "b": [true, false, null, "x\u00e9\n", {"c": []}], "d": 0}`,
		`{"é": "日本", "k": [1,2,3]}`, `{"a":{"b":{"c":{}}}}`, `{"n": 12.25E-3}`,
	} {
		var s state
		if !feed(&s, doc) || !s.done() {
			t.Errorf("%q: refused or not whole", doc)
		}
		if !json.Valid([]byte(doc)) {
			t.Fatalf("the test's own %q is not JSON", doc)
		}
	}
	for _, doc := range []string{
		`[]`, `"a"`, `1`, `{"a"}`, `{"a":}`, `{a:1}`, `{"a":01}`, `{"a":1,}`, `{"a":[1,]}`, `{"a":tru}`, `{"a":"\x"}`,
		`{"a":"` + "\x01" + `"}`, `{"a":1}}`, `{"a":1} {}`, `{"a":"` + "\xff" + `"}`, `{"a":     1}`,
	} {
		var s state
		if feed(&s, doc) && s.done() {
			t.Errorf("%q: accepted", doc)
		}
	}
}

// TestRandomWalksAreJSON: bytes drawn at random among those the automaton
// accepts make, once it says the object is whole, what encoding/json calls
// valid.
func TestRandomWalksAreJSON(t *testing.T) {
	alphabet := []byte(`{}[]":,-+.0123456789eEtrufalsn \n\\/bu` + "aé")
	rng := rand.New(rand.NewPCG(1, 2))
	whole := 0
	for range 2000 {
		var s state
		var out []byte
		for len(out) < 200 && !s.done() {
			var ok []byte
			for _, b := range alphabet {
				if t := s; t.step(b) {
					ok = append(ok, b)
				}
			}
			if len(ok) == 0 {
				t.Fatalf("stuck after %q", out)
			}
			b := ok[rng.IntN(len(ok))]
			s.step(b)
			out = append(out, b)
		}
		if s.done() {
			whole++
			if !json.Valid(out) {
				t.Fatalf("the automaton accepted %q, which is not JSON", out)
			}
		}
	}
	if whole < 100 {
		t.Fatalf("only %d of 2000 walks closed their object", whole)
	}
}

func loadTok(t testing.TB, path string) *tokenizer.Tokenizer {
	t.Helper()
	f, err := gguf.Open(shared.Path(t, path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestMaskMatchesScan: the trie's masks equal a plain scan that steps every
// token's bytes, on a small and a 128k vocabulary, in states along a
// document.
func TestMaskMatchesScan(t *testing.T) {
	doc := `{"name": "Lily", "age": 3, "toys": [true, null, -1.5e2], "é": {"x": "\u00e9日"}}`
	for _, path := range []string{"models/stories260K.gguf", "vocab/ggml-vocab-llama-bpe.gguf"} {
		tok := loadTok(t, path)
		v := NewVocab(tok)
		var s state
		for i := 0; i <= len(doc); i++ {
			got := v.allowed(s)
			for id := range int32(tok.VocabSize()) {
				want := false
				if p := tok.Piece(id); !tok.IsControl(id) && len(p) > 0 {
					tt := s
					want = feed(&tt, string(p))
				}
				if has := got.bits[id/64]&(1<<(id%64)) != 0; has != want {
					t.Fatalf("%s after %q: token %d %q allowed %v, the scan says %v", path, doc[:i], id, tok.Piece(id), has, want)
				}
			}
			if i < len(doc) && !s.step(doc[i]) {
				t.Fatalf("the document is refused at byte %d", i)
			}
		}
		if !s.done() {
			t.Fatal("the document is not whole")
		}
	}
}

// BenchmarkMask: the cost of a mask on the 128k llama-bpe vocabulary, in a
// state met for the first time (a trie walk) and in one met before (the
// cache), both inside a string, where the automaton accepts most of the
// trie, and the masking of a logits row.
func BenchmarkMask(b *testing.B) {
	f, err := gguf.Open(shared.Path(b, "vocab/ggml-vocab-llama-bpe.gguf"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		b.Fatal(err)
	}
	v := NewVocab(tok)
	var s state
	feed(&s, `{"story": "Once`)
	b.Run("walk", func(b *testing.B) {
		m := make([]uint64, (v.size+63)/64)
		for b.Loop() {
			clear(m)
			v.walk(s, func(id int32, _ *state) { m[id/64] |= 1 << (id % 64) })
		}
	})
	b.Run("cached", func(b *testing.B) {
		mt := NewMatcher(JSONObjectLanguage(), v)
		mt.s = s
		logits := make([]float32, v.size)
		mt.Mask(logits, 1<<20) // the walk, once
		for b.Loop() {
			mt.Mask(logits, 1<<20)
		}
	})
}
