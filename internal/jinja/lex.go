package jinja

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tokKind is what a token is.
type tokKind uint8

const (
	tEOF        tokKind = iota
	tText               // template text between tags
	tVarBegin           // {{
	tVarEnd             // }}
	tBlockBegin         // {%
	tBlockEnd           // %}
	tName
	tString
	tInt
	tFloat
	tOp // punctuation and operators
)

// token is a lexed token; s holds the text, the name, the operator or the
// decoded string literal.
type token struct {
	kind tokKind
	s    string
	i    int
	f    float64
	pos  pos
}

// pos is a line:column position in the template source.
type pos struct{ line, col int }

func (p pos) String() string { return fmt.Sprintf("%d:%d", p.line, p.col) }

// lexer splits a template into tokens, applying the whitespace rules of
// Hugging Face's environment (trim_blocks and lstrip_blocks on,
// keep_trailing_newline off) and of the - and + tag modifiers.
type lexer struct {
	src  string
	off  int
	toks []token
	// lineStart: the last tag ended with a newline, so text up to the next
	// tag starts a line (lstrip_blocks strips it even without a newline).
	lineStart bool
	// trimNext: the last tag ended with -, so the text after it loses its
	// leading whitespace.
	trimNext bool
	// at, line and bol (the offset line starts at) are posAt's cursor.
	at, line, bol int
}

// normalizeSource turns \r\n and \r into \n and drops one trailing newline,
// as Jinja does.
func normalizeSource(src string) string {
	if strings.IndexByte(src, '\r') >= 0 {
		src = strings.ReplaceAll(src, "\r\n", "\n")
		src = strings.ReplaceAll(src, "\r", "\n")
	}
	return strings.TrimSuffix(src, "\n")
}

func lex(src string) ([]token, error) {
	l := &lexer{src: normalizeSource(src), lineStart: true, line: 1}
	if err := l.run(); err != nil {
		return nil, err
	}
	l.toks = append(l.toks, token{kind: tEOF, pos: l.posAt(len(l.src))})
	return l.toks, nil
}

// posAt is the position of off; tokens come in order, so it counts lines
// on from the last call rather than from the start.
func (l *lexer) posAt(off int) pos {
	if off < l.at {
		l.at, l.line, l.bol = 0, 1, 0
	}
	for i := l.at; i < off; i++ {
		if l.src[i] == '\n' {
			l.line++
			l.bol = i + 1
		}
	}
	l.at = off
	return pos{l.line, off - l.bol + 1}
}

func (l *lexer) errorf(off int, format string, args ...any) error {
	return &Error{Pos: l.posAt(off).String(), Msg: fmt.Sprintf(format, args...)}
}

const spaces = " \t\n\r\f\v"

func (l *lexer) run() error {
	for l.off < len(l.src) {
		rest := l.src[l.off:]
		i := nextTag(rest)
		if i < 0 {
			l.text(rest, l.off)
			return nil
		}
		text, start := rest[:i], l.off+i
		kind := l.src[start+1]
		mod := byte(0)
		if start+2 < len(l.src) {
			mod = l.src[start+2]
		}
		switch {
		case mod == '-':
			text = strings.TrimRight(text, spaces)
		case mod != '+' && kind != '{':
			// lstrip_blocks: blanks alone before a block or comment tag on
			// its line go.
			lp := strings.LastIndexByte(text, '\n') + 1
			if (lp > 0 || l.lineStart) && strings.Trim(text[lp:], " \t\f\v") == "" {
				text = text[:lp]
			}
		}
		l.text(text, l.off)
		l.off = start + 2
		if mod == '-' || mod == '+' {
			l.off++
		}
		var err error
		switch kind {
		case '#':
			err = l.comment(start)
		case '%':
			if l.raw(start) {
				continue
			}
			l.emit(tBlockBegin, "", start)
			err = l.tagBody('%', start)
		default:
			l.emit(tVarBegin, "", start)
			err = l.tagBody('}', start)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// nextTag is the offset of the next {{, {% or {#, or -1.
func nextTag(s string) int {
	for i := 0; ; {
		j := strings.IndexByte(s[i:], '{')
		if j < 0 || i+j+1 >= len(s) {
			return -1
		}
		i += j
		if c := s[i+1]; c == '{' || c == '%' || c == '#' {
			return i
		}
		i++
	}
}

func (l *lexer) text(s string, off int) {
	if l.trimNext {
		s = strings.TrimLeft(s, spaces)
		l.trimNext = false
	}
	if s != "" {
		l.emit(tText, s, off)
	}
}

func (l *lexer) emit(k tokKind, s string, off int) {
	l.toks = append(l.toks, token{kind: k, s: s, pos: l.posAt(off)})
}

// closeTag consumes a tag's end at l.off: "-" strips what follows, and a
// block or comment end without "+" eats one newline (trim_blocks).
func (l *lexer) closeTag(end string, block bool) {
	minus := strings.HasPrefix(l.src[l.off:], "-")
	plus := strings.HasPrefix(l.src[l.off:], "+")
	if minus || plus {
		l.off++
	}
	l.off += len(end)
	l.lineStart = false
	switch {
	case minus:
		l.trimNext = true
		trimmed := strings.TrimLeft(l.src[l.off:], spaces)
		l.lineStart = strings.HasSuffix(l.src[l.off:len(l.src)-len(trimmed)], "\n")
	case block && !plus && strings.HasPrefix(l.src[l.off:], "\n"):
		l.off++
		l.lineStart = true
	}
}

func (l *lexer) comment(start int) error {
	i := strings.Index(l.src[l.off:], "#}")
	if i < 0 {
		return l.errorf(start, "unclosed comment")
	}
	l.off += i
	if c := l.src[l.off-1]; l.off-1 > start+1 && (c == '-' || c == '+') {
		l.off--
	}
	l.closeTag("#}", true)
	return nil
}

// raw handles {% raw %}...{% endraw %}: the text between is output as is.
func (l *lexer) raw(start int) bool {
	inner := strings.TrimLeft(l.src[l.off:], " \t\n")
	if !strings.HasPrefix(inner, "raw") {
		return false
	}
	after := strings.TrimLeft(inner[3:], " \t\n")
	if !strings.HasPrefix(after, "%}") && !strings.HasPrefix(after, "-%}") && !strings.HasPrefix(after, "+%}") {
		return false
	}
	l.off = len(l.src) - len(after)
	l.closeTag("%}", true)
	body := l.off
	for {
		i := strings.Index(l.src[l.off:], "{%")
		if i < 0 {
			l.off = len(l.src)
			l.emit(tText, l.src[body:], body) // reported as unclosed by the parser
			return true
		}
		tag := l.off + i
		l.off = tag + 2
		if l.off < len(l.src) && (l.src[l.off] == '-' || l.src[l.off] == '+') {
			l.off++
		}
		in := strings.TrimLeft(l.src[l.off:], " \t\n")
		if !strings.HasPrefix(in, "endraw") {
			continue
		}
		e := strings.TrimLeft(in[6:], " \t\n")
		if !strings.HasPrefix(e, "%}") && !strings.HasPrefix(e, "-%}") && !strings.HasPrefix(e, "+%}") {
			continue
		}
		text := l.src[body:tag]
		if l.src[tag+2] == '-' {
			text = strings.TrimRight(text, spaces)
		}
		l.text(text, body)
		l.off = len(l.src) - len(e)
		l.closeTag("%}", true)
		return true
	}
}

// ops are the operators, longest first.
var ops = []string{"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "="}

// tagBody lexes the expression tokens of a tag up to its end: "}}" when
// end is '}', "%}" when it is '%'.
func (l *lexer) tagBody(end byte, start int) error {
	endTok, endKind := "}}", tVarEnd
	if end == '%' {
		endTok, endKind = "%}", tBlockEnd
	}
	depth := 0 // open brackets: "}}" inside a dict literal is two braces
	for {
		for l.off < len(l.src) && strings.IndexByte(spaces, l.src[l.off]) >= 0 {
			l.off++
		}
		if l.off >= len(l.src) {
			return l.errorf(start, "unclosed tag")
		}
		rest := l.src[l.off:]
		if depth <= 0 && (strings.HasPrefix(rest, endTok) || (len(rest) > 2 && (rest[0] == '-' || rest[0] == '+') && strings.HasPrefix(rest[1:], endTok))) {
			l.emit(endKind, "", l.off)
			l.closeTag(endTok, end == '%')
			return nil
		}
		c := rest[0]
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			n := 1
			for n < len(rest) && isNameByte(rest[n]) {
				n++
			}
			l.emit(tName, rest[:n], l.off)
			l.off += n
		case c >= '0' && c <= '9':
			if err := l.number(); err != nil {
				return err
			}
		case c == '\'' || c == '"':
			if err := l.str(c); err != nil {
				return err
			}
		default:
			op := ""
			for _, o := range ops {
				if strings.HasPrefix(rest, o) {
					op = o
					break
				}
			}
			if op == "" {
				r, _ := utf8.DecodeRuneInString(rest)
				return l.errorf(l.off, "unexpected character %q", r)
			}
			switch op {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				depth--
			}
			l.emit(tOp, op, l.off)
			l.off += len(op)
		}
	}
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (l *lexer) number() error {
	rest, n, float := l.src[l.off:], 0, false
	digits := func() {
		for n < len(rest) && (rest[n] >= '0' && rest[n] <= '9' || rest[n] == '_' && n+1 < len(rest) && rest[n+1] >= '0' && rest[n+1] <= '9') {
			n++
		}
	}
	digits()
	if n+1 < len(rest) && rest[n] == '.' && rest[n+1] >= '0' && rest[n+1] <= '9' {
		float = true
		n++
		digits()
	}
	if n < len(rest) && (rest[n] == 'e' || rest[n] == 'E') {
		m := n + 1
		if m < len(rest) && (rest[m] == '+' || rest[m] == '-') {
			m++
		}
		if m < len(rest) && rest[m] >= '0' && rest[m] <= '9' {
			float = true
			n = m
			digits()
		}
	}
	text := strings.ReplaceAll(rest[:n], "_", "")
	t := token{pos: l.posAt(l.off), s: rest[:n]}
	if float {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return l.errorf(l.off, "bad number %q", rest[:n])
		}
		t.kind, t.f = tFloat, f
	} else {
		i, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return l.errorf(l.off, "integer %s out of range", rest[:n])
		}
		t.kind, t.i = tInt, int(i)
	}
	l.toks = append(l.toks, t)
	l.off += n
	return nil
}

// str lexes a string literal with Python's escapes; an unknown escape keeps
// its backslash, as in Python.
func (l *lexer) str(q byte) error {
	start := l.off
	var b strings.Builder
	i := l.off + 1
	for {
		if i >= len(l.src) {
			return l.errorf(start, "unclosed string")
		}
		c := l.src[i]
		if c == q {
			break
		}
		if c != '\\' || i+1 >= len(l.src) {
			b.WriteByte(c)
			i++
			continue
		}
		e := l.src[i+1]
		i += 2
		switch e {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\', '\'', '"':
			b.WriteByte(e)
		case '\n':
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			n, j := int(e-'0'), 1
			for ; j < 3 && i < len(l.src) && l.src[i] >= '0' && l.src[i] <= '7'; j++ {
				n = n*8 + int(l.src[i]-'0')
				i++
			}
			b.WriteRune(rune(n))
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if i+n > len(l.src) {
				return l.errorf(i-2, "truncated \\%c escape", e)
			}
			v, err := strconv.ParseUint(l.src[i:i+n], 16, 32)
			if err != nil || v > utf8.MaxRune {
				return l.errorf(i-2, "bad \\%c escape", e)
			}
			b.WriteRune(rune(v))
			i += n
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	l.emit(tString, b.String(), start)
	l.off = i + 1
	return nil
}
