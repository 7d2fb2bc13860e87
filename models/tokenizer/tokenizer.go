// Package tokenizer turns text into token ids and back for the vocabularies
// GGUF files carry, reproducing llama.cpp's tokenizers id for id: the
// SentencePiece-style BPE of tokenizer.ggml.model "llama" (scored merges,
// U+2581 for spaces, <0xNN> byte fallback) and the byte-level BPE of "gpt2"
// (ranked merges after a pre-tokenizer chosen by tokenizer.ggml.pre).
// Special tokens are matched in the text as llama.cpp matches them, and
// decoding can stream without ever cutting a UTF-8 sequence.
package tokenizer

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// Token types, as stored in tokenizer.ggml.token_type.
const (
	TypeUndefined   = 0
	TypeNormal      = 1
	TypeUnknown     = 2
	TypeControl     = 3
	TypeUserDefined = 4
	TypeUnused      = 5
	TypeByte        = 6
)

// Token attributes: llama.cpp derives them from the token types and then
// adjusts them by token text and model name, and it is the attributes that
// decide how a token is matched and rendered.
const (
	attrUnknown uint16 = 1 << iota
	attrUnused
	attrNormal
	attrControl
	attrUserDefined
	attrByte
	attrLStrip
	attrRStrip
)

// Vocab is what a Tokenizer is built from: the tokenizer.ggml.* metadata of a
// GGUF file. Start from DefaultVocab to get llama.cpp's defaults for the
// fields a file may leave out.
type Vocab struct {
	Model  string    // "llama" (SentencePiece-style BPE) or "gpt2" (byte-level BPE)
	Pre    string    // the BPE pre-tokenizer; "" means "default"
	Name   string    // general.name; llama.cpp strips spaces after Phi-3's special tokens by it
	Tokens []string  // the vocabulary, by id
	Scores []float32 // merge priority of each token (SPM); nil means all 0
	Types  []int32   // Type* of each token; nil means all TypeNormal
	Merges []string  // BPE merges "left right", highest priority first

	// Special token ids, -1 for none. An id outside the vocabulary counts
	// as none. EOT, EOM and the FIM tokens left at -1 are looked up by
	// their usual texts, as llama.cpp does.
	BOS, EOS, EOT, EOM, UNK, PAD                   int32
	FIMPre, FIMSuf, FIMMid, FIMPad, FIMRep, FIMSep int32

	AddBOS, AddEOS bool // Encode with addSpecial adds them
	AddSpacePrefix bool // SPM: text after the start or a special token gets a leading space
}

// DefaultVocab returns a Vocab with llama.cpp's defaults for a model and
// pre-tokenizer: the special ids and flags used when a file does not set them.
func DefaultVocab(model, pre string) Vocab {
	v := Vocab{Model: model, Pre: pre,
		BOS: -1, EOS: -1, EOT: -1, EOM: -1, UNK: -1, PAD: -1,
		FIMPre: -1, FIMSuf: -1, FIMMid: -1, FIMPad: -1, FIMRep: -1, FIMSep: -1}
	switch model {
	case "llama":
		v.BOS, v.EOS, v.UNK = 1, 2, 0
		v.AddBOS, v.AddSpacePrefix = true, true
	case "gpt2":
		v.BOS, v.EOS = 11, 11
		p := preTokenizers[cmp.Or(pre, "default")]
		v.AddBOS = p.addBOS
		if p.noBOS {
			v.BOS = -1
		}
	}
	return v
}

type kind int

const (
	kindSPM kind = iota
	kindBPE
)

// Tokenizer encodes and decodes text for one vocabulary. It is safe for
// concurrent use.
type Tokenizer struct {
	kind   kind
	tokens []string
	scores []float32
	attrs  []uint16
	ids    map[string]int32

	// BPE
	ranks        map[string]int32 // by appendMergeKey of the bytes the merge joins
	mergeLen     []int32          // by rank: the bytes the merge joins
	byteIDs      [256]int32       // the token of each single byte, -1 if none
	longestToken int
	steps        []splitStep
	ignoreMerges bool

	// SPM
	byteTokens [256]int32
	joins      map[uint64]struct{} // see spmJoins
	spmClass   []uint32            // see spmClasses
	classChars []int32
	classSize  []int32

	specials []int32 // tokens matched in the text, longest first
	// maxCover is the most bytes of input text one token can stand for,
	// 0 when there is no bound (a token that strips the spaces beside it).
	maxCover int
	eog      map[int32]bool

	bos, eos, unk  int32
	pad            int32
	addBOS, addEOS bool
	addSpacePrefix bool
	cleanSpaces    bool
}

// New builds a Tokenizer from v. It fails for an unknown model or
// pre-tokenizer, naming it.
func New(v Vocab) (*Tokenizer, error) {
	n := len(v.Tokens)
	if n == 0 {
		return nil, errors.New("tokenizer: empty vocabulary")
	}
	if v.Scores != nil && len(v.Scores) < n {
		return nil, fmt.Errorf("tokenizer: %d scores for %d tokens", len(v.Scores), n)
	}
	if v.Types != nil && len(v.Types) < n {
		return nil, fmt.Errorf("tokenizer: %d token types for %d tokens", len(v.Types), n)
	}
	t := &Tokenizer{
		tokens:         make([]string, n),
		scores:         v.Scores,
		attrs:          make([]uint16, n),
		ids:            make(map[string]int32, n),
		addBOS:         v.AddBOS,
		addEOS:         v.AddEOS,
		addSpacePrefix: v.AddSpacePrefix,
	}
	switch v.Model {
	case "llama":
		t.kind = kindSPM
	case "gpt2":
		t.kind = kindBPE
		pre := cmp.Or(v.Pre, "default")
		p, ok := preTokenizers[pre]
		if !ok {
			return nil, fmt.Errorf("tokenizer: unsupported pre-tokenizer %q (tokenizer.ggml.pre)", v.Pre)
		}
		steps, err := compileSteps(p.regexes)
		if err != nil {
			return nil, err
		}
		t.steps, t.ignoreMerges, t.cleanSpaces = steps, p.ignoreMerges, p.cleanSpaces
		t.ranks = make(map[string]int32, len(v.Merges))
		t.mergeLen = make([]int32, len(v.Merges))
		var key, left, right []byte
		for i, m := range v.Merges {
			// llama.cpp splits at the first space after the first byte, so
			// a merge may start with a space; a later duplicate keeps the
			// earlier rank. A merge of characters outside the byte
			// alphabet can never apply.
			j := strings.IndexByte(m[min(1, len(m)):], ' ')
			if j < 0 {
				// llama.cpp merges two empty strings, which never apply.
				continue
			}
			j += min(1, len(m))
			var ok1, ok2 bool
			left, ok1 = alphabetBytes(left[:0], m[:j])
			right, ok2 = alphabetBytes(right[:0], m[j+1:])
			if !ok1 || !ok2 {
				continue
			}
			key = appendMergeKey(key[:0], left, right)
			if _, dup := t.ranks[string(key)]; !dup {
				t.ranks[string(key)] = int32(i)
				t.mergeLen[i] = int32(len(left) + len(right))
			}
		}
	default:
		return nil, fmt.Errorf("tokenizer: unsupported tokenizer model %q (tokenizer.ggml.model)", v.Model)
	}

	for i, s := range v.Tokens {
		if s == "" {
			s = fmt.Sprintf("[EMPTY_%d]", i)
		}
		t.tokens[i] = s
		t.ids[s] = int32(i)
		t.attrs[i] = attrNormal
		if v.Types != nil {
			t.attrs[i] = typeAttr(v.Types[i])
		}
	}

	valid := func(id int32) int32 {
		if id < 0 || int(id) >= n {
			return -1
		}
		return id
	}
	t.bos, t.eos, t.unk, t.pad = valid(v.BOS), valid(v.EOS), valid(v.UNK), valid(v.PAD)
	t.markSpecials(v, valid)

	if t.kind == kindBPE {
		for b := range t.byteIDs {
			t.byteIDs[b] = -1
			if id, ok := t.ids[string([]byte{byte(b)})]; ok {
				t.byteIDs[b] = id
			}
		}
	}
	// The merges keep symbol lengths in 16 bits; every merge makes a token
	// (SPM) or joins a rule's two sides (BPE).
	for i, s := range t.tokens {
		t.longestToken = max(t.longestToken, len(s))
		if t.kind == kindSPM && len(s) > math.MaxUint16 {
			return nil, fmt.Errorf("tokenizer: token %d is %d bytes long, more than %d", i, len(s), math.MaxUint16)
		}
	}
	for i, n := range t.mergeLen {
		if n > math.MaxUint16 {
			return nil, fmt.Errorf("tokenizer: merge %d joins %d bytes, more than %d", i, n, math.MaxUint16)
		}
	}
	if t.kind == kindSPM {
		for b := range t.byteTokens {
			t.byteTokens[b] = t.byteToken(byte(b))
		}
		t.joins = spmJoins(t.tokens)
		t.spmClass, t.classChars, t.classSize = spmClasses(n, t.scores, t.tokens)
	}
	t.maxCover = t.longestCover()
	return t, nil
}

// longestCover is the most bytes of input text a token can stand for.
// Every token comes from a stretch of the input: a special token from its
// own text (and, with a strip flag, any run of spaces beside it: no bound);
// an SPM piece from at most its bytes (U+2581 from a space or itself); a
// byte-level BPE piece from at most one byte per character of it (GPT-2's
// byte alphabet; an invalid byte, re-encoded as U+FFFD, takes three). Any
// token may be a merge's result, whatever its type, so all count.
func (t *Tokenizer) longestCover() int {
	most := 1
	for i, s := range t.tokens {
		if t.attrs[i]&(attrLStrip|attrRStrip) != 0 {
			return 0
		}
		n := len(s)
		if t.kind == kindBPE && t.attrs[i]&(attrControl|attrUserDefined|attrUnknown) == 0 {
			n = utf8.RuneCountInString(s)
		}
		most = max(most, n)
	}
	return most
}

// MinTokens is a lower bound on the number of tokens Encode makes of a text
// of n bytes, computed without reading it: a long prompt can be refused
// before the work of tokenizing it. It is 0 when the vocabulary gives no
// bound.
func (t *Tokenizer) MinTokens(n int) int {
	if t.maxCover == 0 {
		return 0
	}
	return (n + t.maxCover - 1) / t.maxCover
}

func typeAttr(ty int32) uint16 {
	switch ty {
	case TypeUnknown:
		return attrUnknown
	case TypeUnused:
		return attrUnused
	case TypeNormal:
		return attrNormal
	case TypeControl:
		return attrControl
	case TypeUserDefined:
		return attrUserDefined
	case TypeByte:
		return attrByte
	}
	return 0
}

// Texts llama.cpp recognises special tokens by when the file does not name
// them, in the order they are preferred here (llama.cpp takes whichever its
// hash map yields first).
var (
	eotTexts    = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}
	eomTexts    = []string{"<|eom_id|>"}
	fimPreTexts = []string{"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"}
	fimSufTexts = []string{"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"}
	fimMidTexts = []string{"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"}
	fimPadTexts = []string{"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}
	fimRepTexts = []string{"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}
	fimSepTexts = []string{"<|file_sep|>"}

	// Tokens that end generation whatever the file says.
	eogTexts = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
		"<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
		"<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~["}
)

// markSpecials completes the special ids and token attributes the way
// llama.cpp's loader does after reading them, then lists the tokens to match
// in text and the end-of-generation set.
func (t *Tokenizer) markSpecials(v Vocab, valid func(int32) int32) {
	// A token found by its text is made a control token, which among other
	// things stops it from being matched in text without parseSpecial.
	find := func(id int32, texts []string) int32 {
		if id = valid(id); id >= 0 {
			return id
		}
		for _, s := range texts {
			if i, ok := t.ids[s]; ok {
				t.attrs[i] |= attrControl
				return i
			}
		}
		return -1
	}
	eot := find(v.EOT, eotTexts)
	eom := find(v.EOM, eomTexts)
	find(v.FIMPre, fimPreTexts)
	find(v.FIMSuf, fimSufTexts)
	find(v.FIMMid, fimMidTexts)
	fimPad := find(v.FIMPad, fimPadTexts)
	fimRep := find(v.FIMRep, fimRepTexts)
	fimSep := find(v.FIMSep, fimSepTexts)

	t.eog = map[int32]bool{}
	for _, id := range []int32{fimPad, fimRep, fimSep} {
		if id >= 0 {
			t.eog[id] = true
		}
	}
	for _, s := range eogTexts {
		if i, ok := t.ids[s]; ok {
			t.eog[i] = true
			t.attrs[i] |= attrControl
		}
	}
	// gpt-oss's structural tokens are always rendered and always matched.
	for _, s := range []string{"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"} {
		if i, ok := t.ids[s]; ok {
			t.attrs[i] = attrUserDefined
		}
	}
	for _, id := range []int32{t.eos, eot, eom} {
		if id >= 0 {
			t.eog[id] = true
		}
	}
	// In gpt-oss's and Solar Open's vocabularies <|end|> ends a message, not
	// the generation.
	has := func(s string) bool { i, ok := t.ids[s]; return ok && t.eog[i] }
	calls := has("<|call|>") || has("<|calls|>")
	if end, ok := t.ids["<|end|>"]; ok && t.eog[end] && calls && (has("<|return|>") || has("<|flush|>")) {
		delete(t.eog, end)
		t.attrs[end] = attrUserDefined
	}
	// Gemma 4 uses </s> as an ordinary token.
	if s, ok := t.ids["</s>"]; ok && t.eog[s] && has("<|tool_response>") {
		delete(t.eog, s)
		t.attrs[s] = attrNormal
	}

	for i, a := range t.attrs {
		if a&(attrControl|attrUserDefined|attrUnknown) != 0 {
			t.specials = append(t.specials, int32(i))
		}
	}
	// Longer tokens first, so that a token containing another wins; equal
	// lengths by id, to be deterministic.
	slices.SortStableFunc(t.specials, func(a, b int32) int {
		return len(t.tokens[b]) - len(t.tokens[a])
	})

	// Per-model strip flags that llama.cpp keys on names.
	name := strings.ToLower(v.Name)
	switch {
	case strings.Contains(v.Pre, "jina-v2-de") || strings.Contains(v.Pre, "jina-v2-es") || strings.Contains(v.Pre, "jina-v2-code"):
		t.setAttr("<mask>", attrLStrip, true)
	case strings.Contains(name, "phi-3") || strings.Contains(name, "phi3"):
		// Phi-3's chat tokens swallow the whitespace after them.
		for _, id := range t.specials {
			t.attrs[id] |= attrRStrip
		}
		t.setAttr("</s>", attrRStrip, true)
		for _, s := range []string{"<unk>", "<s>", "<|endoftext|>"} {
			t.setAttr(s, attrRStrip, false)
		}
	case strings.Contains(name, "modern-bert"):
		t.setAttr("[MASK]", attrLStrip, true)
	}
}

func (t *Tokenizer) setAttr(text string, a uint16, on bool) {
	i, ok := t.ids[text]
	if !ok {
		return
	}
	if on {
		t.attrs[i] |= a
	} else {
		t.attrs[i] &^= a
	}
}

// byteToken is the SPM token for a raw byte: <0xNN>, else the byte itself,
// else the unknown token.
func (t *Tokenizer) byteToken(b byte) int32 {
	if id, ok := t.ids[fmt.Sprintf("<0x%02X>", b)]; ok {
		return id
	}
	if id, ok := t.ids[string([]byte{b})]; ok {
		return id
	}
	return t.unk
}

// VocabSize is the number of tokens.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// Token returns the vocabulary string of id ("" when out of range).
func (t *Tokenizer) Token(id int32) string {
	if id < 0 || int(id) >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// BOS is the beginning-of-sequence token, -1 when there is none.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS is the end-of-sequence token, -1 when there is none.
func (t *Tokenizer) EOS() int32 { return t.eos }

// PAD is the padding token, -1 when there is none.
func (t *Tokenizer) PAD() int32 { return t.pad }

// AddBOS reports whether Encode with addSpecial starts with BOS.
func (t *Tokenizer) AddBOS() bool { return t.addBOS && t.bos >= 0 }

// IsEOG reports whether id ends generation: EOS, EOT, EOM and the tokens
// llama.cpp treats alike (<|im_end|>, <|endoftext|>, FIM padding, ...).
func (t *Tokenizer) IsEOG(id int32) bool { return t.eog[id] }

// IsControl reports whether id is a control token (BOS, EOS, <|im_end|>…)
// or the unknown token: tokens that mark structure rather than text.
func (t *Tokenizer) IsControl(id int32) bool {
	return id >= 0 && int(id) < len(t.attrs) && t.attrs[id]&(attrControl|attrUnknown) != 0
}

// fragment is a piece of the input: raw text, or a special token (tok >= 0)
// found in it.
type fragment struct {
	tok  int32
	text string
}

// Encode tokenizes text. With addSpecial, BOS and EOS are added as the
// vocabulary says; with parseSpecial, control tokens written in the text
// (such as "<|im_start|>") become those tokens. User-defined tokens are
// always matched in the text, as in llama.cpp. The text must be under 2 GiB
// (the merges keep int32 offsets, to be compact).
func (t *Tokenizer) Encode(text string, addSpecial, parseSpecial bool) []int32 {
	frags := t.partition(text, parseSpecial)
	var out []int32
	if addSpecial && t.addBOS && t.bos >= 0 {
		out = append(out, t.bos)
	}
	// One scratch space for all the text; its progress through the text
	// paces the growth of out.
	m := merger{total: len(text), first: len(out)}
	switch t.kind {
	case kindSPM:
		// Like SentencePiece, the text gets a leading space, and so does
		// each stretch of text that follows a special token.
		prevSpecial := true
		for _, f := range frags {
			if f.tok >= 0 {
				out = append(out, f.tok)
				m.base += len(t.tokens[f.tok])
				prevSpecial = true
				continue
			}
			out = t.encodeSPM(f.text, t.addSpacePrefix && prevSpecial, out, &m)
			m.base += len(f.text)
			prevSpecial = false
		}
	case kindBPE:
		for _, f := range frags {
			if f.tok >= 0 {
				out = append(out, f.tok)
				m.base += len(t.tokens[f.tok])
			} else {
				out = t.encodeBPE(f.text, out, &m)
				m.base += len(f.text)
			}
		}
	}
	if addSpecial && t.addEOS && t.eos >= 0 {
		out = append(out, t.eos)
	}
	return out
}

// partition cuts the special tokens out of text, longest token first, as
// llama.cpp's tokenizer_st_partition: each token is searched for in the raw
// pieces the longer ones left. Control and unknown tokens are only searched
// for with parseSpecial; user-defined ones always are.
func (t *Tokenizer) partition(text string, parseSpecial bool) []fragment {
	if text == "" {
		return nil
	}
	frags := []fragment{{tok: -1, text: text}}
	var next []fragment
	for _, id := range t.specials {
		a := t.attrs[id]
		if !parseSpecial && a&(attrControl|attrUnknown) != 0 {
			continue
		}
		s := t.tokens[id]
		found := false
		for _, f := range frags {
			if f.tok < 0 && strings.Contains(f.text, s) {
				found = true
				break
			}
		}
		if !found {
			continue
		}
		next = next[:0]
		for _, f := range frags {
			if f.tok >= 0 {
				next = append(next, f)
				continue
			}
			rest := f.text
			for {
				i := strings.Index(rest, s)
				if i < 0 {
					if rest != "" {
						next = append(next, fragment{tok: -1, text: rest})
					}
					break
				}
				left := rest[:i]
				if a&attrLStrip != 0 {
					left = strings.TrimRight(left, asciiSpaces)
				}
				if left != "" {
					next = append(next, fragment{tok: -1, text: left})
				}
				next = append(next, fragment{tok: id})
				rest = rest[i+len(s):]
				if a&attrRStrip != 0 {
					rest = strings.TrimLeft(rest, asciiSpaces)
				}
			}
		}
		frags, next = next, frags
	}
	return frags
}

// asciiSpaces is what C's isspace accepts, which llama.cpp strips with.
const asciiSpaces = " \t\n\v\f\r"
