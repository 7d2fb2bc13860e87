package constrain

import (
	"fmt"
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// maxRepeat bounds a pattern's counted repetitions, as RE2 does.
const maxRepeat = 1000

// parseRegex parses a pattern in RE2 syntax (which the JSON schema
// patterns people write are, with rare exceptions such as lookaround).
func parseRegex(pattern string) (*syntax.Regexp, error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	return re.Simplify(), nil
}

// regex reads what re matches whole. With inString the characters are
// written as a JSON string's content: '"' and '\' escaped, control
// characters left out.
func (b *builder) regex(from int32, re *syntax.Regexp, inString bool) (int32, error) {
	var err error
	var walk func(from int32, re *syntax.Regexp) int32
	walk = func(from int32, re *syntax.Regexp) int32 {
		if err != nil || b.big {
			return from
		}
		switch re.Op {
		case syntax.OpNoMatch:
			return b.state() // nothing reaches it
		case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText:
			// The whole output is matched, so anchors hold at its ends; in
			// the middle of a pattern they would need lookaround.
			return from
		case syntax.OpWordBoundary, syntax.OpNoWordBoundary:
			err = fmt.Errorf("pattern %q: word boundaries (\\b, \\B) are not supported", re.String())
			return from
		case syntax.OpLiteral:
			for _, r := range re.Rune {
				ranges := []rune{r, r}
				if re.Flags&syntax.FoldCase != 0 {
					for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
						ranges = append(ranges, f, f)
					}
				}
				from = b.class(from, ranges, inString)
			}
			return from
		case syntax.OpCharClass:
			return b.class(from, re.Rune, inString)
		case syntax.OpAnyCharNotNL:
			return b.class(from, []rune{0, '\n' - 1, '\n' + 1, utf8.MaxRune}, inString)
		case syntax.OpAnyChar:
			return b.class(from, []rune{0, utf8.MaxRune}, inString)
		case syntax.OpCapture:
			return walk(from, re.Sub[0])
		case syntax.OpStar:
			return b.star(from, func(s int32) int32 { return walk(s, re.Sub[0]) })
		case syntax.OpPlus:
			return b.repeat(from, 1, -1, func(s int32) int32 { return walk(s, re.Sub[0]) })
		case syntax.OpQuest:
			return b.opt(from, func(s int32) int32 { return walk(s, re.Sub[0]) })
		case syntax.OpRepeat:
			if re.Min > maxRepeat || re.Max > maxRepeat {
				err = fmt.Errorf("pattern %q: repeat counts above %d are not supported", re.String(), maxRepeat)
				return from
			}
			return b.repeat(from, re.Min, re.Max, func(s int32) int32 { return walk(s, re.Sub[0]) })
		case syntax.OpConcat:
			for _, sub := range re.Sub {
				from = walk(from, sub)
			}
			return from
		case syntax.OpAlternate:
			brs := make([]func(int32) int32, len(re.Sub))
			for i, sub := range re.Sub {
				brs[i] = func(s int32) int32 { return walk(s, sub) }
			}
			return b.alt(from, brs...)
		}
		err = fmt.Errorf("pattern %q: %v is not supported", re.String(), re.Op)
		return from
	}
	end := walk(from, re)
	return end, err
}

// class reads one character in ranges; inString writes it as JSON string
// content.
func (b *builder) class(from int32, ranges []rune, inString bool) int32 {
	if !inString {
		return b.runes(from, ranges)
	}
	var plain []rune
	quote, backslash := false, false
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := max(ranges[i], 0x20), ranges[i+1]
		for _, cut := range []rune{'"', '\\'} {
			if lo <= cut && cut <= hi {
				quote = quote || cut == '"'
				backslash = backslash || cut == '\\'
				if lo < cut {
					plain = append(plain, lo, cut-1)
				}
				lo = cut + 1
			}
		}
		if lo <= hi {
			plain = append(plain, lo, hi)
		}
	}
	brs := []func(int32) int32{func(s int32) int32 { return b.runes(s, plain) }}
	if quote {
		brs = append(brs, func(s int32) int32 { return b.lit(s, `\"`) })
	}
	if backslash {
		brs = append(brs, func(s int32) int32 { return b.lit(s, `\\`) })
	}
	if len(brs) == 1 {
		return brs[0](from)
	}
	return b.alt(from, brs...)
}

// anchored reports whether re can only match at the start (atStart) or end
// of the text, as a JSON schema pattern, which matches anywhere in the
// string unless anchored, needs to know.
func anchored(re *syntax.Regexp, atStart bool) bool {
	switch re.Op {
	case syntax.OpBeginText, syntax.OpBeginLine:
		return atStart
	case syntax.OpEndText, syntax.OpEndLine:
		return !atStart
	case syntax.OpCapture:
		return anchored(re.Sub[0], atStart)
	case syntax.OpConcat:
		if len(re.Sub) == 0 {
			return false
		}
		if atStart {
			return anchored(re.Sub[0], true)
		}
		return anchored(re.Sub[len(re.Sub)-1], false)
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !anchored(sub, atStart) {
				return false
			}
		}
		return true
	}
	return false
}
