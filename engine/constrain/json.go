// Package constrain restricts what a sample may generate to a language: at
// each step it says which tokens keep the output a prefix of a sentence of
// the language, and the sampler masks the others out before anything else
// (issue 16). The language is followed byte by byte by a small pushdown
// automaton, and the tokens allowed in a state are found by walking a trie of
// the vocabulary's bytes with it, so a state's mask costs the trie nodes the
// automaton accepts, not a scan of the vocabulary; masks are cached by state.
//
// JSONObject is the language of response_format {"type": "json_object"}:
// one JSON object, with at most a few bytes of whitespace between tokens.
package constrain

// maxDepth bounds how deeply objects and arrays nest; maxSpace how many
// whitespace bytes may follow one another (a model that only ever emits
// spaces would otherwise never close its object).
const (
	maxDepth = 32
	maxSpace = 4
)

// mode is what the automaton expects next.
type mode uint8

const (
	mStart        mode = iota // before the top-level object: whitespace or '{'
	mValue                    // a value
	mKeyOrClose               // after '{': a key or '}'
	mValueOrClose             // after '[': a value or ']'
	mKey                      // after ',' in an object: a key
	mColon                    // after a key
	mAfter                    // after a value: ',' or the container's close (at the top: nothing but whitespace)
	mString                   // inside a string
	mEscape                   // after a backslash in a string
	mHex                      // in a \u escape; n hex digits to go
	mUTF8                     // in a multi-byte character of a string; n continuation bytes to go
	mLiteral                  // in true, false or null; lit and n say which and how far
	mMinus                    // a number after '-': a digit
	mZero                     // a number's integer part "0": '.', 'e', or its end
	mInt                      // in a number's integer digits
	mDot                      // after '.': a digit
	mFrac                     // in the fraction's digits
	mExp                      // after 'e': a sign or a digit
	mExpSign                  // after the exponent's sign: a digit
	mExpDigits                // in the exponent's digits
)

var literals = [3]string{"true", "false", "null"}

// state is the automaton's whole state: a small comparable value, copied
// freely while the trie is walked and used as the mask cache's key.
type state struct {
	mode  mode
	key   bool  // the string being read is an object's key
	n     uint8 // mHex, mUTF8: bytes to go; mLiteral: bytes done
	lit   uint8 // mLiteral: index in literals
	space uint8 // whitespace bytes just read
	depth uint8
	stack [maxDepth]byte // '{' or '[' per open container
}

func isSpace(b byte) bool { return b == ' ' || b == '\n' || b == '\t' || b == '\r' }
func isDigit(b byte) bool { return b >= '0' && b <= '9' }
func isHex(b byte) bool   { return isDigit(b) || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' }

// done reports whether the bytes read make a whole sentence: the top-level
// object is closed.
func (s *state) done() bool { return s.mode == mAfter && s.depth == 0 }

// dist is the fewest bytes that make the bytes read a whole sentence: the
// rest of the current value, then a closing byte per open container.
func (s *state) dist() int32 {
	rest := int32(0)
	switch s.mode {
	case mStart:
		rest = 2 // {}
	case mValue, mMinus, mDot, mExp, mExpSign:
		rest = 1 // a digit
	case mKey:
		rest = 4 // "":0
	case mColon:
		rest = 2 // :0
	case mString, mEscape, mHex, mUTF8:
		rest = 1 // "
		if s.key {
			rest = 3 // ":0
		}
		switch s.mode {
		case mEscape:
			rest++
		case mHex, mUTF8:
			rest += int32(s.n)
		}
	case mLiteral:
		rest = int32(len(literals[s.lit]) - int(s.n))
	}
	return rest + int32(s.depth)
}

// valueEnded moves on once a value has been read whole.
func (s *state) valueEnded() { s.mode = mAfter }

// step reads b; false means no sentence continues with it (s is then
// unspecified).
func (s *state) step(b byte) bool {
	if !isSpace(b) {
		s.space = 0
	} else {
		switch s.mode {
		case mStart, mValue, mKeyOrClose, mValueOrClose, mKey, mColon, mAfter:
			if s.space >= maxSpace {
				return false
			}
			s.space++
			return true
		case mZero, mInt, mFrac, mExpDigits:
			if s.depth == 0 {
				return false
			}
			s.valueEnded()
			s.space = 1
			return true
		}
	}
	switch s.mode {
	case mStart:
		return b == '{' && s.open(b)
	case mValue:
		return s.value(b)
	case mKeyOrClose:
		if b == '}' {
			return s.close(b)
		}
		return s.keyStart(b)
	case mValueOrClose:
		if b == ']' {
			return s.close(b)
		}
		return s.value(b)
	case mKey:
		return s.keyStart(b)
	case mColon:
		if b != ':' {
			return false
		}
		s.mode = mValue
		return true
	case mAfter:
		return s.after(b)
	case mString:
		switch {
		case b == '"':
			if s.key {
				s.mode = mColon
			} else {
				s.valueEnded()
			}
		case b == '\\':
			s.mode = mEscape
		case b < 0x20:
			return false
		case b >= 0x80:
			return s.utf8Lead(b)
		}
		return true
	case mEscape:
		switch b {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.mode = mString
		case 'u':
			s.mode, s.n = mHex, 4
		default:
			return false
		}
		return true
	case mHex:
		if !isHex(b) {
			return false
		}
		if s.n--; s.n == 0 {
			s.mode = mString
		}
		return true
	case mUTF8:
		if b&0xC0 != 0x80 {
			return false
		}
		if s.n--; s.n == 0 {
			s.mode = mString
		}
		return true
	case mLiteral:
		lit := literals[s.lit]
		if b != lit[s.n] {
			return false
		}
		if s.n++; int(s.n) == len(lit) {
			s.valueEnded()
		}
		return true
	case mMinus:
		switch {
		case b == '0':
			s.mode = mZero
		case isDigit(b):
			s.mode = mInt
		default:
			return false
		}
		return true
	case mZero, mInt:
		switch {
		case isDigit(b) && s.mode == mInt:
		case b == '.':
			s.mode = mDot
		case b == 'e' || b == 'E':
			s.mode = mExp
		default:
			return s.numberEnded(b)
		}
		return true
	case mDot:
		if !isDigit(b) {
			return false
		}
		s.mode = mFrac
		return true
	case mFrac:
		switch {
		case isDigit(b):
		case b == 'e' || b == 'E':
			s.mode = mExp
		default:
			return s.numberEnded(b)
		}
		return true
	case mExp:
		switch {
		case b == '+' || b == '-':
			s.mode = mExpSign
		case isDigit(b):
			s.mode = mExpDigits
		default:
			return false
		}
		return true
	case mExpSign:
		if !isDigit(b) {
			return false
		}
		s.mode = mExpDigits
		return true
	case mExpDigits:
		if isDigit(b) {
			return true
		}
		return s.numberEnded(b)
	}
	return false
}

// numberEnded reads the byte after a number, which only a delimiter may be.
func (s *state) numberEnded(b byte) bool {
	if s.depth == 0 {
		return false
	}
	s.valueEnded()
	return s.after(b)
}

func (s *state) value(b byte) bool {
	switch {
	case b == '{' || b == '[':
		return s.open(b)
	case b == '"':
		s.mode, s.key = mString, false
	case b == '-':
		s.mode = mMinus
	case b == '0':
		s.mode = mZero
	case isDigit(b):
		s.mode = mInt
	case b == 't' || b == 'f' || b == 'n':
		s.mode, s.n = mLiteral, 1
		switch b {
		case 't':
			s.lit = 0
		case 'f':
			s.lit = 1
		default:
			s.lit = 2
		}
	default:
		return false
	}
	return true
}

func (s *state) keyStart(b byte) bool {
	if b != '"' {
		return false
	}
	s.mode, s.key = mString, true
	return true
}

func (s *state) open(b byte) bool {
	if int(s.depth) == maxDepth {
		return false
	}
	s.stack[s.depth] = b
	s.depth++
	if b == '{' {
		s.mode = mKeyOrClose
	} else {
		s.mode = mValueOrClose
	}
	return true
}

// close reads a container's closing byte.
func (s *state) close(b byte) bool {
	if s.depth == 0 || (b == '}') != (s.stack[s.depth-1] == '{') {
		return false
	}
	s.depth--
	s.stack[s.depth] = 0
	s.valueEnded()
	return true
}

func (s *state) after(b byte) bool {
	if s.depth == 0 {
		return false
	}
	switch b {
	case ',':
		if s.stack[s.depth-1] == '{' {
			s.mode = mKey
		} else {
			s.mode = mValue
		}
		return true
	case '}', ']':
		return s.close(b)
	}
	return false
}

// utf8Lead reads the first byte of a multi-byte character in a string.
// Overlong forms and surrogates are not told apart from the rest: the
// structure is enough to keep the output valid UTF-8 for JSON parsers.
func (s *state) utf8Lead(b byte) bool {
	switch {
	case b&0xE0 == 0xC0 && b >= 0xC2:
		s.n = 1
	case b&0xF0 == 0xE0:
		s.n = 2
	case b&0xF8 == 0xF0 && b <= 0xF4:
		s.n = 3
	default:
		return false
	}
	s.mode = mUTF8
	return true
}
