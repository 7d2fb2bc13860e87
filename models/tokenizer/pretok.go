package tokenizer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dlclark/regexp2"
)

// A splitStep cuts each segment of a text (given as codepoint counts) into
// smaller segments. A pre-tokenizer is a list of steps applied in turn, as
// llama.cpp's unicode_regex_split applies its list of regexes.
// The segments come out appended to out, reused from an earlier step.
type splitStep interface {
	split(cpts []rune, segs, out []int32) []int32
}

// preTokenizer describes one tokenizer.ggml.pre value.
type preTokenizer struct {
	regexes      []string // llama.cpp's regex list, in its ECMAScript dialect
	ignoreMerges bool     // a word that is itself a token skips the merges
	cleanSpaces  bool     // Detokenize tidies " ," and the like
	addBOS       bool     // default for tokenizer.ggml.add_bos_token
	noBOS        bool     // the model has no BOS token by default
}

// The regexes llama.cpp pairs with each pre-tokenizer (llama-vocab.cpp).
const (
	reGPT2   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
	reLlama3 = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	reQwen2  = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	rePoro   = " ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+"
	reCJK    = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"

	// Written with escapes: several of these letters have canonical
	// equivalents that editors silently substitute.
	reDeepseekLLMLetters = "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF" +
		"\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481" +
		"\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B" +
		"\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D" +
		"\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC" +
		"\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134" +
		"\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D" +
		"\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A" +
		"\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2" +
		"\U000118A0-\U000118DF\U0001E900-\U0001E943]+"
	reDeepseekLLMPunct = "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+"
)

var (
	preLlama3     = preTokenizer{regexes: []string{reLlama3}, cleanSpaces: true}
	preQwen2      = preTokenizer{regexes: []string{reQwen2}}
	preStarcoder  = preTokenizer{regexes: []string{`\p{N}`, reGPT2}}
	preGPT2       = preTokenizer{regexes: []string{reGPT2}, cleanSpaces: true}
	prePoro       = preTokenizer{regexes: []string{rePoro}}
	preDefaultBPE = preTokenizer{
		regexes:     []string{`[\p{P}\$\+<=>\^~\|]+`, reGPT2, `\p{N}+`, `[0-9][0-9][0-9]`},
		cleanSpaces: true,
	}
)

// preTokenizers maps tokenizer.ggml.pre to its rules, as llama.cpp's vocab
// loader does for the values whose regexes this package implements.
var preTokenizers = map[string]preTokenizer{
	"default": preDefaultBPE,

	"llama3": withFlags(preLlama3, true, true), "llama-v3": withFlags(preLlama3, true, true),
	"llama-bpe": withFlags(preLlama3, true, true), "falcon3": withFlags(preLlama3, true, true),
	"falcon-h1": withFlags(preLlama3, true, true), "pixtral": withFlags(preLlama3, true, true),
	"midm-2.0": withFlags(preLlama3, true, true), "lfm2": withFlags(preLlama3, true, true),
	"jina-v5-nano": withFlags(preLlama3, true, true),
	"dbrx":         preLlama3, "smaug-bpe": preLlama3,
	"glm4":        {regexes: preLlama3.regexes, cleanSpaces: true, noBOS: true},
	"chatglm-bpe": {regexes: preLlama3.regexes, cleanSpaces: true, noBOS: true},

	"deepseek-llm":   {regexes: []string{"[\r\n]", reDeepseekLLMLetters, reDeepseekLLMPunct, `\s+$`, reCJK, `\p{N}+`}},
	"deepseek-coder": {regexes: []string{"[\r\n]", `\s?\p{L}+`, `\s?\p{P}+`, reCJK, `\p{N}`}},

	"falcon": {regexes: []string{"[\\p{P}\\$\\+<=>\\^~\\|`]+", reGPT2, `[0-9][0-9][0-9]`}, cleanSpaces: true},

	"starcoder": cleaned(preStarcoder), "refact": cleaned(preStarcoder), "codeshell": cleaned(preStarcoder),
	"exaone": cleaned(preStarcoder), "minerva-7b": cleaned(preStarcoder), "mellum2": cleaned(preStarcoder),
	"command-r": preStarcoder, "smollm": preStarcoder,

	"gpt-2": preGPT2, "phi-2": preGPT2, "jina-es": preGPT2, "jina-de": preGPT2, "gigachat": preGPT2,
	"jina-v2-es": preGPT2, "jina-v2-de": preGPT2, "a.x-4.0": preGPT2, "mellum": preGPT2,
	"modern-bert": preGPT2, "exaone4": preGPT2, "jina-v1-en": preGPT2, "jina-v2-code": preGPT2,
	"roberta-bpe": preGPT2, "mpt": preGPT2, "olmo": preGPT2, "jais": preGPT2,
	"trillion":        {regexes: preGPT2.regexes},
	"granite-docling": {regexes: preGPT2.regexes},

	"qwen2": preQwen2, "deepseek-r1-qwen": preQwen2, "kormo": preQwen2, "f2llmv2": preQwen2,
	"hunyuan": preQwen2, "solar-open": preQwen2, "grok-2": preQwen2,
	"stablelm2": cleaned(preQwen2), "megrez": cleaned(preQwen2),

	"poro-chat": prePoro, "bloom": cleaned(prePoro), "gpt3-finnish": cleaned(prePoro),
	"viking": {regexes: []string{rePoro, `\p{N}`}},
}

func withFlags(p preTokenizer, ignoreMerges, addBOS bool) preTokenizer {
	p.ignoreMerges, p.addBOS = ignoreMerges, addBOS
	return p
}

func cleaned(p preTokenizer) preTokenizer {
	p.cleanSpaces = true
	return p
}

// compileSteps turns a regex list into split steps. llama.cpp runs three of
// its regexes through hand-written scanners whose results differ from the
// regexes in corner cases; those get the same scanners here, the rest go to
// regexp2 after translation.
func compileSteps(regexes []string) ([]splitStep, error) {
	steps := make([]splitStep, 0, len(regexes))
	for _, re := range regexes {
		switch re {
		case reGPT2:
			steps = append(steps, scanGPT2{})
		case reLlama3:
			steps = append(steps, scanLlama3{maxDigits: 3})
		case reQwen2:
			steps = append(steps, scanLlama3{maxDigits: 1})
		default:
			s, err := newRegexStep(re)
			if err != nil {
				return nil, err
			}
			steps = append(steps, s)
		}
	}
	return steps, nil
}

// splitWords runs the steps over text and returns the lengths of its words
// in bytes of text, in order. A word whose bytes are not its codepoints'
// UTF-8 (llama.cpp reads an invalid byte as U+FFFD) has its length negated.
// The codepoints are let go before the words are merged.
func splitWords(text string, steps []splitStep) []int32 {
	cpts := decodeCpts(text)
	words, spare := []int32{int32(len(cpts))}, []int32(nil)
	for _, s := range steps {
		words, spare = s.split(cpts, words, spare[:0]), words
	}
	off := 0
	for i, k := range words {
		start, same := off, true
		for range k {
			c, w := decodeOne(text, off)
			same = same && cptLen(c) == w
			off += w
		}
		words[i] = int32(off - start)
		if !same {
			words[i] = -words[i]
		}
	}
	return words
}

// outOfRange stands for a position outside the segment being scanned.
const outOfRange rune = -1

// segScanner gives the scanners llama.cpp's view of one segment: positions
// outside it read as outOfRange with no flags.
type segScanner struct {
	cpts   []rune
	lo, hi int
	prev   int
	out    []int32
	// flagMemo holds the flags of a segment's codepoints, unless ascii
	// says they are all ASCII and their flags are a table's: the memo of
	// a long text is twice its size again.
	flagMemo []uint16
	ascii    bool
}

func (s *segScanner) at(p int) rune {
	if p >= s.lo && p < s.hi {
		return s.cpts[p]
	}
	return outOfRange
}

func (s *segScanner) flags(p int) uint16 {
	switch {
	case p < s.lo || p >= s.hi:
		return 0
	case s.ascii:
		return asciiFlags[s.cpts[p]]
	}
	return s.flagMemo[p-s.lo]
}

// cut ends the current word at end, dropping it when empty, and returns its
// length.
func (s *segScanner) cut(end int) int {
	n := end - s.prev
	if n > 0 {
		s.out = append(growAtRate(s.out, 1, 0, end, len(s.cpts)), int32(n))
	}
	s.prev = end
	return n
}

// forEachSegment calls scan on a scanner positioned over each segment.
func forEachSegment(cpts []rune, segs, out []int32, scan func(s *segScanner)) []int32 {
	s := &segScanner{cpts: cpts, out: grow(out, len(segs))}
	start := 0
	for _, n32 := range segs {
		n := int(n32)
		s.lo, s.hi, s.prev = start, start+n, start
		seg := cpts[start : start+n]
		s.ascii = !slices.ContainsFunc(seg, func(c rune) bool { return c < 0 || c >= 128 })
		if !s.ascii {
			s.flagMemo = slices.Grow(s.flagMemo[:0], n)
			for _, c := range seg {
				s.flagMemo = append(s.flagMemo, cptFlags(c))
			}
		}
		scan(s)
		start += n
	}
	return s.out
}

const wordClass = flagSpace | catLetter | catNumber

// scanGPT2 is llama.cpp's scanner for GPT-2's regex
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
// which, unlike the regex, ends with an implicit \s+ for whitespace no
// alternative takes.
type scanGPT2 struct{}

func (scanGPT2) split(cpts []rune, segs, out []int32) []int32 {
	return forEachSegment(cpts, segs, out, func(s *segScanner) {
		for pos := s.lo; pos < s.hi; {
			c, f := s.cpts[pos], s.flags(pos)
			if c == '\'' && pos+1 < s.hi {
				if n := s.at(pos + 1); n == 's' || n == 't' || n == 'm' || n == 'd' {
					pos += s.cut(pos + 2)
					continue
				}
				if pos+2 < s.hi && isContraction2(s.at(pos+1), s.at(pos+2)) {
					pos += s.cut(pos + 3)
					continue
				}
			}
			// ' ?\p{L}+', ' ?\p{N}+' and ' ?[^\s\p{L}\p{N}]+': the optional
			// space decides nothing, the codepoint after it does.
			f2 := f
			if c == ' ' {
				f2 = s.flags(pos + 1)
			}
			var in func(uint16) bool
			switch {
			case f2&catLetter != 0:
				in = func(g uint16) bool { return g&catLetter != 0 }
			case f2&catNumber != 0:
				in = func(g uint16) bool { return g&catNumber != 0 }
			case f2&wordClass == 0 && f2 != 0:
				in = func(g uint16) bool { return g&wordClass == 0 && g != 0 }
			}
			if in != nil {
				if c == ' ' {
					pos++
				}
				for in(s.flags(pos)) {
					pos++
				}
				s.cut(pos)
				continue
			}
			pos = s.whitespace(pos, false)
		}
	})
}

func isContraction2(a, b rune) bool {
	return (a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')
}

// whitespace handles the whitespace alternatives shared by the scanners at
// pos and returns the new position. With newlines set it first tries
// \s*[\r\n]+ (up to the last CR or LF of the run); then \s+(?!\S) keeps the
// last whitespace character of a run followed by a non-space for the next
// word; then \s+ takes the whole run; a character that matches nothing is a
// word of its own.
func (s *segScanner) whitespace(pos int, newlines bool) int {
	n, lastNL := 0, -1
	for s.flags(pos+n)&flagSpace != 0 {
		if c := s.at(pos + n); c == '\r' || c == '\n' {
			lastNL = pos + n + 1
		}
		n++
	}
	switch {
	case newlines && lastNL >= 0:
		pos = lastNL
	case n > 1 && s.at(pos+n) != outOfRange:
		pos += n - 1
	case n > 0:
		pos += n
	default:
		pos++
	}
	s.cut(pos)
	return pos
}

// scanLlama3 is llama.cpp's scanner for the Llama 3 regex
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// and, with maxDigits 1, for Qwen2's, which has \p{N} for \p{N}{1,3}.
type scanLlama3 struct{ maxDigits int }

func (sc scanLlama3) split(cpts []rune, segs, out []int32) []int32 {
	return forEachSegment(cpts, segs, out, func(s *segScanner) {
		for pos := s.lo; pos < s.hi; {
			c, f := s.cpts[pos], s.flags(pos)
			// Only ASCII letters lower-case to the contraction letters, so
			// ASCII case folding is exact here.
			if c == '\'' && pos+1 < s.hi {
				if n := asciiLower(s.at(pos + 1)); n == 's' || n == 't' || n == 'm' || n == 'd' {
					pos += s.cut(pos + 2)
					continue
				}
				if pos+2 < s.hi && isContraction2(asciiLower(s.at(pos+1)), asciiLower(s.at(pos+2))) {
					pos += s.cut(pos + 3)
					continue
				}
			}
			// [^\r\n\p{L}\p{N}]?\p{L}+
			if c != '\r' && c != '\n' && f&catNumber == 0 && (f&catLetter != 0 || s.flags(pos+1)&catLetter != 0) {
				pos++
				for s.flags(pos)&catLetter != 0 {
					pos++
				}
				s.cut(pos)
				continue
			}
			// \p{N}{1,maxDigits}
			if f&catNumber != 0 {
				start := pos
				for s.flags(pos)&catNumber != 0 {
					pos++
					if pos-start >= sc.maxDigits {
						s.cut(pos)
						start = pos
					}
				}
				s.cut(pos)
				continue
			}
			// ' ?[^\s\p{L}\p{N}]+[\r\n]*'. llama.cpp tests the codepoint
			// itself for being in range here, not the one after the space.
			f2 := f
			if c == ' ' {
				f2 = s.flags(pos + 1)
			}
			if f2&wordClass == 0 && f != 0 {
				if c == ' ' {
					pos++
				}
				for g := s.flags(pos); g&wordClass == 0 && g != 0; g = s.flags(pos) {
					pos++
				}
				for c := s.at(pos); c == '\r' || c == '\n'; c = s.at(pos) {
					pos++
				}
				s.cut(pos)
				continue
			}
			pos = s.whitespace(pos, true)
		}
	})
}

func asciiLower(c rune) rune {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// regexStep is one of llama.cpp's std::regex splits. Matches and the text
// between them both become segments.
//
// llama.cpp runs a regex with Unicode categories over a "collapsed" copy of
// the text, in which each non-ASCII codepoint is replaced by one stand-in for
// its category (and \p{X} in the regex by the stand-in plus the ASCII members
// of X); other regexes run over the codepoints with non-ASCII whitespace
// replaced by a vertical tab. Both views and the regex translation are
// reproduced here, so that e.g. \p{N} matches exactly what llama.cpp's does.
type regexStep struct {
	re        *regexp2.Regexp
	collapsed bool
}

// Stand-ins of the collapsed view, as in llama.cpp.
const (
	standInOther  = 0xD0
	standInNumber = 0xD1
	standInLetter = 0xD2
	standInPunct  = 0xD3
	standInMark   = 0xD4
	standInSymbol = 0xD5
	standInSpace  = 0x0B
)

// categoryClasses gives, for each \p{X} llama.cpp collapses, the members of a
// character class standing for it: its stand-in and its ASCII members.
var categoryClasses = map[string]string{
	"N":  `\u00D1\x30-\x39`,
	"L":  `\u00D2\x41-\x5A\x61-\x7A`,
	"Lu": `\u00D2\x41-\x5A\x61-\x7A`,
	"Ll": `\u00D2\x41-\x5A\x61-\x7A`,
	"Lt": `\u00D2\x41-\x5A\x61-\x7A`,
	"Lm": `\u00D2\x41-\x5A\x61-\x7A`,
	"Lo": `\u00D2\x41-\x5A\x61-\x7A`,
	"P":  `\u00D3\x21-\x23\x25-\x2A\x2C-\x2F\x3A-\x3B\x3F-\x40\x5B-\x5D\x5F\x7B\x7D`,
	"M":  `\u00D4`,
	"S":  `\u00D5\x24\x2B\x3C-\x3E\x5E\x60\x7C\x7E`,
}

// C++ std::regex's \s (isspace in the C locale) is ASCII only; regexp2's is
// Unicode, so \s is spelled out.
const spaceClass = `\x09-\x0D\x20`

// newRegexStep compiles expr as a classStep where it has one of its
// shapes, else as a regexStep.
func newRegexStep(expr string) (splitStep, error) {
	step, tr, err := compileRegex(expr)
	if err != nil {
		return nil, err
	}
	if c, err := newClassStep(tr, step.collapsed); c != nil || err != nil {
		return c, err
	}
	return step, nil
}

// compileRegex translates expr for regexp2 and compiles it, returning the
// translation too.
func compileRegex(expr string) (*regexStep, string, error) {
	collapsed := false
	for k := range categoryClasses {
		if strings.Contains(expr, `\p{`+k+`}`) {
			collapsed = true
		}
	}
	var b strings.Builder
	inClass := false
	rs := []rune(expr)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == '\\' && i+1 < len(rs):
			i++
			switch e := rs[i]; e {
			case 's':
				if inClass {
					b.WriteString(spaceClass)
				} else {
					b.WriteString("[" + spaceClass + "]")
				}
			case 'S':
				if inClass {
					return nil, "", fmt.Errorf("tokenizer: regex %q: \\S inside a class is not supported", expr)
				}
				b.WriteString("[^" + spaceClass + "]")
			case 'd':
				if inClass {
					b.WriteString(`0-9`)
				} else {
					b.WriteString(`[0-9]`)
				}
			case 'p':
				end := i + 1
				for end < len(rs) && rs[end] != '}' {
					end++
				}
				if i+1 >= len(rs) || rs[i+1] != '{' || end == len(rs) {
					return nil, "", fmt.Errorf("tokenizer: regex %q: bad \\p", expr)
				}
				name := string(rs[i+2 : end])
				cls, ok := categoryClasses[name]
				if !ok {
					return nil, "", fmt.Errorf("tokenizer: regex %q: category \\p{%s} is not supported", expr, name)
				}
				if inClass {
					b.WriteString(cls)
				} else {
					b.WriteString("[" + cls + "]")
				}
				i = end
			default:
				b.WriteRune('\\')
				b.WriteRune(e)
			}
		case c == '[' && !inClass:
			inClass = true
			b.WriteRune(c)
			if i+1 < len(rs) && rs[i+1] == '^' {
				b.WriteRune('^')
				i++
			}
		case c == ']' && inClass:
			inClass = false
			b.WriteRune(c)
		case c == '[' && inClass:
			// regexp2 would read "-[" as a class subtraction.
			b.WriteString(`\[`)
		case c == '$' && !inClass:
			// ECMAScript's $ is the end of the input only; .NET's also
			// matches before a final newline.
			b.WriteString(`\z`)
		default:
			b.WriteRune(c)
		}
	}
	re, err := regexp2.Compile(b.String(), regexp2.None)
	if err != nil {
		return nil, "", fmt.Errorf("tokenizer: regex %q: %w", expr, err)
	}
	return &regexStep{re: re, collapsed: collapsed}, b.String(), nil
}

// viewRune is what the regex reads of c (see view).
func (r *regexStep) viewRune(c rune) rune {
	if c < 0x80 {
		return c
	}
	f := cptFlags(c)
	switch {
	case f&flagSpace != 0:
		return standInSpace
	case !r.collapsed:
		return c
	}
	switch f & catMask {
	case catNumber:
		return standInNumber
	case catLetter:
		return standInLetter
	case catPunct:
		return standInPunct
	case catMark:
		return standInMark
	case catSymbol:
		return standInSymbol
	}
	return standInOther
}

// view writes into v (reused) what the regex reads of cpts: non-ASCII
// whitespace as a stand-in space and, when the regex names collapsed
// categories, other non-ASCII codepoints as their category's stand-in.
func (r *regexStep) view(v, cpts []rune) []rune {
	v = slices.Grow(v[:0], len(cpts))[:len(cpts)]
	for i, c := range cpts {
		v[i] = r.viewRune(c)
	}
	return v
}

func (r *regexStep) split(cpts []rune, segs, out []int32) []int32 {
	// The view is made a segment at a time into one buffer: the regex
	// is done with a segment before the next.
	var seg []rune
	out = grow(out, len(segs))
	start := 0
	for _, n32 := range segs {
		n := int(n32)
		seg = r.view(seg, cpts[start:start+n])
		done := 0
		m, err := r.re.FindRunesMatch(seg)
		for err == nil && m != nil {
			out = grow(out, 2)
			if m.Index > done {
				out = append(out, int32(m.Index-done))
			}
			out = append(out, int32(m.Length))
			done = m.Index + m.Length
			m, err = r.re.FindNextMatch(m)
		}
		if done < n {
			out = append(grow(out, 1), int32(n-done))
		}
		start += n
	}
	return out
}

// classStep runs a regex of one of the shapes llama.cpp's other regexes
// take, over the same view as regexp2 would: an optional atom then a
// repeated class (\s?\p{L}+), a class a fixed number of times (\p{N},
// [0-9][0-9][0-9]), or a repeated class at the end of the segment (\s+$).
// The leftmost match at each place is the one the regex finds: the
// optional atom is taken when the class follows it, and the repetition is
// greedy with nothing after it. regexp2 allocates a match per match, many
// times the text over a long one, where this allocates nothing.
type classStep struct {
	r     *regexStep // for its view
	opt   *runeClass // the optional atom, nil for none
	class *runeClass
	count int  // the class this many times; 0 for one or more
	atEnd bool // the run must end the segment
}

// runeClass is a class of one character, as a bitmap over the codepoints
// a view can hold below U+10000, and the class's regex beyond.
type runeClass struct {
	bits []uint64
	re   *regexp2.Regexp
}

func (c *runeClass) has(r rune) bool {
	if int(r) < 64*len(c.bits) {
		return c.bits[r/64]&(1<<(r%64)) != 0
	}
	if r < 0x10000 {
		return false
	}
	ok, err := c.re.MatchRunes([]rune{r})
	return ok && err == nil
}

// newRuneClass compiles atom, a class or a single character. A collapsed
// view holds nothing past U+00FF.
func newRuneClass(atom string, collapsed bool) (*runeClass, error) {
	re, err := regexp2.Compile(atom, regexp2.None)
	if err != nil {
		return nil, err
	}
	n := 0x10000
	if collapsed {
		n = 0x100
	}
	c := &runeClass{bits: make([]uint64, n/64), re: re}
	one := make([]rune, 1)
	for r := range rune(n) {
		one[0] = r
		if ok, err := re.MatchRunes(one); ok && err == nil {
			c.bits[r/64] |= 1 << (r % 64)
		}
	}
	return c, nil
}

// atoms cuts a translated regex into its atoms (a class in brackets, an
// escape, or a character) and the quantifier after each ("", "?" or "+").
func atoms(expr string) (atoms, quants []string) {
	for i := 0; i < len(expr); {
		j := i + 1
		switch expr[i] {
		case '[':
			for j < len(expr) && expr[j] != ']' {
				if expr[j] == '\\' {
					j++
				}
				j++
			}
			j++
		case '\\':
			j++
		}
		j = min(j, len(expr))
		q := ""
		if j < len(expr) && (expr[j] == '?' || expr[j] == '+' || expr[j] == '*' || expr[j] == '{') {
			q = expr[j : j+1]
		}
		atoms, quants = append(atoms, expr[i:j]), append(quants, q)
		i = j + len(q)
	}
	return atoms, quants
}

// newClassStep returns the classStep for a translated regex of one of its
// shapes, or nil.
func newClassStep(expr string, collapsed bool) (splitStep, error) {
	as, qs := atoms(expr)
	single := func(a string) bool {
		return (strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]")) || a == " "
	}
	for _, a := range as {
		if !single(a) && a != `\z` {
			return nil, nil
		}
	}
	c := &classStep{r: &regexStep{collapsed: collapsed}}
	var err error
	switch {
	case len(as) == 2 && qs[0] == "?" && qs[1] == "+" && as[1] != `\z`:
		if c.opt, err = newRuneClass(as[0], collapsed); err != nil {
			return nil, err
		}
		c.class, err = newRuneClass(as[1], collapsed)
	case len(as) == 2 && qs[0] == "+" && as[1] == `\z` && qs[1] == "":
		c.atEnd = true
		c.class, err = newRuneClass(as[0], collapsed)
	case len(as) == 1 && qs[0] == "+":
		c.class, err = newRuneClass(as[0], collapsed)
	default:
		for i, a := range as {
			if a != as[0] || qs[i] != "" || a == `\z` {
				return nil, nil
			}
		}
		c.count = len(as)
		c.class, err = newRuneClass(as[0], collapsed)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *classStep) in(k *runeClass, seg []rune, p int) bool {
	return p < len(seg) && k.has(c.r.viewRune(seg[p]))
}

// match returns the end of the match at i, -1 for none.
func (c *classStep) match(seg []rune, i int) int {
	if c.count > 0 {
		for k := range c.count {
			if !c.in(c.class, seg, i+k) {
				return -1
			}
		}
		return i + c.count
	}
	p := i
	if c.opt != nil && c.in(c.opt, seg, i) && c.in(c.class, seg, i+1) {
		p++
	}
	if !c.in(c.class, seg, p) {
		return -1
	}
	for c.in(c.class, seg, p) {
		p++
	}
	return p
}

func (c *classStep) split(cpts []rune, segs, out []int32) []int32 {
	out = grow(out, len(segs))
	start := 0
	for _, n32 := range segs {
		n := int(n32)
		lo := start
		seg := cpts[start : start+n]
		start += n
		done := 0
		emit := func(i, end int) {
			out = growAtRate(out, 2, 0, lo+end, len(cpts))
			if i > done {
				out = append(out, int32(i-done))
			}
			out = append(out, int32(end-i))
			done = end
		}
		if c.atEnd {
			i := n
			for i > 0 && c.in(c.class, seg, i-1) {
				i--
			}
			if i < n {
				emit(i, n)
			}
		} else {
			for i := 0; i < n; {
				end := c.match(seg, i)
				if end < 0 {
					i++
					continue
				}
				emit(i, end)
				i = end
			}
		}
		if done < n {
			out = append(grow(out, 1), int32(n-done))
		}
	}
	return out
}
