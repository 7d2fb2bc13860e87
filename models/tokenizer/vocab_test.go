package tokenizer

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/models/gguf"
)

// loaded keeps each vocabulary a test has built, so that every GGUF file is
// read once per run however many tests use it.
var loaded sync.Map // path → func() (*Tokenizer, error)

func load(t testing.TB, rel string) *Tokenizer {
	t.Helper()
	path := shared.Path(t, rel)
	f, _ := loaded.LoadOrStore(path, sync.OnceValues(func() (*Tokenizer, error) {
		g, err := gguf.Open(path)
		if err != nil {
			return nil, err
		}
		defer g.Close()
		return FromGGUF(g)
	}))
	tok, err := f.(func() (*Tokenizer, error))()
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return tok
}

type vocabCase struct {
	text string
	ids  []int32
}

// readCases reads llama.cpp's test-tokenizer-0 vectors: NAME.inp holds the
// strings separated by "\n__ggml_vocab_test__\n" (the last one followed by
// it too), NAME.out one line of ids per string.
func readCases(t *testing.T, rel string) []vocabCase {
	t.Helper()
	inp, err := os.ReadFile(shared.Path(t, rel+".inp"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(shared.Path(t, rel+".out"))
	if err != nil {
		t.Fatal(err)
	}
	texts := strings.Split(string(inp), "\n__ggml_vocab_test__\n")
	if texts[len(texts)-1] == "" {
		texts = texts[:len(texts)-1]
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(texts) != len(lines) {
		t.Fatalf("%s: %d strings but %d id lines", rel, len(texts), len(lines))
	}
	cases := make([]vocabCase, len(texts))
	for i, line := range lines {
		cases[i].text = texts[i]
		for _, f := range strings.Fields(line) {
			id, err := strconv.ParseInt(f, 10, 32)
			if err != nil {
				t.Fatalf("%s.out line %d: %v", rel, i+1, err)
			}
			cases[i].ids = append(cases[i].ids, int32(id))
		}
	}
	return cases
}

// checkVocab encodes every test string of a vocabulary as llama.cpp's
// test-tokenizer-0 does (no BOS/EOS, special tokens not parsed), compares the
// ids with llama.cpp's, and decodes them again. decoded gives the text Decode
// must return for a string.
func checkVocab(t *testing.T, name string, decoded func(string) string) {
	rel := "vocab/ggml-vocab-" + name + ".gguf"
	cases := readCases(t, rel)
	tok := load(t, rel)
	for i, c := range cases {
		got := tok.Encode(c.text, false, false)
		if !slices.Equal(got, c.ids) {
			t.Errorf("string %d %q:\n got %v\nwant %v", i, c.text, got, c.ids)
			continue
		}
		if back, want := tok.Decode(got), decoded(c.text); back != want {
			t.Errorf("string %d %q: Decode gives %q, want %q", i, c.text, back, want)
		}
		// llama.cpp's detokenizer takes SPM's added space away again.
		if tok.kind == kindSPM {
			if back := tok.Detokenize(got, false, false); back != c.text {
				t.Errorf("string %d %q: Detokenize gives %q", i, c.text, back)
			}
		}
	}
}

func identity(s string) string { return s }

// spmDecoded is what decoding an SPM vocabulary's tokens gives: Encode puts a
// space in front of any non-empty text (add_space_prefix), which Decode keeps
// and Detokenize removes.
func spmDecoded(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

func TestVocabLlamaSPM(t *testing.T) { checkVocab(t, "llama-spm", spmDecoded) }
func TestVocabPhi3(t *testing.T)     { checkVocab(t, "phi-3", spmDecoded) }

// The byte-level BPE vocabularies spell every byte, so all strings come back.
func TestVocabGPT2(t *testing.T)          { checkVocab(t, "gpt-2", identity) }
func TestVocabMPT(t *testing.T)           { checkVocab(t, "mpt", identity) }
func TestVocabStarcoder(t *testing.T)     { checkVocab(t, "starcoder", identity) }
func TestVocabRefact(t *testing.T)        { checkVocab(t, "refact", identity) }
func TestVocabFalcon(t *testing.T)        { checkVocab(t, "falcon", identity) }
func TestVocabDeepseekLLM(t *testing.T)   { checkVocab(t, "deepseek-llm", identity) }
func TestVocabDeepseekCoder(t *testing.T) { checkVocab(t, "deepseek-coder", identity) }
func TestVocabLlamaBPE(t *testing.T)      { checkVocab(t, "llama-bpe", identity) }
func TestVocabQwen2(t *testing.T)         { checkVocab(t, "qwen2", identity) }

// TestMinTokens: MinTokens is a lower bound on the tokens of every test
// string of every vocabulary, with special tokens parsed or not, and of
// texts built to be covered by few tokens: each vocabulary's longest
// tokens written out, and long runs of spaces.
func TestMinTokens(t *testing.T) {
	for _, name := range []string{"llama-spm", "phi-3", "gpt-2", "mpt", "starcoder", "refact", "falcon", "deepseek-llm", "deepseek-coder", "llama-bpe", "qwen2"} {
		rel := "vocab/ggml-vocab-" + name + ".gguf"
		tok := load(t, rel)
		texts := []string{strings.Repeat(" ", 1000), strings.Repeat("\n", 1000), strings.Repeat("\u2581", 300)}
		for _, c := range readCases(t, rel) {
			texts = append(texts, c.text)
		}
		long := slices.Clone(tok.tokens)
		slices.SortFunc(long, func(a, b string) int { return len(b) - len(a) })
		texts = append(texts, strings.Join(long[:50], ""))
		for _, s := range long[:50] {
			texts = append(texts, s, strings.Repeat(s, 20))
		}
		for _, s := range texts {
			for _, parse := range []bool{false, true} {
				if n, least := len(tok.Encode(s, false, parse)), tok.MinTokens(len(s)); least > n {
					t.Errorf("%s: %q (%d bytes, parse special %v): %d tokens, but MinTokens says at least %d",
						name, s[:min(len(s), 60)], len(s), parse, n, least)
				}
			}
		}
		if tok.MinTokens(1<<20) == 0 && name != "phi-3" {
			t.Errorf("%s: no bound", name)
		}
	}
}

// TestSPMCutsExact: encodeSPM, which cuts the text where no merge can cross,
// gives the ids of llama.cpp's merge over the whole text (oracleSPM),
// for every SPM vocabulary's test strings run together and for long texts
// of random pieces of the vocabulary, spaces and stray bytes.
func TestSPMCutsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, rel := range []string{"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-phi-3.gguf", "models/stories260K.gguf"} {
		tok := load(t, rel)
		var texts []string
		if strings.HasPrefix(rel, "vocab/") {
			var all []string
			for _, c := range readCases(t, rel) {
				all = append(all, c.text)
			}
			texts = append(texts, strings.Join(all, " "))
		}
		for range 20 {
			var b strings.Builder
			for range 2000 {
				switch rng.IntN(10) {
				case 0:
					b.WriteString(strings.Repeat(" ", rng.IntN(4)+1))
				case 1:
					b.WriteByte(byte(rng.IntN(256)))
				default:
					b.WriteString(tok.tokens[rng.IntN(len(tok.tokens))])
				}
			}
			texts = append(texts, b.String())
		}
		for i, s := range texts {
			s = strings.ReplaceAll(" "+s, " ", spmSpace)
			want := tok.oracleSPM(s)
			if got := tok.encodeSPM(s, false, nil, &merger{}); !slices.Equal(got, want) {
				t.Errorf("%s: text %d (%d bytes): the cut encoding differs from the whole merge", rel, i, len(s))
			}
		}
	}
}

// TestSPMPrio: spmPrio orders scores as comparing the floats does, highest
// first, with both zeros alike.
func TestSPMPrio(t *testing.T) {
	inf := float32(math.Inf(1))
	vals := []float32{-inf, -1e30, -3.5, -1, -1e-40, float32(math.Copysign(0, -1)), 0, 1e-40, 0.25, 1, 7, 1e30, inf}
	for _, a := range vals {
		for _, b := range vals {
			if got, want := spmPrio(a) < spmPrio(b), a > b; got != want {
				t.Errorf("%v before %v: %v, want %v", a, b, got, want)
			}
			if got, want := spmPrio(a) == spmPrio(b), a == b; got != want {
				t.Errorf("%v alike %v: %v, want %v", a, b, got, want)
			}
		}
	}
}
