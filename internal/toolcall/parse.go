package toolcall

import (
	"encoding/json"
	"strings"
)

// Kind is what an Event carries.
type Kind int

const (
	// Content: Text is a piece of the turn's text.
	Content Kind = iota
	// CallStart: call Index begins, with ID and Name.
	CallStart
	// CallArgs: Text is a piece of call Index's arguments; a call's pieces
	// together are its arguments, a JSON object's text.
	CallArgs
)

// Event is a piece of a parsed turn.
type Event struct {
	Kind     Kind
	Text     string
	Index    int
	ID, Name string
}

const (
	opener    = "<tool_call>"
	closer    = "</tool_call>"
	pythonTag = "<|python_tag|>"
	spaces    = " \t\r\n"
)

type state int

const (
	sText   state = iota // Hermes: text, where a call may open
	sOpen                // before a call's object: Hermes after its opener, Llama3 at the turn's start or after a call
	sObject              // in a call's object
	sClose               // Hermes: after a call's object, where its closer may follow
	sPlain               // Llama3: the rest of the turn is text
)

// Parser reads one turn of a model's output, fed as it is generated.
//
// A call is released whole once its JSON object is complete and holds a
// name and an arguments object: until then it may still turn out
// malformed, and then its text is content, as written. Text that may be the
// start of a marker is held until it is known, and so is whitespace at the
// end of the text so far: whitespace next to a call is dropped.
type Parser struct {
	f     Format
	id    func() string
	state state
	buf   string // input not yet decided
	raw   []byte // the text of the call being read, for its release as text
	obj   int    // where the call's object starts in raw
	named bool   // Llama3: the object's first key is known to be "name"
	scan  scanner
	calls int
	ws    string // whitespace at the end of the content so far
	trim  bool   // drop the whitespace that starts the content to come
	out   []Event
}

// NewParser returns a parser of a turn written in f. Calls get ids from id
// (IDs(nil) when nil).
func (f Format) NewParser(id func() string) *Parser {
	if id == nil {
		id = IDs(nil)
	}
	p := &Parser{f: f, id: id}
	if f == Llama3 {
		p.state = sOpen // a call starts the turn or there is none
	}
	return p
}

// Feed takes the next piece of the turn and returns what it decides.
func (p *Parser) Feed(delta string) []Event {
	p.buf += delta
	for p.step() {
	}
	return p.flush()
}

// Finish ends the turn: what is held is decided, an unfinished call
// becomes content. The parser takes no more input.
func (p *Parser) Finish() []Event {
	switch p.state {
	case sText, sPlain, sObject:
		p.content(string(p.raw) + p.buf)
	case sOpen:
		// At the start of a Llama 3 turn, whitespace or an unfinished tag;
		// after a call, only the separator, which is dropped.
		if p.f == Hermes || p.calls == 0 {
			p.content(string(p.raw) + p.buf)
		}
	}
	p.raw, p.buf = nil, ""
	// Whitespace that ends a turn of plain text is kept.
	if p.calls == 0 && p.ws != "" {
		p.emit(Event{Kind: Content, Text: p.ws})
	}
	p.ws = ""
	return p.flush()
}

func (p *Parser) flush() []Event {
	out := p.out
	p.out = nil
	return out
}

func (p *Parser) emit(e Event) {
	if n := len(p.out); e.Kind == Content && n > 0 && p.out[n-1].Kind == Content {
		p.out[n-1].Text += e.Text
		return
	}
	p.out = append(p.out, e)
}

// content adds s to the turn's text, holding its trailing whitespace.
func (p *Parser) content(s string) {
	if p.trim {
		s = strings.TrimLeft(s, spaces)
		if s == "" {
			return
		}
		p.trim = false
	}
	body := strings.TrimRight(s, spaces)
	if body == "" {
		p.ws += s
		return
	}
	p.emit(Event{Kind: Content, Text: p.ws + body})
	p.ws = s[len(body):]
}

// step decides what it can of buf and reports whether it made progress.
func (p *Parser) step() bool {
	switch p.state {
	case sText:
		if i := strings.Index(p.buf, opener); i >= 0 {
			p.content(p.buf[:i])
			p.raw = append(p.raw[:0], opener...)
			p.buf = p.buf[i+len(opener):]
			p.state = sOpen
			return true
		}
		k := len(p.buf) - heldSuffix(p.buf, opener)
		p.content(p.buf[:k])
		p.buf = p.buf[k:]
		return false
	case sPlain:
		p.content(p.buf)
		p.buf = ""
		return false
	case sOpen:
		if p.f == Llama3 {
			return p.llamaOpen()
		}
		i := len(p.buf) - len(strings.TrimLeft(p.buf, spaces))
		p.raw = append(p.raw, p.buf[:i]...)
		p.buf = p.buf[i:]
		switch {
		case p.buf == "":
			return false
		case p.buf[0] == '{':
			p.startObject()
		default:
			p.fail()
		}
		return true
	case sObject:
		n, st := p.scan.run(p.buf)
		p.raw = append(p.raw, p.buf[:n]...)
		p.buf = p.buf[n:]
		if p.f == Llama3 && !p.mayBeCall() {
			p.fail()
			return true
		}
		switch st {
		case scanMore:
			return false
		case scanBad:
			p.fail()
		case scanDone:
			p.finishObject()
		}
		return true
	case sClose:
		p.buf = strings.TrimLeft(p.buf, spaces)
		switch {
		case p.buf == "" || strings.HasPrefix(closer, p.buf) && len(p.buf) < len(closer):
			return false
		case strings.HasPrefix(p.buf, closer):
			p.buf = p.buf[len(closer):]
		}
		// Without its closer the call stands: the object was whole.
		p.state = sText
		return true
	}
	return false
}

// llamaOpen looks for a call's object where a Llama 3 turn may have one:
// at its start after an optional <|python_tag|>, or after a call and an
// optional ";". Anything else makes the rest of the turn text.
func (p *Parser) llamaOpen() bool {
	s := p.buf
	i := len(s) - len(strings.TrimLeft(s, spaces))
	if p.calls > 0 {
		if i < len(s) && s[i] == ';' {
			i++
			i = len(s) - len(strings.TrimLeft(s[i:], spaces))
		}
	} else if rest := s[i:]; strings.HasPrefix(rest, pythonTag) {
		i += len(pythonTag)
		i = len(s) - len(strings.TrimLeft(s[i:], spaces))
	} else if strings.HasPrefix(pythonTag, rest) {
		return false
	}
	switch {
	case i == len(s):
		return false
	case s[i] == '{':
		p.raw = append(p.raw[:0], s[:i]...)
		p.buf = s[i:]
		p.startObject()
	default:
		p.state = sPlain
	}
	return true
}

func (p *Parser) startObject() {
	p.obj = len(p.raw)
	p.named = false
	p.scan = scanner{}
	p.state = sObject
}

// mayBeCall reports whether the Llama 3 object read so far may still be a
// call: one whose first key is "name".
func (p *Parser) mayBeCall() bool {
	const key = `"name"`
	if p.named {
		return true
	}
	t := strings.TrimLeft(string(p.raw[p.obj+1:]), spaces)
	if len(t) >= len(key) {
		p.named = t[:len(key)] == key
		return p.named
	}
	return strings.HasPrefix(key, t)
}

// fail releases the call being read as text; what follows it is read as
// text too (Hermes calls may open again in it, Llama 3 ones may not).
func (p *Parser) fail() {
	p.content(string(p.raw))
	p.raw = p.raw[:0]
	p.state = sText
	if p.f == Llama3 {
		p.state = sPlain
	}
}

func (p *Parser) finishObject() {
	name, args, ok := decodeCall(p.raw[p.obj:])
	if !ok {
		p.fail()
		return
	}
	p.ws = "" // whitespace before a call is dropped
	p.emit(Event{Kind: CallStart, Index: p.calls, ID: p.id(), Name: name})
	p.emit(Event{Kind: CallArgs, Index: p.calls, Text: args})
	p.calls++
	p.trim = true
	p.raw = p.raw[:0]
	p.state = sClose
	if p.f == Llama3 {
		p.state = sOpen
	}
}

// decodeCall reads a call's object: its name, and its arguments as an
// object's text. Either arguments key is taken in either format, missing
// arguments are none, and arguments written as a string holding an object
// are that object.
func decodeCall(obj []byte) (name, args string, ok bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil || json.Unmarshal(m["name"], &name) != nil || name == "" {
		return "", "", false
	}
	a, found := m["arguments"]
	if !found {
		a, found = m["parameters"]
	}
	switch {
	case !found || string(a) == "null":
		return name, "{}", true
	case a[0] == '{':
		return name, string(a), true
	case a[0] == '"':
		var s string
		if json.Unmarshal(a, &s) == nil && strings.HasPrefix(strings.TrimLeft(s, spaces), "{") && json.Valid([]byte(s)) {
			return name, s, true
		}
	}
	return "", "", false
}

// heldSuffix is the length of the longest end of s that is a start of
// marker, short of the whole marker.
func heldSuffix(s, marker string) int {
	for k := min(len(s), len(marker)-1); k > 0; k-- {
		if strings.HasSuffix(s, marker[:k]) {
			return k
		}
	}
	return 0
}

type scanStatus int

const (
	scanMore scanStatus = iota // the object goes on
	scanDone                   // the object closed
	scanBad                    // a byte that no JSON has there
)

// scanner finds where a JSON object ends, byte by byte across pieces of
// input, by its brackets outside strings. It checks only what it needs to
// stop early; the whole object is checked once it closes.
type scanner struct {
	depth     int
	str, escd bool
}

// jsonBytes are the bytes JSON has outside strings, other than brackets
// and quotes.
const jsonBytes = " \t\r\n,:-+.0123456789eEtrufalsn"

// run reads s, from just after what it read before, and returns how much
// of s it read: all of it, or up to the end of the object, or up to a bad
// byte.
func (sc *scanner) run(s string) (int, scanStatus) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if sc.str {
			switch {
			case sc.escd:
				sc.escd = false
			case c == '\\':
				sc.escd = true
			case c == '"':
				sc.str = false
			}
			continue
		}
		switch c {
		case '"':
			sc.str = true
		case '{', '[':
			sc.depth++
		case '}', ']':
			sc.depth--
			if sc.depth == 0 {
				return i + 1, scanDone
			}
		default:
			if strings.IndexByte(jsonBytes, c) < 0 {
				return i, scanBad
			}
		}
	}
	return len(s), scanMore
}

// Parse parses a whole turn written in f into its content and calls, with
// ids from id (IDs(nil) when nil).
func (f Format) Parse(text string, id func() string) (content string, calls []Call) {
	p := f.NewParser(id)
	var b strings.Builder
	for _, e := range append(p.Feed(text), p.Finish()...) {
		switch e.Kind {
		case Content:
			b.WriteString(e.Text)
		case CallStart:
			calls = append(calls, Call{ID: e.ID, Name: e.Name})
		case CallArgs:
			calls[e.Index].Arguments += e.Text
		}
	}
	return b.String(), calls
}
