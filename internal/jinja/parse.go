package jinja

import (
	"fmt"
	"slices"
	"strings"
)

// Statements.
type (
	node any

	textNode struct{ s string }
	outNode  struct {
		p pos
		x expr
	}
	ifNode struct {
		p      pos
		conds  []expr
		bodies [][]node
		els    []node
	}
	forNode struct {
		p       pos
		targets []string
		iter    expr
		cond    expr // the loop's "if" filter, or nil
		body    []node
		els     []node
		// recursive: the body may call loop(items) to run itself over
		// items, one level deeper.
		recursive bool
	}
	// setNode is {% set a = x %}, {% set a, b = x %} or {% set ns.a = x %}
	// (attr set); with body, the block form.
	setNode struct {
		p       pos
		targets []string
		attr    string
		x       expr
		body    []node
		filters []*filterExpr
	}
	filterNode struct {
		p       pos
		filters []*filterExpr
		body    []node
	}
	macroNode struct {
		p pos
		m *macro
	}
	// callNode is {% call(params) f(args) %}body{% endcall %}: f runs with
	// caller() rendering body.
	callNode struct {
		p      pos
		call   *callExpr
		caller *macro
	}
	loopCtl struct {
		p   pos
		brk bool
	}
)

// macro is a macro's definition.
type macro struct {
	name     string
	params   []string
	defaults []expr // one a param, nil where there is none
	body     []node
}

// Expressions.
type (
	expr any

	lit      struct{ v Value }
	nameExpr struct {
		p    pos
		name string
	}
	attrExpr struct {
		p    pos
		x    expr
		name string
	}
	indexExpr struct {
		p      pos
		x, idx expr
	}
	sliceExpr struct {
		p               pos
		x, lo, hi, step expr
	}
	callExpr struct {
		p    pos
		fn   expr
		args []expr
		kw   []kwArg
	}
	kwArg struct {
		name string
		x    expr
	}
	filterExpr struct {
		p    pos
		x    expr
		name string
		f    filterFunc // nil when there is no such filter
		args []expr
		kw   []kwArg
	}
	testExpr struct {
		p    pos
		x    expr
		name string
		t    testFunc // nil when there is no such test
		args []expr
		neg  bool
	}
	unaryExpr struct {
		p  pos
		op string // "-", "+" or "not"
		x  expr
	}
	binExpr struct {
		p    pos
		op   string
		l, r expr
	}
	compareExpr struct {
		p     pos
		first expr
		ops   []string // ==, !=, <, <=, >, >=, in, notin
		rest  []expr
	}
	condExpr struct {
		p                 pos
		then, cond, other expr // other is nil for "a if c"
	}
	listExpr struct {
		p     pos
		items []expr
		tuple bool
	}
	dictExpr struct {
		p          pos
		keys, vals []expr
	}
)

type parser struct {
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errorf(t token, format string, args ...any) error {
	return &Error{Pos: t.pos.String(), Msg: fmt.Sprintf(format, args...)}
}

// fail aborts the parse; parseTemplate recovers it.
func (p *parser) fail(t token, format string, args ...any) {
	panic(p.errorf(t, format, args...))
}

func (p *parser) isOp(op string) bool {
	t := p.peek()
	return t.kind == tOp && t.s == op
}

func (p *parser) isName(name string) bool {
	t := p.peek()
	return t.kind == tName && t.s == name
}

func (p *parser) accept(op string) bool {
	if p.isOp(op) {
		p.i++
		return true
	}
	return false
}

func (p *parser) acceptName(name string) bool {
	if p.isName(name) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(op string) {
	if !p.accept(op) {
		p.fail(p.peek(), "expected %q, found %s", op, describe(p.peek()))
	}
}

func (p *parser) expectName(name string) {
	if !p.acceptName(name) {
		p.fail(p.peek(), "expected %q, found %s", name, describe(p.peek()))
	}
}

func (p *parser) ident() string {
	t := p.next()
	if t.kind != tName {
		p.fail(t, "expected a name, found %s", describe(t))
	}
	return t.s
}

func (p *parser) blockEnd() {
	if t := p.next(); t.kind != tBlockEnd {
		p.fail(t, "expected the end of the tag, found %s", describe(t))
	}
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "the end of the template"
	case tText:
		return "text"
	case tVarBegin:
		return `"{{"`
	case tVarEnd:
		return `"}}"`
	case tBlockBegin:
		return `"{%"`
	case tBlockEnd:
		return `"%}"`
	case tString:
		return "a string"
	}
	return fmt.Sprintf("%q", t.s)
}

// nest bounds the source's nesting, so that neither the parser nor the
// evaluator recurses deeper than maxNesting.
func (p *parser) nest() {
	p.depth++
	if p.depth > maxNesting {
		p.fail(p.peek(), "the template nests deeper than %d", maxNesting)
	}
}

func (p *parser) unnest() { p.depth-- }

func (p *parser) parseTemplate() (body []node, err error) {
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(*Error)
			if !ok {
				panic(r)
			}
			err = e
		}
	}()
	body, end := p.parseBody()
	if end != "" {
		p.fail(p.toks[p.i-1], "unexpected {%% %s %%}", end)
	}
	return body, nil
}

// parseBody parses nodes up to the end of the template or a tag that ends
// a block (endfor, else, ...), which it consumes the name of and returns.
func (p *parser) parseBody() ([]node, string) {
	p.nest()
	defer p.unnest()
	var body []node
	for {
		t := p.next()
		switch t.kind {
		case tEOF:
			return body, ""
		case tText:
			body = append(body, &textNode{t.s})
		case tVarBegin:
			x := p.parseTuple(true)
			if t := p.next(); t.kind != tVarEnd {
				p.fail(t, "expected \"}}\", found %s", describe(t))
			}
			body = append(body, &outNode{t.pos, x})
		case tBlockBegin:
			kw := p.peek()
			if kw.kind != tName {
				p.fail(kw, "expected a statement, found %s", describe(kw))
			}
			switch kw.s {
			case "endfor", "endif", "elif", "else", "endset", "endmacro", "endcall", "endfilter", "endgeneration":
				p.i++
				return body, kw.s
			}
			if n := p.parseStatement(); n != nil {
				body = append(body, n)
			}
		default:
			p.fail(t, "unexpected %s", describe(t))
		}
	}
}

// parseBlock parses a block's body, which must end in one of ends.
func (p *parser) parseBlock(start token, ends ...string) ([]node, string) {
	body, end := p.parseBody()
	for _, e := range ends {
		if end == e {
			return body, end
		}
	}
	if end == "" {
		p.fail(start, "{%% %s %%} is not closed", start.s)
	}
	p.fail(p.toks[p.i-1], "unexpected {%% %s %%} in {%% %s %%}", end, start.s)
	return nil, ""
}

func (p *parser) parseStatement() node {
	t := p.next()
	switch t.s {
	case "if":
		n := &ifNode{p: t.pos}
		for {
			n.conds = append(n.conds, p.parseExpr())
			p.blockEnd()
			body, end := p.parseBlock(t, "elif", "else", "endif")
			n.bodies = append(n.bodies, body)
			switch end {
			case "else":
				p.blockEnd()
				n.els, _ = p.parseBlock(t, "endif")
				p.blockEnd()
				return n
			case "endif":
				p.blockEnd()
				return n
			}
		}
	case "for":
		n := &forNode{p: t.pos}
		for {
			n.targets = append(n.targets, p.ident())
			if !p.accept(",") {
				break
			}
		}
		p.expectName("in")
		n.iter = p.parseTuple(false)
		if p.acceptName("if") {
			n.cond = p.parseExpr()
		}
		n.recursive = p.acceptName("recursive")
		p.blockEnd()
		var end string
		n.body, end = p.parseBlock(t, "else", "endfor")
		p.blockEnd()
		if end == "else" {
			n.els, _ = p.parseBlock(t, "endfor")
			p.blockEnd()
		}
		return n
	case "set":
		n := &setNode{p: t.pos}
		for {
			n.targets = append(n.targets, p.ident())
			if len(n.targets) == 1 && p.accept(".") {
				n.attr = p.ident()
				break
			}
			if !p.accept(",") {
				break
			}
		}
		if p.accept("=") {
			n.x = p.parseTuple(true)
			p.blockEnd()
			return n
		}
		if len(n.targets) > 1 || n.attr != "" {
			p.fail(p.peek(), "expected \"=\"")
		}
		for p.accept("|") {
			n.filters = append(n.filters, p.parseFilter(nil))
		}
		p.blockEnd()
		n.body, _ = p.parseBlock(t, "endset")
		p.blockEnd()
		return n
	case "macro":
		m := p.parseSignature(p.ident())
		p.blockEnd()
		m.body, _ = p.parseBlock(t, "endmacro")
		p.blockEnd()
		return &macroNode{t.pos, m}
	case "call":
		caller := &macro{name: "caller"}
		if p.isOp("(") {
			caller = p.parseSignature("caller")
		}
		x := p.parseExpr()
		c, ok := x.(*callExpr)
		if !ok {
			p.fail(t, "{%% call %%} wants a call")
		}
		p.blockEnd()
		caller.body, _ = p.parseBlock(t, "endcall")
		p.blockEnd()
		return &callNode{t.pos, c, caller}
	case "filter":
		// {% filter f %}body{% endfilter %}: body's text through f.
		n := &filterNode{p: t.pos}
		for {
			n.filters = append(n.filters, p.parseFilter(nil))
			if !p.accept("|") {
				break
			}
		}
		p.blockEnd()
		n.body, _ = p.parseBlock(t, "endfilter")
		p.blockEnd()
		return n
	case "break", "continue":
		p.blockEnd()
		return &loopCtl{t.pos, t.s == "break"}
	case "generation":
		// transformers' marker of the assistant's text: only its body
		// matters here.
		p.blockEnd()
		body, _ := p.parseBlock(t, "endgeneration")
		p.blockEnd()
		return &ifNode{p: t.pos, conds: []expr{&lit{true}}, bodies: [][]node{body}}
	}
	p.fail(t, "unknown statement %q", t.s)
	return nil
}

// parseSignature parses a macro's (a, b=default, ...).
func (p *parser) parseSignature(name string) *macro {
	m := &macro{name: name}
	p.expect("(")
	p.commaList(")", func() {
		m.params = append(m.params, p.ident())
		var def expr
		if p.accept("=") {
			def = p.parseExpr()
		}
		m.defaults = append(m.defaults, def)
	})
	return m
}

// parseTuple parses an expression, or a tuple of them without parentheses
// ("a, b"); cond false leaves "if" to a for loop's filter.
func (p *parser) parseTuple(cond bool) expr {
	t := p.peek()
	parse := p.parseExpr
	if !cond {
		parse = p.parseOr
	}
	x := parse()
	if !p.isOp(",") {
		return x
	}
	items := []expr{x}
	for p.accept(",") {
		if k := p.peek(); k.kind == tVarEnd || k.kind == tBlockEnd || k.kind == tName && k.s == "if" {
			break
		}
		items = append(items, parse())
	}
	return &listExpr{p: t.pos, items: items, tuple: true}
}

func (p *parser) parseExpr() expr {
	p.nest()
	defer p.unnest()
	t := p.peek()
	x := p.parseOr()
	for p.acceptName("if") {
		c := &condExpr{p: t.pos, then: x, cond: p.parseOr()}
		if p.acceptName("else") {
			c.other = p.parseExpr()
		}
		x = c
	}
	return x
}

// binary parses operands joined by any of ops, left to right.
func (p *parser) binary(operand func() expr, ops ...string) expr {
	x := operand()
	for {
		t := p.peek()
		if t.kind != tOp && t.kind != tName || !slices.Contains(ops, t.s) {
			return x
		}
		p.i++
		x = &binExpr{t.pos, t.s, x, operand()}
	}
}

func (p *parser) parseOr() expr  { return p.binary(p.parseAnd, "or") }
func (p *parser) parseAnd() expr { return p.binary(p.parseNot, "and") }

func (p *parser) parseNot() expr {
	if p.isName("not") {
		t := p.next()
		p.nest()
		defer p.unnest()
		return &unaryExpr{t.pos, "not", p.parseNot()}
	}
	return p.parseCompare()
}

func (p *parser) parseCompare() expr {
	t := p.peek()
	x := p.binary(p.parseConcat, "+", "-")
	c := &compareExpr{p: t.pos, first: x}
	for {
		k := p.peek()
		op := ""
		switch {
		case k.kind == tOp && (k.s == "==" || k.s == "!=" || k.s == "<" || k.s == "<=" || k.s == ">" || k.s == ">="):
			op = k.s
			p.i++
		case k.kind == tName && k.s == "in":
			op = "in"
			p.i++
		case k.kind == tName && k.s == "not" && p.toks[p.i+1].kind == tName && p.toks[p.i+1].s == "in":
			op = "notin"
			p.i += 2
		}
		if op == "" {
			break
		}
		c.ops = append(c.ops, op)
		c.rest = append(c.rest, p.binary(p.parseConcat, "+", "-"))
	}
	if len(c.ops) == 0 {
		return x
	}
	return c
}

// parseConcat parses ~, which binds tighter than + and -, as in Jinja.
func (p *parser) parseConcat() expr {
	return p.binary(func() expr {
		return p.binary(func() expr {
			return p.binary(func() expr { return p.parseUnary(true) }, "**")
		}, "*", "/", "//", "%")
	}, "~")
}

func (p *parser) parseUnary(filters bool) expr {
	var x expr
	if t := p.peek(); p.isOp("-") || p.isOp("+") {
		p.i++
		p.nest()
		x = &unaryExpr{t.pos, t.s, p.parseUnary(false)}
		p.unnest()
	} else {
		x = p.parsePrimary()
	}
	x = p.parsePostfix(x)
	if filters {
		x = p.parseFilters(x)
	}
	return x
}

func (p *parser) parsePrimary() expr {
	t := p.next()
	switch t.kind {
	case tName:
		switch t.s {
		case "true", "True":
			return &lit{true}
		case "false", "False":
			return &lit{false}
		case "none", "None":
			return &lit{nil}
		}
		return &nameExpr{t.pos, t.s}
	case tString:
		if p.peek().kind != tString {
			return &lit{t.s}
		}
		var b strings.Builder // adjacent literals join, as in Python
		b.WriteString(t.s)
		for p.peek().kind == tString {
			b.WriteString(p.next().s)
		}
		return &lit{b.String()}
	case tInt:
		return &lit{t.i}
	case tFloat:
		return &lit{t.f}
	case tOp:
		p.nest()
		defer p.unnest()
		switch t.s {
		case "(":
			if p.accept(")") {
				return &listExpr{p: t.pos, tuple: true}
			}
			x := p.parseExpr()
			if !p.isOp(",") {
				p.expect(")")
				return x
			}
			l := &listExpr{p: t.pos, items: []expr{x}, tuple: true}
			for p.accept(",") && !p.isOp(")") {
				l.items = append(l.items, p.parseExpr())
			}
			p.expect(")")
			return l
		case "[":
			l := &listExpr{p: t.pos}
			p.commaList("]", func() { l.items = append(l.items, p.parseExpr()) })
			return l
		case "{":
			d := &dictExpr{p: t.pos}
			p.commaList("}", func() {
				d.keys = append(d.keys, p.parseExpr())
				p.expect(":")
				d.vals = append(d.vals, p.parseExpr())
			})
			return d
		}
	}
	p.fail(t, "unexpected %s", describe(t))
	return nil
}

func (p *parser) parsePostfix(x expr) expr {
	for {
		t := p.peek()
		switch {
		case p.accept("."):
			k := p.next()
			switch k.kind {
			case tName:
				x = &attrExpr{t.pos, x, k.s}
			case tInt:
				x = &indexExpr{t.pos, x, &lit{k.i}}
			default:
				p.fail(k, "expected an attribute name, found %s", describe(k))
			}
		case p.accept("["):
			x = p.parseSubscript(t, x)
		case p.isOp("("):
			args, kw := p.parseArgs()
			x = &callExpr{t.pos, x, args, kw}
		default:
			return x
		}
		p.nest() // a long chain of postfixes is as deep as nesting
		defer p.unnest()
	}
}

func (p *parser) parseSubscript(t token, x expr) expr {
	var parts [3]expr
	n := 0
	for {
		if !p.isOp(":") && !p.isOp("]") {
			parts[n] = p.parseExpr()
		}
		if p.accept("]") {
			break
		}
		if n == 2 {
			p.expect("]")
		}
		p.expect(":")
		n++
	}
	if n == 0 {
		if parts[0] == nil {
			p.fail(t, "empty subscript")
		}
		return &indexExpr{t.pos, x, parts[0]}
	}
	return &sliceExpr{t.pos, x, parts[0], parts[1], parts[2]}
}

// commaList parses items separated by commas up to close, which it
// consumes; a trailing comma is allowed.
func (p *parser) commaList(close string, item func()) {
	for n := 0; !p.accept(close); n++ {
		if n > 0 {
			p.expect(",")
			if p.accept(close) {
				return
			}
		}
		item()
	}
}

// parseArgs parses "(a, b, k=v)".
func (p *parser) parseArgs() ([]expr, []kwArg) {
	p.expect("(")
	var args []expr
	var kw []kwArg
	p.commaList(")", func() {
		if k := p.peek(); k.kind == tName && p.toks[p.i+1].kind == tOp && p.toks[p.i+1].s == "=" {
			p.i += 2
			kw = append(kw, kwArg{k.s, p.parseExpr()})
			return
		}
		if len(kw) > 0 {
			p.fail(p.peek(), "a positional argument after a keyword one")
		}
		args = append(args, p.parseExpr())
	})
	return args, kw
}

// parseFilters parses "| f(args)" and "is [not] test args" after x.
func (p *parser) parseFilters(x expr) expr {
	for {
		switch {
		case p.accept("|"):
			x = p.parseFilter(x)
		case p.isName("is"):
			x = p.parseTest(x)
		default:
			return x
		}
		p.nest()
		defer p.unnest()
	}
}

func (p *parser) parseFilter(x expr) *filterExpr {
	t := p.peek()
	name := p.ident()
	// An unknown filter fails when it runs, as in Jinja, where templates
	// guard filters of other engines with conditions.
	fe := &filterExpr{p: t.pos, x: x, name: name, f: filters[name]}
	if p.isOp("(") {
		fe.args, fe.kw = p.parseArgs()
	}
	return fe
}

func (p *parser) parseTest(x expr) expr {
	p.expectName("is")
	te := &testExpr{p: p.peek().pos, x: x, neg: p.acceptName("not")}
	t := p.next()
	switch {
	case t.kind == tName:
		te.name = t.s
	case t.kind == tOp && (t.s == "==" || t.s == "!=" || t.s == "<" || t.s == "<=" || t.s == ">" || t.s == ">="):
		te.name = t.s
	default:
		p.fail(t, "expected a test name, found %s", describe(t))
	}
	te.t = tests[te.name]
	k := p.peek()
	switch {
	case p.isOp("("):
		var kw []kwArg
		te.args, kw = p.parseArgs()
		if len(kw) > 0 {
			p.fail(k, "tests take no keyword arguments")
		}
	case k.kind == tString || k.kind == tInt || k.kind == tFloat ||
		k.kind == tName && k.s != "and" && k.s != "or" && k.s != "else" && k.s != "if" && k.s != "in" && k.s != "not" && k.s != "is":
		te.args = []expr{p.parsePostfix(p.parsePrimary())}
	}
	return te
}
