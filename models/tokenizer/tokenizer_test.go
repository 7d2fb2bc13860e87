package tokenizer

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/godwit-ai/godwit/internal/shared"
)

func ids(s string) []int32 {
	var out []int32
	for _, f := range strings.Fields(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			panic(err)
		}
		out = append(out, int32(n))
	}
	return out
}

// The two prompts whose tokenization shared/golden/stories260K_greedy.txt
// records (llama.cpp with BOS, equal to llama2.c's encoder).
func TestStories260KGolden(t *testing.T) {
	golden, err := os.ReadFile(shared.Path(t, "golden/stories260K_greedy.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tok := load(t, "models/stories260K.gguf")
	// The file stores "no padding token" as 4294967295.
	if tok.VocabSize() != 512 || tok.BOS() != 1 || tok.EOS() != 2 || !tok.AddBOS() || tok.PAD() != -1 {
		t.Fatalf("vocab %d, BOS %d, EOS %d, AddBOS %v, PAD %d", tok.VocabSize(), tok.BOS(), tok.EOS(), tok.AddBOS(), tok.PAD())
	}
	for _, c := range []struct{ prompt, ids string }{
		{"Once upon a time, there was a little girl named Lily.", "1 403 407 261 378 432 383 286 261 376 298 315 421 395 317 426"},
		{"Hello world! 123 café naïve — 日本", "1 346 306 414 263 304 341 443 410 475 479 472 280 412 431 485 297 412 198 178 360 410 481 410 233 154 168 233 159 175"},
	} {
		line := "prompt=\"" + c.prompt + "\"\nprompt ids: " + c.ids + "\n"
		if !strings.Contains(string(golden), line) {
			t.Errorf("golden file does not hold %q", line)
		}
		want := ids(c.ids)
		for _, parse := range []bool{false, true} {
			if got := tok.Encode(c.prompt, true, parse); !slices.Equal(got, want) {
				t.Errorf("Encode(%q, parseSpecial=%v) = %v, want %v", c.prompt, parse, got, want)
			}
		}
		if got := tok.Decode(want); got != "<s> "+c.prompt {
			t.Errorf("Decode = %q", got)
		}
		// llama.cpp strips the space SPM adds only when the text starts
		// the sequence, not after BOS.
		if got := tok.Detokenize(want[1:], false, false); got != c.prompt {
			t.Errorf("Detokenize without BOS = %q", got)
		}
		if got := tok.Detokenize(want, true, false); got != " "+c.prompt {
			t.Errorf("Detokenize removing BOS = %q", got)
		}
	}
}

func TestStreamDecoderHoldsPartialSequences(t *testing.T) {
	tok := load(t, "models/stories260K.gguf")
	// "日本" is spelled with byte tokens: ▁ E6 97 A5 E6 9C AC.
	seq := tok.Encode("日本", false, false)
	if want := ids("410 233 154 168 233 159 175"); !slices.Equal(seq, want) {
		t.Fatalf("Encode = %v, want %v", seq, want)
	}
	d := tok.NewStreamDecoder()
	want := []string{" ", "", "", "日", "", "", "本"}
	for i, id := range seq {
		if got := d.Add(id); got != want[i] {
			t.Errorf("Add(%d) #%d = %q, want %q", id, i, got, want[i])
		}
	}
	if got := d.Flush(); got != "" {
		t.Errorf("Flush = %q", got)
	}

	// A sequence the stream ends in the middle of comes out as one U+FFFD;
	// a byte that cannot start a sequence comes out at once.
	if got := d.Add(233) + d.Add(159); got != "" {
		t.Errorf("partial sequence gave %q", got)
	}
	if got := d.Flush(); got != "\uFFFD" {
		t.Errorf("Flush = %q, want U+FFFD", got)
	}
	ff := tok.Encode("\xff", false, false)[1]
	if got := d.Add(ff); got != "\uFFFD" {
		t.Errorf("Add(<0xFF>) = %q", got)
	}
	if got := d.Add(233) + d.Add(tok.Encode("a", false, false)[0]); got != "\uFFFD a" {
		t.Errorf("interrupted sequence gave %q", got)
	}
}

// Streaming any test string's tokens gives valid UTF-8 at every step and,
// in all, what Decode gives (the byte-level BPE vocabularies split emoji
// across tokens).
func TestStreamDecoderMatchesDecode(t *testing.T) {
	cases := readCases(t, "vocab/ggml-vocab-llama-bpe.gguf")
	for _, name := range []string{"llama-bpe", "qwen2", "llama-spm"} {
		tok := load(t, "vocab/ggml-vocab-"+name+".gguf")
		for _, c := range cases {
			seq := tok.Encode(c.text, false, false)
			d := tok.NewStreamDecoder()
			var all strings.Builder
			for _, id := range seq {
				s := d.Add(id)
				if !utf8.ValidString(s) {
					t.Fatalf("%s %q: Add(%d) gave invalid UTF-8 %q", name, c.text, id, s)
				}
				all.WriteString(s)
			}
			all.WriteString(d.Flush())
			if got, want := all.String(), tok.Decode(seq); got != want {
				t.Errorf("%s %q: stream gave %q, Decode %q", name, c.text, got, want)
			}
		}
	}
}

func TestParseSpecialQwen2(t *testing.T) {
	tok := load(t, "vocab/ggml-vocab-qwen2.gguf")
	text := "<|im_start|>user\nhi<|im_end|>\n"
	got := tok.Encode(text, true, true)
	if want := ids("151644 872 198 6023 151645 198"); !slices.Equal(got, want) {
		t.Errorf("parseSpecial: %v, want %v", got, want)
	}
	// Without parseSpecial the markers are plain text.
	got = tok.Encode(text, true, false)
	if want := ids("27 91 318 4906 91 29 872 198 6023 27 91 318 6213 91 397"); !slices.Equal(got, want) {
		t.Errorf("no parseSpecial: %v, want %v", got, want)
	}
	if tok.Decode(got) != text {
		t.Errorf("Decode = %q", tok.Decode(got))
	}
	// Qwen2 adds no BOS; its EOS is <|endoftext|>, and <|im_end|> also ends
	// generation.
	if tok.AddBOS() || tok.BOS() != 151643 || tok.EOS() != 151643 {
		t.Errorf("AddBOS %v BOS %d EOS %d", tok.AddBOS(), tok.BOS(), tok.EOS())
	}
	for id, want := range map[int32]bool{151643: true, 151645: true, 151644: false, 872: false} {
		if tok.IsEOG(id) != want {
			t.Errorf("IsEOG(%d) = %v", id, !want)
		}
	}
}

func TestLlama3Specials(t *testing.T) {
	tok := load(t, "vocab/ggml-vocab-llama-bpe.gguf")
	if got := tok.Encode("Hello", true, false); !slices.Equal(got, ids("128000 9906")) {
		t.Errorf("Encode with BOS = %v", got)
	}
	if got := tok.Encode("<|start_header_id|>user<|end_header_id|>", false, true); !slices.Equal(got, ids("128006 882 128007")) {
		t.Errorf("headers = %v", got)
	}
	// EOS <|end_of_text|> and <|eot_id|> (found by its text) end generation.
	for id, want := range map[int32]bool{128001: true, 128009: true, 128000: false, 128006: false} {
		if tok.IsEOG(id) != want {
			t.Errorf("IsEOG(%d) = %v", id, !want)
		}
	}
	if tok.Token(128009) != "<|eot_id|>" || string(tok.Piece(128009)) != "<|eot_id|>" {
		t.Errorf("token 128009 is %q", tok.Token(128009))
	}
}

func TestSPMSpecials(t *testing.T) {
	tok := load(t, "vocab/ggml-vocab-llama-spm.gguf")
	// Text after a special token gets SPM's leading space too.
	if got := tok.Encode("<s>Hello</s>", true, true); !slices.Equal(got, ids("1 1 15043 2")) {
		t.Errorf("parseSpecial: %v", got)
	}
	if got := tok.Encode("<s>Hello</s>", true, false); slices.Contains(got[1:], 1) || slices.Contains(got, 2) {
		t.Errorf("control tokens matched without parseSpecial: %v", got)
	}
	if !tok.IsEOG(2) || tok.IsEOG(1) {
		t.Error("IsEOG wrong for </s> or <s>")
	}
	if got := tok.Encode("", true, false); !slices.Equal(got, []int32{1}) {
		t.Errorf("empty text with BOS = %v", got)
	}
}

// Phi-3's chat tokens swallow the whitespace after them (llama.cpp sets
// rstrip by model name), and its </s>, a user-defined token made control
// because it ends generation, is only matched with parseSpecial.
func TestPhi3Specials(t *testing.T) {
	tok := load(t, "vocab/ggml-vocab-phi-3.gguf")
	if got := tok.Encode("<|user|>\nHello<|end|>\n", true, true); !slices.Equal(got, ids("1 32010 15043 32007")) {
		t.Errorf("chat = %v", got)
	}
	if got := tok.Encode("a</s> b", false, true); !slices.Equal(got, ids("263 2 289")) {
		t.Errorf("</s> with parseSpecial = %v", got)
	}
	if got := tok.Encode("a</s> b", false, false); slices.Contains(got, 2) {
		t.Errorf("</s> matched without parseSpecial: %v", got)
	}
	for _, id := range []int32{32000, 32007, 2} {
		if !tok.IsEOG(id) {
			t.Errorf("IsEOG(%d) false", id)
		}
	}
}

// User-defined tokens are cut out of the text before pre-tokenization even
// without parseSpecial: MPT's runs of spaces, DeepSeek Coder's single letters.
func TestUserDefinedAlwaysMatched(t *testing.T) {
	mpt := load(t, "vocab/ggml-vocab-mpt.gguf")
	if got := mpt.Encode("a    b", false, false); !slices.Equal(got, ids("66 50274 67")) {
		t.Errorf("mpt = %v", got)
	}
	ds := load(t, "vocab/ggml-vocab-deepseek-coder.gguf")
	if got := ds.Encode("schön", true, false); !slices.Equal(got, ids("32013 21439 32011 77")) {
		t.Errorf("deepseek-coder = %v", got)
	}
	if got := ds.Decode(ids("21439 32011 77")); got != "schön" {
		t.Errorf("Decode = %q", got)
	}
	// Its FIM tokens are user-defined in the file but found by their text,
	// which makes them control tokens, matched only with parseSpecial.
	if got := ds.Encode("<｜fim▁begin｜>", false, true); !slices.Equal(got, []int32{32016}) {
		t.Errorf("FIM with parseSpecial = %v", got)
	}
	if got := ds.Encode("<｜fim▁begin｜>", false, false); slices.Contains(got, 32016) {
		t.Errorf("FIM matched without parseSpecial: %v", got)
	}
	if ds.PAD() != 32014 || ds.EOS() != 32014 || !ds.IsEOG(32014) {
		t.Errorf("PAD %d EOS %d", ds.PAD(), ds.EOS())
	}
}

func TestDetokenizeCleanSpaces(t *testing.T) {
	gpt2 := load(t, "vocab/ggml-vocab-gpt-2.gguf")
	seq := gpt2.Encode("Hello , world ! it 's", false, false)
	if got := gpt2.Decode(seq); got != "Hello , world ! it 's" {
		t.Errorf("Decode = %q", got)
	}
	if got := gpt2.Detokenize(seq, false, false); got != "Hello, world! it's" {
		t.Errorf("Detokenize = %q", got)
	}
	// Qwen2 does not ask for the clean-up.
	qwen := load(t, "vocab/ggml-vocab-qwen2.gguf")
	if got := qwen.Detokenize(qwen.Encode("a , b", false, false), false, false); got != "a , b" {
		t.Errorf("qwen2 Detokenize = %q", got)
	}
	// Control tokens show only when asked.
	if got := qwen.Detokenize(ids("151644 872"), false, false); got != "user" {
		t.Errorf("Detokenize without unparseSpecial = %q", got)
	}
	if got := qwen.Detokenize(ids("151644 872"), false, true); got != "<|im_start|>user" {
		t.Errorf("Detokenize with unparseSpecial = %q", got)
	}
}

func TestCleanSpaces(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"a ?":               "a?",
		"Hi , there .":      "Hi, there.",
		"it 's I 'm we 're": "it's I'm we're",
		"don 't you 'll":    "don 't you 'll",
		"a ' b":             "a'b",
		"a ' ' b":           "a'' b",
	} {
		if got := string(cleanSpaces([]byte(in))); got != want {
			t.Errorf("cleanSpaces(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnsupported(t *testing.T) {
	v := DefaultVocab("t5", "")
	v.Tokens = []string{"a"}
	if _, err := New(v); err == nil || !strings.Contains(err.Error(), `"t5"`) {
		t.Errorf("unknown model: %v", err)
	}
	v = DefaultVocab("gpt2", "tekken")
	v.Tokens = []string{"a"}
	if _, err := New(v); err == nil || !strings.Contains(err.Error(), `"tekken"`) {
		t.Errorf("unknown pre-tokenizer: %v", err)
	}
	// The merges hold symbol lengths in 16 bits.
	long := strings.Repeat("a", 1<<16)
	v = DefaultVocab("llama", "")
	v.Tokens = []string{"<unk>", "<s>", "</s>", "a", long}
	if _, err := New(v); err == nil || !strings.Contains(err.Error(), "token 4 is 65536 bytes") {
		t.Errorf("SPM token of 64 KiB: %v", err)
	}
	v = DefaultVocab("gpt2", "gpt-2")
	v.Tokens = []string{"a", long[1:], long}
	v.Merges = []string{"a " + long[1:]}
	if _, err := New(v); err == nil || !strings.Contains(err.Error(), "merge 0 joins 65536 bytes") {
		t.Errorf("BPE merge of 64 KiB: %v", err)
	}
}

// A byte-level BPE built by hand: merges apply lowest rank first and the
// pre-tokenizer keeps the space with the word after it.
func TestNewByteLevel(t *testing.T) {
	v := DefaultVocab("gpt2", "gpt-2")
	v.Tokens = []string{"h", "e", "l", "o", "Ġ", "he", "ll", "hell", "hello", "Ġh", "Ġhello", "<|endoftext|>"}
	v.Types = []int32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, TypeControl}
	v.Merges = []string{"h e", "l l", "he ll", "hell o", "Ġ h", "Ġh ello"}
	v.BOS, v.EOS = 11, 11
	tok, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	// In " hello", "h e" (rank 0) wins over "Ġ h" (rank 4), and then
	// nothing joins Ġ to "hello".
	if got := tok.Encode("hello hello", false, false); !slices.Equal(got, ids("8 4 8")) {
		t.Errorf("Encode = %v", got)
	}
	if got := tok.Encode("hello<|endoftext|>", false, true); !slices.Equal(got, ids("8 11")) {
		t.Errorf("Encode special = %v", got)
	}
	if got := tok.Decode(ids("8 4 8 11")); got != "hello hello<|endoftext|>" {
		t.Errorf("Decode = %q", got)
	}
	if !tok.IsEOG(11) || tok.AddBOS() {
		t.Errorf("IsEOG %v AddBOS %v", tok.IsEOG(11), tok.AddBOS())
	}
}

// An SPM vocabulary built by hand: the highest-scoring pair merges first and
// characters without a piece fall back to byte tokens.
func TestNewSPM(t *testing.T) {
	v := DefaultVocab("llama", "")
	v.Tokens = []string{"<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab", "▁ab"}
	v.Scores = []float32{0, 0, 0, -1, -1, -1, -3, -2, -4}
	v.Types = []int32{TypeUnknown, TypeControl, TypeControl, 1, 1, 1, 1, 1, 1}
	for b := 0; b < 256; b++ {
		v.Tokens = append(v.Tokens, fmt.Sprintf("<0x%02X>", b))
		v.Scores = append(v.Scores, 0)
		v.Types = append(v.Types, TypeByte)
	}
	tok, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	// "▁ab": ab (-2) merges before ▁a (-3), then ▁ + ab gives ▁ab.
	if got := tok.Encode("ab", true, false); !slices.Equal(got, ids("1 8")) {
		t.Errorf("Encode(ab) = %v", got)
	}
	// é is C3 A9, both bytes through fallback.
	if got := tok.Encode("aé", false, false); !slices.Equal(got, []int32{6, 9 + 0xC3, 9 + 0xA9}) {
		t.Errorf("Encode(aé) = %v", got)
	}
	if got := tok.Detokenize(tok.Encode("aé", false, false), false, false); got != "aé" {
		t.Errorf("Detokenize = %q", got)
	}
}

func TestCodepoints(t *testing.T) {
	for c, want := range map[rune]uint16{
		'a': catLetter, '7': catNumber, ' ': catSeparator | flagSpace, '\n': catControl | flagSpace,
		0xA0: catSeparator | flagSpace, 0x3000: catSeparator | flagSpace, 0x85: catControl | flagSpace,
		'½': catNumber, 0x0301: catMark, '—': catPunct, '€': catSymbol, 0xE000: catControl,
		0x0378: catUndefined, 0x2EBF0: catLetter, 0x31EF: catSymbol, 0x110000: catUndefined,
	} {
		if got := cptFlags(c); got != want {
			t.Errorf("cptFlags(%U) = %#x, want %#x", c, got, want)
		}
	}
	// As in llama.cpp, encoded surrogates survive a round trip, overlong
	// forms are read as what they encode, and stray bytes become U+FFFD,
	// one per byte.
	for in, want := range map[string]string{
		"\xed\xa0\x80": "\xed\xa0\x80",
		"\xc0\xaf":     "/",
		"a\xffb":       "a\uFFFDb",
		"\xe6\x97":     "\uFFFD\uFFFD",
	} {
		var b []byte
		for _, c := range decodeCpts(in) {
			b = appendCpt(b, c)
		}
		if string(b) != want {
			t.Errorf("%q re-encodes as %q, want %q", in, b, want)
		}
	}
}

func TestConcurrentEncode(t *testing.T) {
	tok := load(t, "vocab/ggml-vocab-deepseek-llm.gguf")
	cases := readCases(t, "vocab/ggml-vocab-deepseek-llm.gguf")
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for _, c := range cases {
				if got := tok.Encode(c.text, false, false); !slices.Equal(got, c.ids) {
					t.Errorf("%q: %v", c.text, got)
					return
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}
