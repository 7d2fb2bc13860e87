package jinja

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type (
	filterFunc func(e *evaluator, v Value, args []Value, kw []kwVal) Value
	testFunc   func(e *evaluator, v Value, args []Value) bool
)

// arg returns the i-th argument, or the keyword argument name, or def.
func arg(args []Value, kw []kwVal, i int, name string, def Value) Value {
	for _, k := range kw {
		if k.name == name {
			return k.v
		}
	}
	if i < len(args) {
		return args[i]
	}
	return def
}

func (e *evaluator) wantStr(v Value, what string) string {
	s, ok := v.(string)
	if !ok {
		e.fail("%s wants a string, not %s", what, typeName(v))
	}
	return s
}

func (e *evaluator) wantInt(v Value, what string) int {
	switch v := v.(type) {
	case int:
		return v
	case bool:
		if v {
			return 1
		}
		return 0
	}
	e.fail("%s wants an integer, not %s", what, typeName(v))
	return 0
}

// items returns the items a filter iterates over, charged as steps.
func (e *evaluator) items(v Value) []Value {
	s := e.iterate(v)
	if s.list != nil || s.n == 0 {
		return s.list
	}
	l := e.newList(s.n)
	for i := range s.n {
		e.step()
		l.items = append(l.items, s.item(i))
	}
	return l.items
}

var globals map[string]Value

func init() {
	globals = map[string]Value{
		"range":           builtin(fnRange),
		"namespace":       builtin(fnNamespace),
		"dict":            builtin(fnDict),
		"raise_exception": builtin(fnRaise),
		"strftime_now":    builtin(fnStrftimeNow),
		"joiner":          builtin(fnJoiner),
		"cycler":          builtin(fnCycler),
	}
}

// fnJoiner returns a function that returns "" the first time, then the
// separator.
func fnJoiner(e *evaluator, args []Value, kw []kwVal) Value {
	sep := e.str(arg(args, kw, 0, "sep", ", "))
	first := true
	return builtin(func(*evaluator, []Value, []kwVal) Value {
		if first {
			first = false
			return ""
		}
		return sep
	})
}

// cycler is Jinja's cycler: next() returns its items in turn.
type cycler struct {
	items []Value
	i     int
}

func fnCycler(e *evaluator, args []Value, _ []kwVal) Value {
	if len(args) == 0 {
		e.fail("cycler wants at least one item")
	}
	return &cycler{items: args}
}

func (c *cycler) attr(name string) Value {
	switch name {
	case "current":
		return c.items[c.i]
	case "next":
		return builtin(func(*evaluator, []Value, []kwVal) Value {
			v := c.items[c.i]
			c.i = (c.i + 1) % len(c.items)
			return v
		})
	case "reset":
		return builtin(func(*evaluator, []Value, []kwVal) Value {
			c.i = 0
			return nil
		})
	}
	return undefined{obj: "Cycler", key: name}
}

func fnRange(e *evaluator, args []Value, _ []kwVal) Value {
	r := rangeVal{step: 1}
	switch len(args) {
	case 1:
		r.stop = e.wantInt(args[0], "range")
	case 2, 3:
		r.start, r.stop = e.wantInt(args[0], "range"), e.wantInt(args[1], "range")
		if len(args) == 3 {
			r.step = e.wantInt(args[2], "range")
		}
	default:
		e.fail("range expects 1 to 3 arguments, got %d", len(args))
	}
	if r.step == 0 {
		e.fail("range() arg 3 must not be zero")
	}
	return r
}

func fnNamespace(e *evaluator, args []Value, kw []kwVal) Value {
	d := fnDict(e, args, kw).(*dict)
	d.ns = true
	return d
}

func fnDict(e *evaluator, args []Value, kw []kwVal) Value {
	d := newDict(len(kw))
	if len(args) > 1 {
		e.fail("dict expected at most 1 argument, got %d", len(args))
	}
	if len(args) == 1 {
		src, ok := args[0].(*dict)
		if !ok {
			e.fail("dict wants a mapping, not %s", typeName(args[0]))
		}
		e.charge(32 * len(src.keys))
		for _, k := range src.keys {
			d.set(k, src.m[k])
		}
	}
	e.charge(32 * len(kw))
	for _, k := range kw {
		d.set(k.name, k.v)
	}
	return d
}

func fnRaise(e *evaluator, args []Value, _ []kwVal) Value {
	msg := ""
	if len(args) > 0 {
		msg = e.str(args[0])
	}
	e.fail("%s", msg)
	return nil
}

// fnStrftimeNow formats the time now with Python's strftime directives.
func fnStrftimeNow(e *evaluator, args []Value, _ []kwVal) Value {
	if len(args) != 1 {
		e.fail("strftime_now wants a format")
	}
	format := e.wantStr(args[0], "strftime_now")
	t := e.now()
	w := e.newStr()
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			w.byte(c)
			continue
		}
		i++
		pad := true
		if format[i] == '-' && i+1 < len(format) {
			pad = false
			i++
		}
		n := func(v, width int) {
			s := strconv.Itoa(v)
			for pad && len(s) < width {
				s = "0" + s
			}
			w.str(s)
		}
		switch format[i] {
		case 'Y':
			n(t.Year(), 4)
		case 'y':
			n(t.Year()%100, 2)
		case 'm':
			n(int(t.Month()), 2)
		case 'd':
			n(t.Day(), 2)
		case 'e':
			s := strconv.Itoa(t.Day())
			if len(s) < 2 {
				s = " " + s
			}
			w.str(s)
		case 'j':
			n(t.YearDay(), 3)
		case 'H':
			n(t.Hour(), 2)
		case 'I':
			n((t.Hour()+11)%12+1, 2)
		case 'M':
			n(t.Minute(), 2)
		case 'S':
			n(t.Second(), 2)
		case 'p':
			w.str(t.Format("PM"))
		case 'b', 'h':
			w.str(t.Format("Jan"))
		case 'B':
			w.str(t.Format("January"))
		case 'a':
			w.str(t.Format("Mon"))
		case 'A':
			w.str(t.Format("Monday"))
		case 'Z':
			w.str(t.Format("MST"))
		case 'z':
			w.str(t.Format("-0700"))
		case '%':
			w.byte('%')
		default:
			w.byte('%')
			w.byte(format[i])
		}
	}
	return w.done()
}

var filters map[string]filterFunc

func init() {
	filters = map[string]filterFunc{
		"abs":        fAbs,
		"batch":      fBatch,
		"capitalize": func(e *evaluator, v Value, _ []Value, _ []kwVal) Value { return e.capitalize(e.str(v)) },
		"count":      fLength,
		"d":          fDefault,
		"default":    fDefault,
		"dictsort":   fDictsort,
		"e":          fEscape,
		"escape":     fEscape,
		"first":      fFirst,
		"float":      fFloat,
		"format":     fFormat,
		"from_json":  fFromJSON,
		"fromjson":   fFromJSON,
		"indent":     fIndent,
		"int":        fInt,
		"items":      fItems,
		"join":       fJoin,
		"last":       fLast,
		"length":     fLength,
		"list":       fList,
		"lower":      func(e *evaluator, v Value, _ []Value, _ []kwVal) Value { return e.mapStr(e.str(v), strings.ToLower) },
		"map":        fMap,
		"max":        func(e *evaluator, v Value, _ []Value, _ []kwVal) Value { return e.extreme(v, false) },
		"min":        func(e *evaluator, v Value, _ []Value, _ []kwVal) Value { return e.extreme(v, true) },
		"reject":     func(e *evaluator, v Value, args []Value, _ []kwVal) Value { return e.selectItems(v, "", args, false) },
		"rejectattr": fRejectattr,
		"replace":    fReplace,
		"reverse":    fReverse,
		"round":      fRound,
		"safe":       func(_ *evaluator, v Value, _ []Value, _ []kwVal) Value { return v },
		"select":     func(e *evaluator, v Value, args []Value, _ []kwVal) Value { return e.selectItems(v, "", args, true) },
		"selectattr": fSelectattr,
		"sort":       fSort,
		"string":     func(e *evaluator, v Value, _ []Value, _ []kwVal) Value { return e.str(v) },
		"sum":        fSum,
		"title":      func(e *evaluator, v Value, _ []Value, _ []kwVal) Value { return e.titleFilter(e.str(v)) },
		"tojson":     fToJSON,
		"trim":       fTrim,
		"unique":     fUnique,
		"upper":      func(e *evaluator, v Value, _ []Value, _ []kwVal) Value { return e.mapStr(e.str(v), strings.ToUpper) },
		"wordcount":  fWordcount,
	}
}

// mapStr applies f to s within bounds (case mapping can grow a string).
func (e *evaluator) mapStr(s string, f func(string) string) string {
	e.charge(3 * len(s))
	return f(s)
}

func fAbs(e *evaluator, v Value, _ []Value, _ []kwVal) Value {
	switch v := v.(type) {
	case int:
		if v == math.MinInt {
			e.fail("integer overflow")
		}
		return abs(v)
	case float64:
		return math.Abs(v)
	case bool:
		return e.wantInt(v, "abs")
	}
	e.fail("bad operand type for abs(): '%s'", typeName(v))
	return nil
}

func fBatch(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	n := e.wantInt(arg(args, kw, 0, "linecount", nil), "batch")
	if n <= 0 {
		e.fail("batch wants a positive size")
	}
	fill := arg(args, kw, 1, "fill_with", nil)
	items := e.items(v)
	out := e.newList((len(items) + n - 1) / n)
	for i := 0; i < len(items); i += n {
		e.step()
		b := e.newList(n)
		b.items = append(b.items, items[i:min(i+n, len(items))]...)
		for fill != nil && len(b.items) < n {
			b.items = append(b.items, fill)
		}
		out.items = append(out.items, b)
	}
	return out
}

func fDefault(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	def := arg(args, kw, 0, "default_value", "")
	_, undef := v.(undefined)
	if undef || truth(arg(args, kw, 1, "boolean", false)) && !truth(v) {
		return def
	}
	return v
}

func fDictsort(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	d, ok := v.(*dict)
	if !ok {
		e.fail("dictsort wants a mapping, not %s", typeName(v))
	}
	l := fItems(e, d, nil, nil).(*list)
	byValue := arg(args, kw, 1, "by", "key") == "value"
	e.sortValues(l.items, func(x Value) Value {
		kv := x.(*list).items
		if byValue {
			return kv[1]
		}
		return kv[0]
	}, truth(arg(args, kw, 0, "case_sensitive", false)))
	if truth(arg(args, kw, 2, "reverse", false)) {
		slices.Reverse(l.items)
	}
	return l
}

func fEscape(e *evaluator, v Value, _ []Value, _ []kwVal) Value {
	s := e.str(v)
	e.charge(5 * len(s))
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

func fFirst(e *evaluator, v Value, _ []Value, _ []kwVal) Value { return e.end(v, false) }

func fLast(e *evaluator, v Value, _ []Value, _ []kwVal) Value { return e.end(v, true) }

// end is v's first or last item.
func (e *evaluator) end(v Value, last bool) Value {
	if s, ok := v.(string); ok {
		r, n := utf8.DecodeRuneInString(s)
		if last {
			r, n = utf8.DecodeLastRuneInString(s)
		}
		if n == 0 {
			return undefined{msg: "the sequence is empty"}
		}
		return string(r)
	}
	s := e.iterate(v)
	switch {
	case s.n == 0:
		return undefined{msg: "the sequence is empty"}
	case last:
		return s.item(s.n - 1)
	}
	return s.item(0)
}

func fFloat(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	def := arg(args, kw, 0, "default", 0.0)
	switch v := v.(type) {
	case string:
		e.scan(len(v))
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return def
		}
		return f
	case undefined, nil:
		return def
	}
	_, f, _, ok := num(v)
	if !ok {
		return def
	}
	return f
}

func fInt(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	def := arg(args, kw, 0, "default", 0)
	switch v := v.(type) {
	case string:
		e.scan(len(v))
		s := strings.ReplaceAll(strings.TrimSpace(v), "_", "")
		if i, err := strconv.ParseInt(s, e.wantInt(arg(args, kw, 1, "base", 10), "int"), 64); err == nil {
			return int(i)
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && math.Abs(f) < 1<<62 {
			return int(f)
		}
		return def
	case float64:
		if math.IsNaN(v) || math.Abs(v) >= 1<<62 {
			return def
		}
		return int(v)
	case int:
		return v
	case bool:
		return e.wantInt(v, "int")
	}
	return def
}

// fFormat is Python's printf-style "%" formatting, for %s, %r, %d, %i,
// %c, %f, %x and %%, with flags, width and precision.
func fFormat(e *evaluator, v Value, args []Value, _ []kwVal) Value {
	f := e.str(v)
	w := e.newStr()
	next := 0
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			w.byte(f[i])
			continue
		}
		j := i + 1
		for j < len(f) && strings.IndexByte("-+ #0123456789.", f[j]) >= 0 {
			j++
		}
		if j == len(f) {
			e.fail("incomplete format")
		}
		spec, verb := f[i+1:j], f[j]
		i = j
		if verb == '%' {
			w.byte('%')
			continue
		}
		if next >= len(args) {
			e.fail("not enough arguments for format string")
		}
		a := args[next]
		next++
		// fmt pads to the width before the writer sees it.
		width := 0
		for _, part := range strings.FieldsFunc(spec, func(r rune) bool { return r < '0' || r > '9' }) {
			n, err := strconv.Atoi(part)
			if err != nil || n > e.lim.OutputBytes {
				e.limit("output bytes", e.lim.OutputBytes)
			}
			width += n
		}
		e.chargeStr(width)
		var s string
		switch verb {
		case 's':
			s = fmt.Sprintf("%"+spec+"s", e.str(a))
		case 'r':
			rw := e.newStr()
			rw.writeRepr(a)
			s = fmt.Sprintf("%"+spec+"s", rw.done())
		case 'd', 'i':
			s = fmt.Sprintf("%"+spec+"d", e.wantInt(fInt(e, a, nil, nil), "format"))
		case 'x':
			s = fmt.Sprintf("%"+spec+"x", e.wantInt(a, "format"))
		case 'f':
			_, x, _, ok := num(a)
			if !ok {
				e.fail("%%f format: a real number is required, not %s", typeName(a))
			}
			s = fmt.Sprintf("%"+spec+"f", x)
		case 'c':
			if c, ok := a.(string); ok && e.runeLen(c) == 1 {
				s = c
			} else if n := e.wantInt(a, "format"); n >= 0 && n <= unicode.MaxRune {
				s = string(rune(n))
			} else {
				e.fail("%%c arg not in range(0x110000)")
			}
		default:
			e.fail("unsupported format character '%c'", verb)
		}
		w.str(s)
	}
	if next < len(args) {
		e.fail("not all arguments converted during string formatting")
	}
	return w.done()
}

// fFromJSON parses JSON, keeping objects' key order. It is no Jinja
// filter, but templates written for other engines call it.
func fFromJSON(e *evaluator, v Value, _ []Value, _ []kwVal) Value {
	s := e.wantStr(v, "from_json")
	e.scan(len(s))
	e.charge(4 * len(s)) // the values, roughly
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	x, err := e.decodeJSON(d)
	if err == nil {
		if _, err = d.Token(); err == io.EOF {
			return x
		}
		err = errors.New("data after the value")
	}
	e.fail("from_json: %v", err)
	return nil
}

func (e *evaluator) decodeJSON(d *json.Decoder) (Value, error) {
	e.enter()
	defer e.leave()
	t, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t := t.(type) {
	case json.Delim:
		if t == '[' {
			l := &list{}
			for d.More() {
				x, err := e.decodeJSON(d)
				if err != nil {
					return nil, err
				}
				l.items = append(l.items, x)
			}
			_, err := d.Token()
			return l, err
		}
		m := newDict(0)
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return nil, err
			}
			x, err := e.decodeJSON(d)
			if err != nil {
				return nil, err
			}
			m.set(k, x)
		}
		_, err := d.Token()
		return m, err
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return int(i), nil
		}
		f, err := t.Float64()
		return f, err
	}
	return t, nil // a string, a bool or nil
}

func fIndent(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	s := e.str(v)
	ind := ""
	switch w := arg(args, kw, 0, "width", 4).(type) {
	case string:
		ind = w
	default:
		n := e.wantInt(w, "indent")
		if n > e.lim.OutputBytes {
			e.limit("output bytes", e.lim.OutputBytes)
		}
		ind = strings.Repeat(" ", max(n, 0))
	}
	first, blank := truth(arg(args, kw, 1, "first", false)), truth(arg(args, kw, 2, "blank", false))
	lines := e.splitLines(s + "\n")
	out := e.newStr()
	if first {
		out.str(ind)
	}
	for i, l := range lines {
		e.step()
		if i > 0 {
			out.byte('\n')
			if blank || l != "" {
				out.str(ind)
			}
		}
		out.str(l)
	}
	return out.done()
}

// splitLines is Python's str.splitlines.
func (e *evaluator) splitLines(s string) []string {
	n := 0
	eachLine(s, func(string) { n++ })
	e.charge(16 * n)
	lines := make([]string, 0, n)
	eachLine(s, func(l string) {
		e.step()
		lines = append(lines, l)
	})
	return lines
}

// eachLine calls f with each of s's lines, as Python's splitlines splits.
func eachLine(s string, f func(string)) {
	start := 0
	for i, r := range s {
		switch r {
		case '\n', '\r', '\v', '\f', 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
			if r == '\n' && i > 0 && s[i-1] == '\r' {
				start = i + 1
				continue
			}
			f(s[start:i])
			start = i + utf8.RuneLen(r)
		}
	}
	if start < len(s) {
		f(s[start:])
	}
}

func fItems(e *evaluator, v Value, _ []Value, _ []kwVal) Value {
	switch d := v.(type) {
	case *dict:
		out := e.newList(len(d.keys))
		for _, k := range d.keys {
			e.step()
			e.charge(32)
			out.items = append(out.items, &list{items: []Value{k, d.m[k]}, tuple: true})
		}
		return out
	case undefined:
		return &list{}
	}
	e.fail("items wants a mapping, not %s", typeName(v))
	return nil
}

func fJoin(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	sep := e.str(arg(args, kw, 0, "d", ""))
	attr := arg(args, kw, 1, "attribute", nil)
	w := e.newStr()
	for i, it := range e.items(v) {
		e.step()
		if i > 0 {
			w.str(sep)
		}
		if attr != nil {
			it = e.getItem(it, attr)
		}
		w.writeStr(it)
	}
	return w.done()
}

func fLength(e *evaluator, v Value, _ []Value, _ []kwVal) Value {
	switch v := v.(type) {
	case string:
		return e.runeLen(v)
	case *list:
		return len(v.items)
	case *dict:
		return len(v.keys)
	case rangeVal:
		return v.len()
	case undefined:
		return 0
	}
	e.fail("object of type '%s' has no len()", typeName(v))
	return nil
}

func fList(e *evaluator, v Value, _ []Value, _ []kwVal) Value {
	items := e.items(v)
	out := e.newList(len(items))
	out.items = append(out.items, items...)
	return out
}

func fMap(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	items := e.items(v)
	out := e.newList(len(items))
	attr := arg(nil, kw, 0, "attribute", nil)
	var f filterFunc
	if attr == nil {
		if len(args) == 0 {
			e.fail("map wants a filter name or attribute=")
		}
		name := e.wantStr(args[0], "map")
		if f = filters[name]; f == nil {
			e.fail("no filter named %q", name)
		}
		args = args[1:]
	}
	def, hasDef := Value(nil), false
	for _, k := range kw {
		if k.name == "default" {
			def, hasDef = k.v, true
		}
	}
	for _, it := range items {
		e.step()
		if f != nil {
			out.items = append(out.items, f(e, it, args, kw))
			continue
		}
		x := e.path(it, attr)
		if _, ok := x.(undefined); ok && hasDef {
			x = def
		}
		out.items = append(out.items, x)
	}
	return out
}

// path looks up a dotted attribute path ("a.b") as map and selectattr do.
func (e *evaluator) path(v, attr Value) Value {
	s, ok := attr.(string)
	if !ok {
		return e.getItem(v, attr)
	}
	for part := range strings.SplitSeq(s, ".") {
		if n, err := strconv.Atoi(part); err == nil {
			v = e.getItem(v, n)
		} else {
			v = e.getItem(v, part)
		}
		if _, ok := v.(undefined); ok {
			return v
		}
	}
	return v
}

func (e *evaluator) extreme(v Value, smallest bool) Value {
	items := e.items(v)
	if len(items) == 0 {
		return undefined{msg: "No aggregated item, sequence was empty."}
	}
	best := items[0]
	for _, it := range items[1:] {
		e.step()
		lt, ok := e.less(it, best)
		if !ok {
			e.fail("cannot compare %s and %s", typeName(it), typeName(best))
		}
		gt, _ := e.less(best, it)
		if smallest && lt || !smallest && gt {
			best = it
		}
	}
	return best
}

// selectItems keeps the items (or, with attr, those whose attribute) pass
// the test named in args[0] (truth when none), or fail it when keep is false.
func (e *evaluator) selectItems(v Value, attr string, args []Value, keep bool) Value {
	var t testFunc
	if len(args) > 0 {
		name := e.wantStr(args[0], "select")
		if t = tests[name]; t == nil {
			e.fail("no test named %q", name)
		}
		args = args[1:]
	}
	items := e.items(v)
	out := e.newList(0)
	for _, it := range items {
		e.step()
		x := it
		if attr != "" {
			x = e.path(it, attr)
		}
		ok := truth(x)
		if t != nil {
			ok = t(e, x, args)
		}
		if ok == keep {
			e.charge(16)
			out.items = append(out.items, it)
		}
	}
	return out
}

func fSelectattr(e *evaluator, v Value, args []Value, _ []kwVal) Value {
	if len(args) == 0 {
		e.fail("selectattr wants an attribute")
	}
	return e.selectItems(v, e.wantStr(args[0], "selectattr"), args[1:], true)
}

func fRejectattr(e *evaluator, v Value, args []Value, _ []kwVal) Value {
	if len(args) == 0 {
		e.fail("rejectattr wants an attribute")
	}
	return e.selectItems(v, e.wantStr(args[0], "rejectattr"), args[1:], false)
}

func fReplace(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	if len(args) < 2 {
		e.fail("replace wants the old and the new string")
	}
	return e.replace(e.str(v), e.str(args[0]), e.str(args[1]), e.wantInt(arg(args, kw, 2, "count", -1), "replace"))
}

// replace is str.replace with its size checked before it is built.
func (e *evaluator) replace(s, old, new string, n int) string {
	c := strings.Count(s, old)
	if n >= 0 && n < c {
		c = n
	}
	if size := len(s) + c*(len(new)-len(old)); c > 0 && len(new) > len(old) && (size > e.lim.OutputBytes || c > e.lim.OutputBytes) {
		e.limit("output bytes", e.lim.OutputBytes)
	}
	e.chargeStr(len(s) + c*max(len(new)-len(old), 0))
	return strings.Replace(s, old, new, c)
}

func fReverse(e *evaluator, v Value, _ []Value, _ []kwVal) Value {
	if s, ok := v.(string); ok {
		rs := []rune(s)
		e.charge(5 * len(rs))
		slices.Reverse(rs)
		return string(rs)
	}
	out := fList(e, v, nil, nil).(*list)
	slices.Reverse(out.items)
	return out
}

func fRound(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	_, f, _, ok := num(v)
	if !ok {
		e.fail("round wants a number, not %s", typeName(v))
	}
	prec := e.wantInt(arg(args, kw, 0, "precision", 0), "round")
	p := math.Pow(10, float64(prec))
	switch arg(args, kw, 1, "method", "common") {
	case "ceil":
		return math.Ceil(f*p) / p
	case "floor":
		return math.Floor(f*p) / p
	}
	return math.RoundToEven(f*p) / p
}

func fSort(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	out := fList(e, v, nil, nil).(*list)
	attr := arg(args, kw, 2, "attribute", nil)
	e.sortValues(out.items, func(x Value) Value {
		if attr != nil {
			return e.path(x, attr)
		}
		return x
	}, truth(arg(args, kw, 1, "case_sensitive", false)))
	if truth(arg(args, kw, 0, "reverse", false)) {
		slices.Reverse(out.items)
	}
	return out
}

// sortValues sorts items by key stably; strings compare ignoring case
// unless caseSensitive, as Jinja's sort does.
func (e *evaluator) sortValues(items []Value, key func(Value) Value, caseSensitive bool) {
	e.charge(40 * len(items))
	keys := make([]Value, len(items))
	idx := make([]int, len(items))
	for i, it := range items {
		e.step()
		k := key(it)
		if s, ok := k.(string); ok && !caseSensitive {
			k = strings.ToLower(s)
		}
		keys[i], idx[i] = k, i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		e.step()
		if lt, ok := e.less(keys[a], keys[b]); !ok {
			e.fail("'<' not supported between instances of '%s' and '%s'", typeName(keys[a]), typeName(keys[b]))
		} else if lt {
			return -1
		}
		if lt, _ := e.less(keys[b], keys[a]); lt {
			return 1
		}
		return 0
	})
	sorted := make([]Value, len(items))
	for i, j := range idx {
		sorted[i] = items[j]
	}
	copy(items, sorted)
}

func fSum(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	attr := arg(args, kw, 0, "attribute", nil)
	total := arg(args, kw, 1, "start", 0)
	for _, it := range e.items(v) {
		e.step()
		if attr != nil {
			it = e.path(it, attr)
		}
		total = e.binary("+", total, it)
	}
	return total
}

func fToJSON(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	indent := -1
	if x := arg(args, kw, 0, "indent", nil); x != nil {
		indent = e.wantInt(x, "tojson indent")
		if indent > e.lim.OutputBytes {
			e.limit("output bytes", e.lim.OutputBytes)
		}
		indent = max(indent, 0)
	}
	w := e.newStr()
	w.writeJSON(v, indent, 0)
	return w.done()
}

func fWordcount(e *evaluator, v Value, _ []Value, _ []kwVal) Value {
	s := e.str(v)
	e.scan(len(s))
	return len(e.fields(s, -1))
}

func fTrim(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	s := e.str(v)
	e.scan(len(s))
	if c := arg(args, kw, 0, "chars", nil); c != nil {
		return strings.Trim(s, e.str(c))
	}
	return strings.TrimFunc(s, isSpace)
}

// isSpace is Python's str.isspace for one character.
func isSpace(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f }

func fUnique(e *evaluator, v Value, args []Value, kw []kwVal) Value {
	caseSensitive := truth(arg(args, kw, 0, "case_sensitive", false))
	attr := arg(args, kw, 1, "attribute", nil)
	items := e.items(v)
	out := e.newList(0)
	var seen []Value
	for _, it := range items {
		k := it
		if attr != nil {
			k = e.path(it, attr)
		}
		if s, ok := k.(string); ok && !caseSensitive {
			k = strings.ToLower(s)
		}
		dup := false
		for _, x := range seen {
			e.step()
			if e.equal(x, k) {
				dup = true
				break
			}
		}
		if !dup {
			e.charge(32)
			seen = append(seen, k)
			out.items = append(out.items, it)
		}
	}
	return out
}

func (e *evaluator) capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return e.concat(string(unicode.ToUpper(r)), e.mapStr(s[n:], strings.ToLower))
}

// titleFilter is Jinja's title filter: each word, begun after a space, a
// dash or an opening bracket, gets a capital and lower case after it.
func (e *evaluator) titleFilter(s string) string {
	e.charge(3 * len(s))
	var b strings.Builder
	start := true
	for _, r := range s {
		delim := isSpace(r) || strings.ContainsRune("-({[<", r)
		switch {
		case delim:
			b.WriteRune(r)
		case start:
			b.WriteRune(unicode.ToUpper(r))
		default:
			b.WriteRune(unicode.ToLower(r))
		}
		start = delim
	}
	return b.String()
}

// pyTitle is Python's str.title: a cased letter after an uncased
// character is upper case, others lower.
func (e *evaluator) pyTitle(s string) string {
	e.charge(3 * len(s))
	var b strings.Builder
	prevCased := false
	for _, r := range s {
		cased := unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r)
		if prevCased {
			b.WriteRune(unicode.ToLower(r))
		} else {
			b.WriteRune(unicode.ToTitle(r))
		}
		prevCased = cased
	}
	return b.String()
}

var tests map[string]testFunc

func init() {
	isType := func(f func(Value) bool) testFunc {
		return func(_ *evaluator, v Value, _ []Value) bool { return f(v) }
	}
	cmp := func(op string) testFunc {
		return func(e *evaluator, v Value, args []Value) bool {
			if len(args) != 1 {
				e.fail("the test wants one argument")
			}
			return e.compare(op, v, args[0])
		}
	}
	tests = map[string]testFunc{
		"defined":   isType(func(v Value) bool { _, u := v.(undefined); return !u }),
		"undefined": isType(func(v Value) bool { _, u := v.(undefined); return u }),
		"none":      isType(func(v Value) bool { return v == nil }),
		"boolean":   isType(func(v Value) bool { _, ok := v.(bool); return ok }),
		"true":      isType(func(v Value) bool { return v == true }),
		"false":     isType(func(v Value) bool { return v == false }),
		"string":    isType(func(v Value) bool { _, ok := v.(string); return ok }),
		"number": isType(func(v Value) bool {
			switch v.(type) {
			case int, float64, bool:
				return true
			}
			return false
		}),
		"integer": isType(func(v Value) bool { _, ok := v.(int); return ok }),
		"float":   isType(func(v Value) bool { _, ok := v.(float64); return ok }),
		"mapping": isType(func(v Value) bool { _, ok := v.(*dict); return ok }),
		"sequence": isType(func(v Value) bool {
			switch v.(type) {
			case string, *list, *dict, rangeVal:
				return true
			}
			return false
		}),
		"iterable": isType(func(v Value) bool {
			switch v.(type) {
			case string, *list, *dict, rangeVal, undefined:
				return true
			}
			return false
		}),
		"callable": isType(func(v Value) bool {
			switch v.(type) {
			case builtin, *macroVal:
				return true
			}
			return false
		}),
		"lower": isType(func(v Value) bool { s, ok := v.(string); return ok && strings.ToLower(s) == s }),
		"upper": isType(func(v Value) bool { s, ok := v.(string); return ok && strings.ToUpper(s) == s }),
		"odd": func(e *evaluator, v Value, _ []Value) bool {
			return e.wantInt(v, "odd")%2 != 0
		},
		"even": func(e *evaluator, v Value, _ []Value) bool {
			return e.wantInt(v, "even")%2 == 0
		},
		"divisibleby": func(e *evaluator, v Value, args []Value) bool {
			if len(args) != 1 {
				e.fail("divisibleby wants one argument")
			}
			d := e.wantInt(args[0], "divisibleby")
			if d == 0 {
				e.fail("integer division or modulo by zero")
			}
			return e.wantInt(v, "divisibleby")%d == 0
		},
		"sameas": func(e *evaluator, v Value, args []Value) bool {
			if len(args) != 1 {
				e.fail("sameas wants one argument")
			}
			return sameAs(v, args[0])
		},
		"in": func(e *evaluator, v Value, args []Value) bool {
			if len(args) != 1 {
				e.fail("in wants one argument")
			}
			return e.contains(args[0], v)
		},
		"eq": cmp("=="), "equalto": cmp("=="), "==": cmp("=="),
		"ne": cmp("!="), "!=": cmp("!="),
		"lt": cmp("<"), "lessthan": cmp("<"), "<": cmp("<"),
		"le": cmp("<="), "<=": cmp("<="),
		"gt": cmp(">"), "greaterthan": cmp(">"), ">": cmp(">"),
		"ge": cmp(">="), ">=": cmp(">="),
	}
}

// sameAs is Python's "is" for the values a template can name: none, the
// booleans, and the same container.
func sameAs(a, b Value) bool {
	switch a.(type) {
	case nil, bool:
		return a == b
	case *list, *dict:
		return a == b
	}
	return false
}

// method returns obj's method name bound to obj, or nil.
func method(obj Value, name string) Value {
	switch o := obj.(type) {
	case string:
		if f, ok := strMethods[name]; ok {
			return builtin(func(e *evaluator, args []Value, kw []kwVal) Value {
				e.scan(len(o))
				return f(e, o, args, kw)
			})
		}
	case *dict:
		if f, ok := dictMethods[name]; ok && !o.ns {
			return builtin(func(e *evaluator, args []Value, kw []kwVal) Value { return f(e, o, args, kw) })
		}
	case *list:
		if name == "append" && !o.tuple {
			return builtin(func(e *evaluator, args []Value, _ []kwVal) Value {
				if len(args) != 1 {
					e.fail("append takes exactly one argument")
				}
				e.charge(16)
				o.items = append(o.items, args[0])
				return nil
			})
		}
	}
	return nil
}

var (
	strMethods  map[string]func(e *evaluator, s string, args []Value, kw []kwVal) Value
	dictMethods map[string]func(e *evaluator, d *dict, args []Value, kw []kwVal) Value
)

func init() {
	strip := func(trim func(string, string) string, trimFunc func(string, func(rune) bool) string) func(*evaluator, string, []Value, []kwVal) Value {
		return func(e *evaluator, s string, args []Value, kw []kwVal) Value {
			if c := arg(args, kw, 0, "chars", nil); c != nil {
				return trim(s, e.wantStr(c, "strip"))
			}
			return trimFunc(s, isSpace)
		}
	}
	affix := func(has func(string, string) bool) func(*evaluator, string, []Value, []kwVal) Value {
		return func(e *evaluator, s string, args []Value, _ []kwVal) Value {
			if len(args) != 1 {
				e.fail("startswith and endswith want one argument")
			}
			if l, ok := args[0].(*list); ok {
				for _, x := range l.items {
					if has(s, e.wantStr(x, "startswith")) {
						return true
					}
				}
				return false
			}
			return has(s, e.wantStr(args[0], "startswith"))
		}
	}
	find := func(last bool) func(*evaluator, string, []Value, []kwVal) Value {
		return func(e *evaluator, s string, args []Value, _ []kwVal) Value {
			if len(args) != 1 {
				e.fail("find wants one argument")
			}
			sub := e.wantStr(args[0], "find")
			i := strings.Index(s, sub)
			if last {
				i = strings.LastIndex(s, sub)
			}
			if i < 0 {
				return -1
			}
			return e.runeLen(s[:i])
		}
	}
	strMethods = map[string]func(e *evaluator, s string, args []Value, kw []kwVal) Value{
		"strip":  strip(strings.Trim, strings.TrimFunc),
		"lstrip": strip(strings.TrimLeft, strings.TrimLeftFunc),
		"rstrip": strip(strings.TrimRight, strings.TrimRightFunc),
		"split": func(e *evaluator, s string, args []Value, kw []kwVal) Value {
			return e.split(s, arg(args, kw, 0, "sep", nil), e.wantInt(arg(args, kw, 1, "maxsplit", -1), "split"))
		},
		"splitlines": func(e *evaluator, s string, _ []Value, _ []kwVal) Value {
			return e.strList(e.splitLines(s))
		},
		"startswith": affix(strings.HasPrefix),
		"endswith":   affix(strings.HasSuffix),
		"upper":      func(e *evaluator, s string, _ []Value, _ []kwVal) Value { return e.mapStr(s, strings.ToUpper) },
		"lower":      func(e *evaluator, s string, _ []Value, _ []kwVal) Value { return e.mapStr(s, strings.ToLower) },
		"title":      func(e *evaluator, s string, _ []Value, _ []kwVal) Value { return e.pyTitle(s) },
		"capitalize": func(e *evaluator, s string, _ []Value, _ []kwVal) Value { return e.capitalize(s) },
		"replace": func(e *evaluator, s string, args []Value, kw []kwVal) Value {
			if len(args) < 2 {
				e.fail("replace wants the old and the new string")
			}
			return e.replace(s, e.wantStr(args[0], "replace"), e.wantStr(args[1], "replace"), e.wantInt(arg(args, kw, 2, "count", -1), "replace"))
		},
		"count": func(e *evaluator, s string, args []Value, _ []kwVal) Value {
			if len(args) != 1 {
				e.fail("count wants one argument")
			}
			sub := e.wantStr(args[0], "count")
			if sub == "" {
				return e.runeLen(s) + 1
			}
			return strings.Count(s, sub)
		},
		"find":  find(false),
		"rfind": find(true),
		"join": func(e *evaluator, s string, args []Value, _ []kwVal) Value {
			if len(args) != 1 {
				e.fail("join wants one argument")
			}
			w := e.newStr()
			for i, it := range e.items(args[0]) {
				e.step()
				if i > 0 {
					w.str(s)
				}
				w.str(e.wantStr(it, "join"))
			}
			return w.done()
		},
		"format": (*evaluator).format,
		"isdigit": func(_ *evaluator, s string, _ []Value, _ []kwVal) Value {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) }) < 0
		},
		"isspace": func(_ *evaluator, s string, _ []Value, _ []kwVal) Value {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !isSpace(r) }) < 0
		},
	}
	dictMethods = map[string]func(e *evaluator, d *dict, args []Value, kw []kwVal) Value{
		"items": func(e *evaluator, d *dict, _ []Value, _ []kwVal) Value { return fItems(e, d, nil, nil) },
		"keys": func(e *evaluator, d *dict, _ []Value, _ []kwVal) Value {
			return fList(e, d, nil, nil)
		},
		"values": func(e *evaluator, d *dict, _ []Value, _ []kwVal) Value {
			out := e.newList(len(d.keys))
			for _, k := range d.keys {
				out.items = append(out.items, d.m[k])
			}
			return out
		},
		"get": func(e *evaluator, d *dict, args []Value, _ []kwVal) Value {
			if len(args) < 1 || len(args) > 2 {
				e.fail("get wants a key and maybe a default")
			}
			if hashable(args[0]) {
				if v, ok := d.m[args[0]]; ok {
					return v
				}
			}
			if len(args) == 2 {
				return args[1]
			}
			return nil
		},
	}
}

func (e *evaluator) strList(ss []string) *list {
	out := e.newList(len(ss))
	for _, s := range ss {
		e.step()
		out.items = append(out.items, s)
	}
	return out
}

// split is Python's str.split.
func (e *evaluator) split(s string, sep Value, n int) Value {
	if sep == nil {
		return e.strList(e.fields(s, n))
	}
	sp := e.wantStr(sep, "split")
	if sp == "" {
		e.fail("empty separator")
	}
	parts := strings.Count(s, sp) + 1
	if n >= 0 {
		parts = min(parts, n+1)
	}
	e.charge(16 * parts)
	return e.strList(strings.SplitN(s, sp, parts))
}

// fields splits s at runs of blanks, at most n times when n >= 0; the last
// field keeps the rest, less its leading blanks, as Python's split().
func (e *evaluator) fields(s string, n int) []string {
	count := 0
	eachField(s, n, func(string) { count++ })
	e.charge(16 * count)
	out := make([]string, 0, count)
	eachField(s, n, func(f string) {
		e.step()
		out = append(out, f)
	})
	return out
}

func eachField(s string, n int, f func(string)) {
	for i := 0; ; i++ {
		s = strings.TrimLeftFunc(s, isSpace)
		if s == "" {
			return
		}
		end := strings.IndexFunc(s, isSpace)
		if end < 0 || n >= 0 && i == n {
			f(s)
			return
		}
		f(s[:end])
		s = s[end:]
	}
}

// format is Python's str.format for the plain fields {}, {0} and {name}.
func (e *evaluator) format(s string, args []Value, kw []kwVal) Value {
	w := e.newStr()
	next := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '}' && i+1 < len(s) && s[i+1] == '}' || c == '{' && i+1 < len(s) && s[i+1] == '{' {
			w.byte(c)
			i++
			continue
		}
		if c != '{' {
			w.byte(c)
			continue
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			e.fail("Single '{' encountered in format string")
		}
		field := s[i+1 : i+j]
		i += j
		var v Value
		switch n, err := strconv.Atoi(field); {
		case field == "":
			if next >= len(args) {
				e.fail("Replacement index %d out of range", next)
			}
			v = args[next]
			next++
		case err == nil:
			if n < 0 || n >= len(args) {
				e.fail("Replacement index %d out of range", n)
			}
			v = args[n]
		default:
			v = arg(nil, kw, 0, field, undefined{msg: "missing"})
			if _, ok := v.(undefined); ok {
				e.fail("KeyError: '%s'", field)
			}
		}
		w.writeStr(v)
	}
	return w.done()
}
