package constrain

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/internal/schematest"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// testSchemas are the twenty schemas of issue 16's acceptance test, shared
// with the batcher's test on random-weight models.
func testSchemas(t testing.TB) []json.RawMessage {
	data, err := os.ReadFile("testdata/schemas.json")
	if err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// byteVocab is a vocabulary of the 256 single bytes (token id = byte) and
// an end-of-generation token, 256.
func byteVocab() *Vocab {
	pieces := make([][]byte, 257)
	for b := range 256 {
		pieces[b] = []byte{byte(b)}
	}
	return newVocab(pieces, []int32{256})
}

// generate runs m to its end with random logits, a token at a time within
// budget tokens, as the sampler would (the greatest logit left wins), and
// returns the pieces; piece gives a token's bytes.
func generate(t testing.TB, m *Matcher, r *rand.Rand, budget int, piece func(int32) []byte, isEOG func(int32) bool) (string, bool) {
	logits := make([]float32, m.v.size)
	var out []byte
	for left := budget; left > 0; left-- {
		for i := range logits {
			logits[i] = float32(r.NormFloat64())
		}
		m.Mask(logits, left)
		best, bestID := float32(math.Inf(-1)), int32(-1)
		for i, l := range logits {
			if l > best {
				best, bestID = l, int32(i)
			}
		}
		if bestID < 0 {
			t.Fatalf("no token allowed after %q", out)
		}
		if isEOG(bestID) {
			if !m.Done() {
				t.Fatalf("end allowed before the output is whole: %q", out)
			}
			return string(out), true
		}
		if !m.advance(piece(bestID)) {
			t.Fatalf("token %d %q allowed but refused after %q", bestID, piece(bestID), out)
		}
		out = append(out, piece(bestID)...)
	}
	return string(out), m.Done()
}

// TestSchemaOutputsValidate: random walks through each of the twenty
// schemas, a byte a time with random preferences and a short budget that
// forces the outputs to close, all parse and validate with an independent
// validator; walks with room end on their own.
func TestSchemaOutputsValidate(t *testing.T) {
	v := byteVocab()
	piece := func(id int32) []byte { return []byte{byte(id)} }
	isEOG := func(id int32) bool { return id == 256 }
	r := rand.New(rand.NewPCG(1, 2))
	for i, schema := range testSchemas(t) {
		l, err := CompileSchema(schema)
		if err != nil {
			t.Fatalf("schema %d: %v", i, err)
		}
		val := schematest.Compile(t, schema)
		for walk := range 40 {
			budget := 2000
			if walk%2 == 1 {
				budget = int(l.dist[0]) + r.IntN(40)
			}
			out, whole := generate(t, NewMatcher(l, v), r, budget, piece, isEOG)
			if !whole {
				t.Fatalf("schema %d walk %d: not whole in %d bytes: %q", i, walk, budget, out)
			}
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
			if err != nil {
				t.Fatalf("schema %d: %q does not parse: %v", i, out, err)
			}
			if err := val.Validate(inst); err != nil {
				t.Fatalf("schema %d: %q does not validate: %v", i, out, err)
			}
		}
	}
}

// TestSchemaTokens: the same with real vocabularies' tokens (SentencePiece
// with byte fallback, and 128k byte-level BPE) and a budget in tokens.
func TestSchemaTokens(t *testing.T) {
	schemas := testSchemas(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, path := range []string{"models/stories260K.gguf", "vocab/ggml-vocab-llama-bpe.gguf"} {
		tok := loadTok(t, path)
		v := NewVocab(tok)
		for i, schema := range schemas {
			l, err := CompileSchema(schema)
			if err != nil {
				t.Fatal(err)
			}
			val := schematest.Compile(t, schema)
			for range 3 {
				m := NewMatcher(l, v)
				out, whole := generate(t, m, r, int(l.dist[0])+r.IntN(60), tok.Piece, tok.IsEOG)
				if !whole {
					t.Fatalf("%s schema %d: not whole: %q", path, i, out)
				}
				inst, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
				if err == nil {
					err = val.Validate(inst)
				}
				if err != nil {
					t.Fatalf("%s schema %d: %q: %v", path, i, out, err)
				}
			}
		}
	}
}

// TestSchemaShapes: what the compiler writes for a few schemas, whole.
func TestSchemaShapes(t *testing.T) {
	for _, c := range []struct {
		schema string
		accept []string
		refuse []string
	}{
		{`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"boolean"}},"required":["b"]}`,
			[]string{`{"a":1,"b":true}`, `{"b":false}`, `{"a": -20, "b":true}`},
			[]string{`{"a":1}`, `{"b":true,"a":1}`, `{}`, `{"a":01,"b":true}`, `{"a":1,"b":true} `}},
		{`{"type":"number","minimum":0,"exclusiveMaximum":1}`,
			[]string{`0`, `0.5`, `0.999999`, `0.25`},
			[]string{`1`, `1.0`, `0.50`, `-0.1`, `0.0000001`}},
		{`{"type":"integer","minimum":-12,"maximum":305}`,
			[]string{`-12`, `-1`, `0`, `9`, `305`, `199`},
			[]string{`-13`, `306`, `-0`, `1000`, `00`}},
		{`{"enum":["a\"b",1,null,{"x":[true]}]}`,
			[]string{`"a\"b"`, `1`, `null`, `{"x":[true]}`},
			[]string{`"a"`, `2`}},
		{`{"type":"string","pattern":"^[a-c]{2}\\d$"}`,
			[]string{`"ab1"`, `"cc9"`},
			[]string{`"ab"`, `"abc1"`, `"ab1x"`}},
		{`{"type":"array","items":{"type":"string","maxLength":1},"minItems":1,"maxItems":2}`,
			[]string{`["a"]`, `["", "é"]`, `["\n"]`},
			[]string{`[]`, `["a","b","c"]`, `["ab"]`}},
		// Bounded strings stay in the BMP, so that JavaScript's count of
		// UTF-16 units agrees; no escape writes half a surrogate pair.
		{`{"type":"string","maxLength":3}`,
			[]string{`"日本"`, `"\u00e9"`, `"\uD7FF"`},
			[]string{`"👷"`, `"\ud83d\udc77"`, `"abcd"`}},
		{`{"type":"string"}`,
			[]string{`"👷"`, `"\uffff"`},
			[]string{`"\ud83d\udc77"`, `"\uDC00"`}},
	} {
		l, err := CompileSchema([]byte(c.schema))
		if err != nil {
			t.Fatalf("%s: %v", c.schema, err)
		}
		for _, s := range c.accept {
			if !accepts(l, s) {
				t.Errorf("%s refuses %s", c.schema, s)
			}
		}
		for _, s := range c.refuse {
			if accepts(l, s) {
				t.Errorf("%s accepts %s", c.schema, s)
			}
		}
	}
}

func accepts(l *Language, s string) bool {
	m := NewMatcher(l, byteVocab())
	return m.advance([]byte(s)) && m.Done()
}

// TestRegexAndChoice: guided_regex matches the whole output (checked with
// Go's regexp), guided_choice is exactly one choice.
func TestRegexAndChoice(t *testing.T) {
	v := byteVocab()
	piece := func(id int32) []byte { return []byte{byte(id)} }
	isEOG := func(id int32) bool { return id == 256 }
	r := rand.New(rand.NewPCG(5, 6))
	for _, pattern := range []string{`(yes|no)`, `[A-Z][a-z]{2,5} \d{1,3}`, `\w+@\w+\.(com|org)`, `(?i)hello|bye!*`, `[^a-z\n]{3}`, `é+日?`} {
		l, err := CompileRegex(pattern)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`^(?:` + pattern + `)$`)
		for range 50 {
			out, whole := generate(t, NewMatcher(l, v), r, 60, piece, isEOG)
			if !whole || !re.MatchString(out) {
				t.Fatalf("%s: %q (whole %v)", pattern, out, whole)
			}
		}
	}
	choices := []string{"positive", "negative", "neutral", "pos"}
	l, err := CompileChoice(choices)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 100 {
		out, whole := generate(t, NewMatcher(l, v), r, 20, piece, isEOG)
		if !whole {
			t.Fatalf("choice %q not whole", out)
		}
		seen[out] = true
	}
	for s := range seen {
		if !strings.Contains(" positive negative neutral pos ", " "+s+" ") {
			t.Fatalf("choice %q is not one of %v", s, choices)
		}
	}
	if len(seen) < 3 {
		t.Errorf("100 random choices reached only %v", seen)
	}
}

// TestSchemaErrors: schemas the compiler cannot hold output to are refused
// with a message that names the problem.
func TestSchemaErrors(t *testing.T) {
	for schema, want := range map[string]string{
		`{"type":"strin"}`:                                `unknown type "strin"`,
		`{"not":{"type":"string"}}`:                       `"not" is not supported`,
		`{"$ref":"#/$defs/missing"}`:                      `does not lead to a schema`,
		`{"type":"integer","minimum":3,"maximum":2}`:      `no number lies within`,
		`{"type":"string","pattern":"(a"}`:                `missing closing )`,
		`{"type":"array","minItems":3,"maxItems":1}`:      `minItems is above maxItems`,
		`{"type":"string","pattern":"\\bx"}`:              `word boundaries`,
		`{"type":`:                                        `not valid JSON`,
		`false`:                                           `accepts no output`,
		`{"type":"string","pattern":"^a$","maxLength":3}`: `put the length in the pattern`,
	} {
		_, err := CompileSchema([]byte(schema))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", schema, err, want)
		}
	}
	if _, err := CompileRegex(`a{2000}`); err == nil {
		t.Error("a repeat above 1000 compiled")
	}
	if _, err := CompileChoice(nil); err == nil {
		t.Error("an empty choice list compiled")
	}
}

// TestUTF8Ranges: the byte sequences for a rune range match exactly the
// encodings of its characters, checked over every character.
func TestUTF8Ranges(t *testing.T) {
	for _, rg := range [][2]rune{{0, 0x10FFFF}, {0x7F, 0x800}, {'é', 'é'}, {0xD000, 0xE100}, {0x10000, 0x10FFFF}, {0x3A9, 0x12345}} {
		b := newBuilder()
		end := b.runes(0, []rune{rg[0], rg[1]})
		b.n.final = end
		l := &Language{n: &b.n, dist: b.n.distances()}
		d := l.dfaFor(byteVocab())
		for r := rune(0); r <= 0x10FFFF; r++ {
			var buf [4]byte
			n := encodeRune(buf[:], r)
			s := int32(0)
			for _, c := range buf[:n] {
				if s = d.step(s, c); s < 0 {
					break
				}
			}
			in := r >= rg[0] && r <= rg[1] && (r < 0xD800 || r > 0xDFFF)
			if got := s >= 0 && d.states[s].final; got != in {
				t.Fatalf("range %x-%x: %U accepted %v", rg[0], rg[1], r, got)
			}
		}
	}
}

// encodeRune is utf8.EncodeRune without its surrogate replacement, so that
// surrogates' encodings can be shown to be refused.
func encodeRune(p []byte, r rune) int {
	switch {
	case r < 0x80:
		p[0] = byte(r)
		return 1
	case r < 0x800:
		p[0], p[1] = 0xC0|byte(r>>6), 0x80|byte(r)&0x3F
		return 2
	case r < 0x10000:
		p[0], p[1], p[2] = 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F
		return 3
	}
	p[0], p[1], p[2], p[3] = 0xF0|byte(r>>18), 0x80|byte(r>>12)&0x3F, 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F
	return 4
}

// BenchmarkSchemaMask: a schema's mask on the 128k llama-bpe vocabulary in
// a state met for the first time (the trie walk, stepping through states
// built before), the compile of the schema, and both with the start
// state's mask (the first token's extra cost).
func BenchmarkSchemaMask(b *testing.B) {
	tok := loadTok(b, "vocab/ggml-vocab-llama-bpe.gguf")
	v := NewVocab(tok)
	schema := testSchemas(b)[1]
	b.Run("compile", func(b *testing.B) {
		for b.Loop() {
			if _, err := CompileSchema(schema); err != nil {
				b.Fatal(err)
			}
		}
	})
	l, err := CompileSchema(schema)
	if err != nil {
		b.Fatal(err)
	}
	m := NewMatcher(l, v)
	m.advance([]byte(`{"person": {"name": "Li`))
	b.Run("walk", func(b *testing.B) {
		for b.Loop() {
			m.d.mu.Lock()
			m.d.states[m.ds].mask = nil
			m.d.maskOf(m.ds)
			m.d.mu.Unlock()
		}
	})
	// The first token's extra cost: compiling, and the start state's mask.
	logits := make([]float32, v.size)
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			l, _ := CompileSchema(schema)
			NewMatcher(l, v).Mask(logits, 1000)
		}
	})
}

// BenchmarkMaskRefused: a cached mask in a state that refuses nearly all
// of the 128k llama-bpe vocabulary (after a key, where only ':' goes on):
// the cost is setting the refused logits.
func BenchmarkMaskRefused(b *testing.B) {
	v := NewVocab(loadTok(b, "vocab/ggml-vocab-llama-bpe.gguf"))
	l, err := CompileSchema(testSchemas(b)[0])
	if err != nil {
		b.Fatal(err)
	}
	m := NewMatcher(l, v)
	m.advance([]byte(`{"name"`))
	logits := make([]float32, v.size)
	m.Mask(logits, 1000)
	for b.Loop() {
		m.Mask(logits, 1000)
	}
}

// TestMaskLogits: Mask leaves exactly the allowed tokens' logits as they
// were and sets every other one to -Inf, whether few tokens are allowed
// (the fill path) or many (the bit path), against the plain per-token
// rule: a text token whose bytes the language reads, an end token only in
// an accepting state.
func TestMaskLogits(t *testing.T) {
	tok := loadTok(t, "vocab/ggml-vocab-llama-bpe.gguf")
	v := NewVocab(tok)
	l, err := CompileSchema(testSchemas(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"name": "Ann", "age": 7}`
	r := rand.New(rand.NewPCG(9, 9))
	for i := 0; i <= len(doc); i++ {
		m := NewMatcher(l, v)
		if !m.advance([]byte(doc[:i])) {
			t.Fatalf("%q refused", doc[:i])
		}
		logits := make([]float32, tok.VocabSize())
		for j := range logits {
			logits[j] = float32(r.NormFloat64())
		}
		want := slices.Clone(logits)
		for id := range int32(len(want)) {
			ok := false
			if tok.IsEOG(id) {
				ok = m.Done()
			} else if p := tok.Piece(id); !tok.IsControl(id) && len(p) > 0 {
				mm := *m
				ok = mm.advance(p)
			}
			if !ok {
				want[id] = float32(math.Inf(-1))
			}
		}
		m.Mask(logits, 1000)
		if !slices.Equal(logits, want) {
			for id := range logits {
				if logits[id] != want[id] {
					t.Fatalf("after %q: token %d %q got %v, want %v", doc[:i], id, tok.Piece(int32(id)), logits[id], want[id])
				}
			}
		}
	}
}
