package jinja

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// scope is a frame of variables: the render's, a loop iteration's or a
// macro call's.
type scope struct {
	vars   map[string]Value
	parent *scope
}

func (s *scope) lookup(name string) (Value, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

func (s *scope) set(name string, v Value) {
	if s.vars == nil {
		s.vars = map[string]Value{}
	}
	s.vars[name] = v
}

// evaluator runs one render. Errors, its own and the template's, are
// panics of *Error or *LimitError that render recovers: every evaluation
// step may fail, and unwinding through each would double the code.
type evaluator struct {
	lim   Limits
	now   func() time.Time
	steps int
	bytes int // of the values built
	depth int // of macro calls
	nest  int // of the values a walk (repr, tojson, ==, <) is in
	out   strWriter
	pos   pos // of the statement or expression being evaluated
}

func (e *evaluator) render(body []node, vars map[string]any) (out string, err error) {
	e.out.e = e
	defer func() {
		if r := recover(); r != nil {
			switch r := r.(type) {
			case *Error:
				err = r
			case *LimitError:
				err = r
			default:
				panic(r)
			}
		}
	}()
	// Converted under the recover: a json.RawMessage is decoded within
	// the render's bounds.
	root := &scope{vars: make(map[string]Value, len(vars))}
	for k, v := range vars {
		c, err := e.fromGo(v)
		if err != nil {
			return "", err
		}
		root.vars[k] = c
	}
	if c := e.exec(body, root); c != ctlNone {
		e.fail("break or continue outside a loop")
	}
	return string(e.out.b), nil
}

func (e *evaluator) fail(format string, args ...any) {
	panic(&Error{Pos: e.pos.String(), Msg: fmt.Sprintf(format, args...)})
}

func (e *evaluator) limit(what string, n int) {
	panic(&LimitError{What: what, Limit: n, Pos: e.pos.String()})
}

func (e *evaluator) step() {
	e.steps++
	if e.steps > e.lim.Steps {
		e.limit("steps", e.lim.Steps)
	}
}

// enter steps into a value nested in the one a walk is at; leave steps
// out. Walks are bounded in depth, as the Go stack is not.
func (e *evaluator) enter() {
	e.step()
	e.nest++
	if e.nest > maxValueDepth {
		e.limit("nested values", maxValueDepth)
	}
}

func (e *evaluator) leave() { e.nest-- }

// scan counts a pass over n bytes as steps, one a 64 bytes, so that
// passes over long strings are bounded in time as the steps are.
func (e *evaluator) scan(n int) {
	e.steps += n >> 6
	e.step()
}

// charge counts n bytes of values built against the render's bound.
func (e *evaluator) charge(n int) {
	e.bytes += n
	if n < 0 || e.bytes > allocFactor*e.lim.OutputBytes {
		e.limit("bytes of values", allocFactor*e.lim.OutputBytes)
	}
}

// newStr starts a string within the render's bounds.
func (e *evaluator) newStr() *strWriter { return &strWriter{e: e} }

// chargeStr charges a string of n bytes, which may be no longer than the
// output.
func (e *evaluator) chargeStr(n int) {
	if n > e.lim.OutputBytes {
		e.limit("output bytes", e.lim.OutputBytes)
	}
	e.charge(n)
}

// concat returns a+b within bounds.
func (e *evaluator) concat(a, b string) string {
	e.chargeStr(len(a) + len(b))
	return a + b
}

// str is str(v).
func (e *evaluator) str(v Value) string {
	switch v := v.(type) {
	case string:
		return v
	case *list, *dict:
		w := e.newStr()
		w.writeRepr(v)
		return w.done()
	}
	return scalarStr(v)
}

// newList returns a list of n items, charged to the value bytes.
func (e *evaluator) newList(n int) *list {
	if n > allocFactor*e.lim.OutputBytes/16 {
		e.limit("bytes of values", allocFactor*e.lim.OutputBytes)
	}
	e.charge(16 * n)
	return &list{items: make([]Value, 0, n)}
}

type ctl uint8

const (
	ctlNone ctl = iota
	ctlBreak
	ctlContinue
)

func (e *evaluator) exec(body []node, sc *scope) ctl {
	for _, n := range body {
		e.step()
		switch n := n.(type) {
		case *textNode:
			e.out.str(n.s)
		case *outNode:
			e.pos = n.p
			e.out.writeStr(e.eval(n.x, sc))
		case *ifNode:
			e.pos = n.p
			body := n.els
			for i, c := range n.conds {
				if truth(e.eval(c, sc)) {
					body = n.bodies[i]
					break
				}
			}
			if c := e.exec(body, sc); c != ctlNone {
				return c
			}
		case *forNode:
			e.pos = n.p
			e.forLoop(n, sc)
		case *setNode:
			e.pos = n.p
			e.set(n, sc)
		case *filterNode:
			e.pos = n.p
			var v Value = e.capture(n.body, sc)
			for _, f := range n.filters {
				v = e.filter(f, v, sc)
			}
			e.out.writeStr(v)
		case *macroNode:
			sc.set(n.m.name, &macroVal{m: n.m, scope: sc})
		case *callNode:
			e.pos = n.p
			caller := &macroVal{m: n.caller, scope: sc}
			e.out.writeStr(e.call(n.call, sc, caller))
		case *loopCtl:
			if n.brk {
				return ctlBreak
			}
			return ctlContinue
		}
	}
	return ctlNone
}

func (e *evaluator) set(n *setNode, sc *scope) {
	var v Value
	if n.body != nil || n.x == nil {
		v = e.capture(n.body, sc)
		for _, f := range n.filters {
			v = e.filter(f, v, sc)
		}
	} else {
		v = e.eval(n.x, sc)
	}
	switch {
	case n.attr != "":
		ns, ok := sc.lookup(n.targets[0])
		d, isDict := ns.(*dict)
		if !ok || !isDict || !d.ns {
			e.fail("cannot assign attribute on non-namespace object")
		}
		d.set(n.attr, v)
	case len(n.targets) == 1:
		sc.set(n.targets[0], v)
	default:
		items := e.unpack(v, len(n.targets))
		for i, t := range n.targets {
			sc.set(t, items[i])
		}
	}
}

// capture renders body to a string, as a block set or a macro does.
func (e *evaluator) capture(body []node, sc *scope) string {
	return e.captureRun(func() ctl { return e.exec(body, sc) })
}

// captureRun returns what run writes.
func (e *evaluator) captureRun(run func() ctl) string {
	saved := e.out
	e.out = strWriter{e: e}
	c := run()
	s := e.out.done()
	e.out = saved
	if c != ctlNone {
		e.fail("break or continue outside a loop")
	}
	return s
}

// unpack splits v into n values for "for a, b in" and "set a, b =".
func (e *evaluator) unpack(v Value, n int) []Value {
	var items []Value
	switch v := v.(type) {
	case *list:
		items = v.items
	case string:
		if e.runeLen(v) != n {
			e.fail("expected %d values to unpack, got %d", n, e.runeLen(v))
		}
		for _, r := range v {
			items = append(items, string(r))
		}
	default:
		e.fail("cannot unpack a %s", typeName(v))
	}
	if len(items) != n {
		e.fail("expected %d values to unpack, got %d", n, len(items))
	}
	return items
}

// seq is what a for loop iterates: items by index, computed lazily for a
// range.
type seq struct {
	n    int
	at   func(int) Value
	list []Value
}

func (e *evaluator) iterate(v Value) seq {
	switch v := v.(type) {
	case *list:
		return seq{n: len(v.items), list: v.items}
	case *dict:
		return seq{n: len(v.keys), list: v.keys}
	case rangeVal:
		return seq{n: v.len(), at: func(i int) Value { return v.start + i*v.step }}
	case string:
		l := e.newList(utf8.RuneCountInString(v))
		for _, r := range v {
			l.items = append(l.items, string(r))
		}
		return seq{n: len(l.items), list: l.items}
	case undefined:
		return seq{}
	case *loopVal:
		e.fail("cannot iterate over the loop variable")
	}
	e.fail("'%s' object is not iterable", typeName(v))
	return seq{}
}

func (s seq) item(i int) Value {
	if s.at != nil {
		return s.at(i)
	}
	return s.list[i]
}

// loopVal is a for loop's "loop" variable.
type loopVal struct {
	s     seq
	i     int
	depth int
	n     *forNode // for loop(items) in a recursive loop
	sc    *scope
}

func (e *evaluator) forLoop(n *forNode, sc *scope) {
	e.runLoop(n, sc, e.eval(n.iter, sc), 1)
}

// recurse is loop(items) in a recursive loop: the loop's text over items,
// one level deeper.
func (e *evaluator) recurse(l *loopVal, args []Value) Value {
	if !l.n.recursive {
		e.fail("'LoopContext' object is not callable (the loop is not recursive)")
	}
	if len(args) != 1 {
		e.fail("loop() takes one argument")
	}
	e.depth++
	if e.depth > maxCallDepth {
		e.limit("nested macro calls", maxCallDepth)
	}
	defer func() { e.depth-- }()
	return e.captureRun(func() ctl {
		e.runLoop(l.n, l.sc, args[0], l.depth+1)
		return ctlNone
	})
}

func (e *evaluator) runLoop(n *forNode, sc *scope, iter Value, depth int) {
	s := e.iterate(iter)
	if n.cond != nil {
		// The filter runs first, so that loop.length and loop.last count
		// the items that pass it.
		kept := []Value{}
		for i := range s.n {
			e.step()
			it := s.item(i)
			inner := &scope{parent: sc}
			e.bind(n.targets, it, inner)
			if truth(e.eval(n.cond, inner)) {
				e.charge(16)
				kept = append(kept, it)
			}
		}
		s = seq{n: len(kept), list: kept}
	}
	lp := &loopVal{s: s, depth: depth, n: n, sc: sc}
	// One scope serves every iteration, emptied each time: what the body
	// sets does not outlive its iteration, as in Jinja.
	inner := &scope{vars: make(map[string]Value, len(n.targets)+1), parent: sc}
	for i := range s.n {
		e.step()
		lp.i = i
		clear(inner.vars)
		inner.vars["loop"] = lp
		e.bind(n.targets, s.item(i), inner)
		if e.exec(n.body, inner) == ctlBreak {
			break
		}
		e.pos = n.p
	}
	if s.n == 0 && n.els != nil {
		e.exec(n.els, sc)
	}
}

func (e *evaluator) bind(targets []string, v Value, sc *scope) {
	if len(targets) == 1 {
		sc.set(targets[0], v)
		return
	}
	for i, x := range e.unpack(v, len(targets)) {
		sc.set(targets[i], x)
	}
}

func (l *loopVal) attr(e *evaluator, name string) Value {
	n := l.s.n
	switch name {
	case "index":
		return l.i + 1
	case "index0":
		return l.i
	case "revindex":
		return n - l.i
	case "revindex0":
		return n - l.i - 1
	case "first":
		return l.i == 0
	case "last":
		return l.i == n-1
	case "length":
		return n
	case "depth":
		return l.depth
	case "depth0":
		return l.depth - 1
	case "previtem":
		if l.i == 0 {
			return undefined{msg: "there is no previous item"}
		}
		return l.s.item(l.i - 1)
	case "nextitem":
		if l.i+1 >= n {
			return undefined{msg: "there is no next item"}
		}
		return l.s.item(l.i + 1)
	case "cycle":
		return builtin(func(e *evaluator, args []Value, _ []kwVal) Value {
			if len(args) == 0 {
				e.fail("no items for cycling given")
			}
			return args[l.i%len(args)]
		})
	}
	return undefined{obj: "LoopContext", key: name}
}

func (e *evaluator) eval(x expr, sc *scope) Value {
	e.step()
	switch x := x.(type) {
	case *lit:
		return x.v
	case *nameExpr:
		if v, ok := sc.lookup(x.name); ok {
			return v
		}
		if g, ok := globals[x.name]; ok {
			return g
		}
		return undefined{key: x.name}
	case *attrExpr:
		e.pos = x.p
		return e.getAttr(e.eval(x.x, sc), x.name)
	case *indexExpr:
		obj := e.eval(x.x, sc)
		idx := e.eval(x.idx, sc)
		e.pos = x.p
		return e.getItem(obj, idx)
	case *sliceExpr:
		return e.slice(x, sc)
	case *callExpr:
		return e.call(x, sc, nil)
	case *filterExpr:
		return e.filter(x, e.eval(x.x, sc), sc)
	case *testExpr:
		v := e.eval(x.x, sc)
		args := e.evalArgs(x.args, sc)
		e.pos = x.p
		if x.t == nil {
			e.fail("no test named '%s'", x.name)
		}
		return x.t(e, v, args) != x.neg
	case *unaryExpr:
		v := e.eval(x.x, sc)
		e.pos = x.p
		if x.op == "not" {
			return !truth(v)
		}
		i, f, isFloat, ok := num(v)
		if !ok {
			e.fail("bad operand type for unary %s: '%s'", x.op, typeName(v))
		}
		switch {
		case x.op == "+" && isFloat:
			return f
		case x.op == "+":
			return i
		case isFloat:
			return -f
		}
		return -i
	case *binExpr:
		switch x.op {
		case "and":
			if l := e.eval(x.l, sc); !truth(l) {
				return l
			}
			return e.eval(x.r, sc)
		case "or":
			if l := e.eval(x.l, sc); truth(l) {
				return l
			}
			return e.eval(x.r, sc)
		}
		l, r := e.eval(x.l, sc), e.eval(x.r, sc)
		e.pos = x.p
		return e.binary(x.op, l, r)
	case *compareExpr:
		l := e.eval(x.first, sc)
		for i, op := range x.ops {
			r := e.eval(x.rest[i], sc)
			e.pos = x.p
			if !e.compare(op, l, r) {
				return false
			}
			l = r
		}
		return true
	case *condExpr:
		if truth(e.eval(x.cond, sc)) {
			return e.eval(x.then, sc)
		}
		if x.other == nil {
			return undefined{msg: "the condition was false and there is no else"}
		}
		return e.eval(x.other, sc)
	case *listExpr:
		l := e.newList(len(x.items))
		l.tuple = x.tuple
		for _, it := range x.items {
			l.items = append(l.items, e.eval(it, sc))
		}
		return l
	case *dictExpr:
		e.charge(32 * len(x.keys))
		d := newDict(len(x.keys))
		for i, k := range x.keys {
			kv := e.eval(k, sc)
			if !hashable(kv) {
				e.pos = x.p
				e.fail("unhashable type: '%s'", typeName(kv))
			}
			d.set(kv, e.eval(x.vals[i], sc))
		}
		return d
	}
	panic(fmt.Sprintf("jinja: unknown expression %T", x))
}

func (e *evaluator) evalArgs(xs []expr, sc *scope) []Value {
	if len(xs) == 0 {
		return nil
	}
	args := make([]Value, len(xs))
	for i, a := range xs {
		args[i] = e.eval(a, sc)
	}
	return args
}

func (e *evaluator) evalKw(kw []kwArg, sc *scope) []kwVal {
	if len(kw) == 0 {
		return nil
	}
	out := make([]kwVal, len(kw))
	for i, k := range kw {
		out[i] = kwVal{k.name, e.eval(k.x, sc)}
	}
	return out
}

func (e *evaluator) filter(f *filterExpr, v Value, sc *scope) Value {
	args, kw := e.evalArgs(f.args, sc), e.evalKw(f.kw, sc)
	e.pos = f.p
	if f.f == nil {
		e.fail("no filter named '%s'", f.name)
	}
	return f.f(e, v, args, kw)
}

// call calls x's function; caller is set for the call of a {% call %}.
func (e *evaluator) call(x *callExpr, sc *scope, caller Value) Value {
	fn := e.eval(x.fn, sc)
	args, kw := e.evalArgs(x.args, sc), e.evalKw(x.kw, sc)
	e.pos = x.p
	switch f := fn.(type) {
	case builtin:
		return f(e, args, kw)
	case *macroVal:
		return e.callMacro(f, args, kw, caller)
	case *loopVal:
		return e.recurse(f, args)
	case undefined:
		e.fail("%s", f.hint())
	}
	e.fail("'%s' object is not callable", typeName(fn))
	return nil
}

func (e *evaluator) callMacro(mv *macroVal, args []Value, kw []kwVal, caller Value) Value {
	m := mv.m
	if len(args) > len(m.params) {
		e.fail("macro '%s' takes not more than %d argument(s)", m.name, len(m.params))
	}
	e.depth++
	if e.depth > maxCallDepth {
		e.limit("nested macro calls", maxCallDepth)
	}
	defer func() { e.depth-- }()
	inner := &scope{vars: make(map[string]Value, len(m.params)+1), parent: mv.scope}
	for i, p := range m.params {
		switch {
		case i < len(args):
			inner.vars[p] = args[i]
		case m.defaults[i] != nil:
			inner.vars[p] = e.eval(m.defaults[i], inner)
		default:
			inner.vars[p] = undefined{key: p}
		}
	}
	for _, k := range kw {
		found := false
		for _, p := range m.params {
			found = found || p == k.name
		}
		if !found {
			e.fail("macro '%s' takes no keyword argument '%s'", m.name, k.name)
		}
		inner.vars[k.name] = k.v
	}
	if caller != nil {
		inner.vars["caller"] = caller
	}
	saved := e.pos
	s := e.capture(m.body, inner)
	e.pos = saved
	return s
}

func (e *evaluator) binary(op string, l, r Value) Value {
	if op == "~" {
		return e.concat(e.str(l), e.str(r))
	}
	if _, ok := l.(undefined); ok {
		e.fail("%s", l.(undefined).hint())
	}
	if _, ok := r.(undefined); ok {
		e.fail("%s", r.(undefined).hint())
	}
	li, lf, lfl, lok := num(l)
	ri, rf, rfl, rok := num(r)
	if lok && rok {
		return e.arith(op, li, lf, lfl, ri, rf, rfl)
	}
	switch op {
	case "+":
		switch a := l.(type) {
		case string:
			if b, ok := r.(string); ok {
				return e.concat(a, b)
			}
		case *list:
			if b, ok := r.(*list); ok {
				out := e.newList(len(a.items) + len(b.items))
				out.tuple = a.tuple
				out.items = append(append(out.items, a.items...), b.items...)
				return out
			}
		}
	case "*":
		s, n := l, r
		if _, ok := r.(string); ok {
			s, n = r, l
		}
		if str, ok := s.(string); ok {
			if k, ok := n.(int); ok {
				if k <= 0 {
					return ""
				}
				if len(str) > 0 && k > e.lim.OutputBytes/len(str) {
					e.limit("output bytes", e.lim.OutputBytes)
				}
				e.chargeStr(len(str) * k)
				return strings.Repeat(str, k)
			}
		}
	}
	e.fail("unsupported operand type(s) for %s: '%s' and '%s'", op, typeName(l), typeName(r))
	return nil
}

func (e *evaluator) arith(op string, li int, lf float64, lfl bool, ri int, rf float64, rfl bool) Value {
	if !lfl && !rfl {
		switch op {
		case "+":
			if s := li + ri; (s > li) == (ri > 0) {
				return s
			}
		case "-":
			if s := li - ri; (s < li) == (ri > 0) {
				return s
			}
		case "*":
			return e.mul(li, ri)
		case "//", "%":
			if ri == 0 {
				e.fail("integer division or modulo by zero")
			}
			q, m := li/ri, li%ri
			if m != 0 && (m < 0) != (ri < 0) {
				q--
				m += ri
			}
			if op == "//" {
				return q
			}
			return m
		case "**":
			if ri >= 0 {
				return e.pow(li, ri)
			}
		}
		if op != "/" && op != "**" {
			e.fail("integer overflow")
		}
	}
	switch op {
	case "+":
		return lf + rf
	case "-":
		return lf - rf
	case "*":
		return lf * rf
	case "/", "//", "%":
		if rf == 0 {
			e.fail("float division by zero")
		}
		switch op {
		case "/":
			return lf / rf
		case "//":
			return math.Floor(lf / rf)
		}
		m := math.Mod(lf, rf)
		if m != 0 && (m < 0) != (rf < 0) {
			m += rf
		}
		return m
	}
	return math.Pow(lf, rf)
}

// pow is b**x by squaring, failing on overflow where Python would grow.
func (e *evaluator) pow(b, x int) int {
	p := 1
	for x > 0 {
		if x&1 == 1 {
			p = e.mul(p, b)
		}
		x >>= 1
		if x > 0 {
			b = e.mul(b, b)
		}
	}
	return p
}

func (e *evaluator) mul(a, b int) int {
	if a == 0 || b == 0 {
		return 0
	}
	p := a * b
	if p/b != a || a == -1 && b == math.MinInt || b == -1 && a == math.MinInt {
		e.fail("integer overflow")
	}
	return p
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

func (e *evaluator) compare(op string, l, r Value) bool {
	switch op {
	case "==":
		return e.equal(l, r)
	case "!=":
		return !e.equal(l, r)
	case "in":
		return e.contains(r, l)
	case "notin":
		return !e.contains(r, l)
	}
	a, b := l, r
	if op == ">" || op == "<=" {
		a, b = r, l
	}
	lt, ok := e.less(a, b)
	if !ok {
		e.fail("'%s' not supported between instances of '%s' and '%s'", op, typeName(l), typeName(r))
	}
	if op == "<=" || op == ">=" {
		return !lt
	}
	return lt
}

// contains is Python's "x in c".
func (e *evaluator) contains(c, x Value) bool {
	switch c := c.(type) {
	case string:
		s, ok := x.(string)
		if !ok {
			e.fail("'in <string>' requires string as left operand, not %s", typeName(x))
		}
		e.scan(len(c))
		return strings.Contains(c, s)
	case *list:
		for _, it := range c.items {
			e.step()
			if e.equal(it, x) {
				return true
			}
		}
		return false
	case *dict:
		if !hashable(x) {
			return false
		}
		_, ok := c.m[x]
		return ok
	case rangeVal:
		i, ok := x.(int)
		if !ok || c.len() == 0 {
			return false
		}
		d := i - c.start
		return d%c.step == 0 && d/c.step >= 0 && d/c.step < c.len()
	case undefined:
		return false
	}
	e.fail("argument of type '%s' is not iterable", typeName(c))
	return false
}

// getAttr is obj.name: a method, else an item, else undefined.
func (e *evaluator) getAttr(obj Value, name string) Value {
	switch o := obj.(type) {
	case undefined:
		e.fail("%s", o.hint())
	case *loopVal:
		return o.attr(e, name)
	case *cycler:
		return o.attr(name)
	}
	if m := method(obj, name); m != nil {
		return m
	}
	if d, ok := obj.(*dict); ok {
		if v, ok := d.m[name]; ok {
			return v
		}
	}
	return undefined{obj: typeName(obj), key: name}
}

// getItem is obj[idx]: an item, else (for a string idx) a method, else
// undefined.
func (e *evaluator) getItem(obj, idx Value) Value {
	switch o := obj.(type) {
	case undefined:
		e.fail("%s", o.hint())
	case *dict:
		if s, ok := idx.(string); ok {
			e.scan(len(s))
		}
		if hashable(idx) {
			if v, ok := o.m[idx]; ok {
				return v
			}
		}
	case *list:
		if i, ok := idx.(int); ok {
			if i < 0 {
				i += len(o.items)
			}
			if i >= 0 && i < len(o.items) {
				return o.items[i]
			}
		}
	case string:
		if i, ok := idx.(int); ok {
			if i < 0 {
				i += e.runeLen(o)
			}
			e.scan(len(o))
			for j, r := range o {
				if i == 0 {
					return o[j : j+utf8.RuneLen(r)]
				}
				i--
			}
		}
	case rangeVal:
		if i, ok := idx.(int); ok {
			n := o.len()
			if i < 0 {
				i += n
			}
			if i >= 0 && i < n {
				return o.start + i*o.step
			}
		}
	case *loopVal:
		if s, ok := idx.(string); ok {
			return o.attr(e, s)
		}
	}
	if s, ok := idx.(string); ok {
		if m := method(obj, s); m != nil {
			return m
		}
	}
	return undefined{obj: typeName(obj), key: idx}
}

// keyText is a missing key as an error message shows it: a long one is
// cut, so that a lookup costs no more than its key's hash.
func keyText(k Value) string {
	switch k := k.(type) {
	case string:
		if len(k) > 40 {
			return strings.ToValidUTF8(k[:40], "") + "..."
		}
		return k
	case *list, *dict:
		return typeName(k)
	}
	return scalarStr(k)
}

func (e *evaluator) slice(x *sliceExpr, sc *scope) Value {
	obj := e.eval(x.x, sc)
	var bounds [3]*int
	for i, b := range []expr{x.lo, x.hi, x.step} {
		if b == nil {
			continue
		}
		v := e.eval(b, sc)
		if v == nil {
			continue
		}
		n, ok := v.(int)
		if !ok {
			e.pos = x.p
			e.fail("slice indices must be integers or None")
		}
		bounds[i] = &n
	}
	e.pos = x.p
	var n int
	var at func(int) Value
	switch o := obj.(type) {
	case *list:
		n, at = len(o.items), func(i int) Value { return o.items[i] }
	case string:
		rs := []rune(o)
		e.charge(4 * len(rs))
		n, at = len(rs), func(i int) Value { return rs[i] }
	case rangeVal:
		n, at = o.len(), func(i int) Value { return o.start + i*o.step }
	case undefined:
		e.fail("%s", o.hint())
	default:
		e.fail("'%s' object is not subscriptable", typeName(obj))
	}
	start, stop, step := sliceBounds(n, bounds)
	if step == 0 {
		e.fail("slice step cannot be zero")
	}
	count := rangeVal{start, stop, step}.len()
	e.charge(16 * count)
	items := make([]Value, 0, count)
	for i := start; step > 0 && i < stop || step < 0 && i > stop; i += step {
		e.step()
		items = append(items, at(i))
	}
	if _, ok := obj.(string); ok {
		var b strings.Builder
		for _, r := range items {
			b.WriteRune(r.(rune))
		}
		return b.String()
	}
	l, _ := obj.(*list)
	return &list{items: items, tuple: l != nil && l.tuple}
}

// sliceBounds is Python's slice.indices.
func sliceBounds(n int, b [3]*int) (start, stop, step int) {
	step = 1
	if b[2] != nil {
		step = *b[2]
	}
	clamp := func(p *int, def, lo, hi int) int {
		if p == nil {
			return def
		}
		i := *p
		if i < 0 {
			i += n
		}
		return min(max(i, lo), hi)
	}
	if step > 0 {
		return clamp(b[0], 0, 0, n), clamp(b[1], n, 0, n), step
	}
	return clamp(b[0], n-1, -1, n-1), clamp(b[1], -1, -1, n-1), step
}
