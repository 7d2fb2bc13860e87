package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Codepoint flags, one general-category bit (as llama.cpp's unicode_cpt_flags)
// plus a whitespace bit. The pre-tokenizers test these rather than Go's
// unicode functions directly so that every rule sees the same classification
// llama.cpp's tables give.
const (
	catUndefined uint16 = 1 << iota // unassigned codepoint (Cn)
	catNumber                       // \p{N}
	catLetter                       // \p{L}
	catSeparator                    // \p{Z}
	catMark                         // \p{M}
	catPunct                        // \p{P}
	catSymbol                       // \p{S}
	catControl                      // \p{C} other than Cn
	flagSpace                       // White_Space property

	catMask = flagSpace - 1
)

// asciiFlags caches cptFlags for the ASCII range, which is most of any text.
var asciiFlags = func() (t [128]uint16) {
	for c := range t {
		t[c] = slowFlags(rune(c))
	}
	return
}()

// cptFlags returns the flags of c. Codepoints outside Unicode are undefined.
func cptFlags(c rune) uint16 {
	if c >= 0 && c < 128 {
		return asciiFlags[c]
	}
	return slowFlags(c)
}

func slowFlags(c rune) uint16 {
	var f uint16
	switch {
	case c < 0 || c > unicode.MaxRune:
		return catUndefined
	case unicode.Is(unicode.L, c):
		f = catLetter
	case unicode.Is(unicode.N, c):
		f = catNumber
	case unicode.Is(unicode.Z, c):
		f = catSeparator
	case unicode.Is(unicode.M, c):
		f = catMark
	case unicode.Is(unicode.P, c):
		f = catPunct
	case unicode.Is(unicode.S, c):
		f = catSymbol
	case unicode.In(c, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs):
		f = catControl
	default:
		f = unicode151(c)
	}
	// llama.cpp's whitespace set is exactly the White_Space property.
	if unicode.Is(unicode.White_Space, c) {
		f |= flagSpace
	}
	return f
}

// unicode151 classifies the codepoints Unicode 15.1 assigned, which Go's
// tables (Unicode 15.0) do not know yet but llama.cpp's do: four ideographic
// description characters, one CJK stroke and CJK Extension I.
func unicode151(c rune) uint16 {
	switch {
	case c >= 0x2FFC && c <= 0x2FFF, c == 0x31EF:
		return catSymbol
	case c >= 0x2EBF0 && c <= 0x2EE5D:
		return catLetter
	}
	return catUndefined
}

// decodeCpts splits s into codepoints the way llama.cpp's
// unicode_cpts_from_utf8 does: structurally well-formed sequences are decoded
// without checking for overlong forms or surrogates, and each byte that does
// not start one becomes U+FFFD. Values beyond U+10FFFF (which llama.cpp
// cannot re-encode) also become U+FFFD.
func decodeCpts(s string) []rune {
	// The standard count is never lower: it reads every byte of an ill-formed
	// sequence as one.
	out := make([]rune, 0, utf8.RuneCountInString(s))
	for i := 0; i < len(s); {
		c, n := decodeOne(s, i)
		out = append(out, c)
		i += n
	}
	return out
}

func decodeOne(s string, i int) (rune, int) {
	b := s[i]
	cont := func(k int) bool { return i+k < len(s) && s[i+k]&0xC0 == 0x80 }
	switch {
	case b < 0x80:
		return rune(b), 1
	case b&0x40 == 0:
		return unicode.ReplacementChar, 1
	case b&0x20 == 0:
		if !cont(1) {
			return unicode.ReplacementChar, 1
		}
		return rune(b&0x1F)<<6 | rune(s[i+1]&0x3F), 2
	case b&0x10 == 0:
		if !cont(1) || !cont(2) {
			return unicode.ReplacementChar, 1
		}
		return rune(b&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F), 3
	case b&0x08 == 0:
		if !cont(1) || !cont(2) || !cont(3) {
			return unicode.ReplacementChar, 1
		}
		c := rune(b&0x07)<<18 | rune(s[i+1]&0x3F)<<12 | rune(s[i+2]&0x3F)<<6 | rune(s[i+3]&0x3F)
		if c > unicode.MaxRune {
			c = unicode.ReplacementChar
		}
		return c, 4
	}
	return unicode.ReplacementChar, 1
}

// appendCpt appends the UTF-8 form of c. Unlike utf8.AppendRune it encodes
// surrogate halves as three bytes, as llama.cpp does, so that text decoded by
// decodeCpts comes back byte for byte.
func appendCpt(b []byte, c rune) []byte {
	switch {
	case c < 0x80:
		return append(b, byte(c))
	case c < 0x800:
		return append(b, 0xC0|byte(c>>6), 0x80|byte(c)&0x3F)
	case c < 0x10000:
		return append(b, 0xE0|byte(c>>12), 0x80|byte(c>>6)&0x3F, 0x80|byte(c)&0x3F)
	}
	return append(b, 0xF0|byte(c>>18), 0x80|byte(c>>12)&0x3F, 0x80|byte(c>>6)&0x3F, 0x80|byte(c)&0x3F)
}

// cptLen is the length of appendCpt's form of c.
func cptLen(c rune) int {
	switch {
	case c < 0x80:
		return 1
	case c < 0x800:
		return 2
	case c < 0x10000:
		return 3
	}
	return 4
}

// utf8Len is the sequence length announced by a UTF-8 lead byte (1 for
// continuation and invalid bytes), as llama.cpp's unicode_len_utf8.
func utf8Len(b byte) int {
	switch b >> 4 {
	case 0xC, 0xD:
		return 2
	case 0xE:
		return 3
	case 0xF:
		return 4
	}
	return 1
}

// GPT-2's byte-level alphabet: every byte is shown as a printable codepoint
// so that BPE merges never see raw control bytes or spaces. Printable Latin-1
// bytes stand for themselves; the other 68 take U+0100 onwards in byte order.
var (
	byteToCpt [256]rune
	cptToByte = map[rune]byte{}
)

func init() {
	n := rune(0)
	for b := 0; b < 256; b++ {
		if (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteToCpt[b] = rune(b)
		} else {
			byteToCpt[b] = 256 + n
			n++
		}
		cptToByte[byteToCpt[b]] = byte(b)
	}
}
