package jinja

import (
	"bytes"
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

// Value is a template value: nil (none), undefined, bool, int, float64,
// string, *list, *dict, rangeVal, *loopVal or a callable (*macroVal,
// builtin, method).
type Value = any

// undefined is a missing variable, attribute or item. As jinja2.Undefined
// (what transformers uses) it prints as "", is false, iterates as empty,
// and errors when used further: its attributes, items, arithmetic.
// Templates look up missing attributes all the time (message.tool_calls),
// so the error message is built only when it is needed.
type undefined struct {
	msg string // the message, or "" for one made from obj and key
	obj string // the type of the object without key, or "" for a name
	key Value  // the missing name, attribute or item
}

func (u undefined) hint() string {
	switch {
	case u.msg != "":
		return u.msg
	case u.obj == "":
		return fmt.Sprintf("'%s' is undefined", u.key)
	}
	return fmt.Sprintf("'%s object' has no attribute '%s'", u.obj, keyText(u.key))
}

// list is a list or a tuple.
type list struct {
	items []Value
	tuple bool
}

// dict keeps its keys in insertion order, as Python's does. Keys are
// strings, ints, floats, bools or nil.
type dict struct {
	keys []Value
	m    map[Value]Value
	ns   bool // a namespace(): {% set ns.a = x %} may assign to it
}

func newDict(n int) *dict { return &dict{m: make(map[Value]Value, n)} }

func (d *dict) set(k, v Value) {
	if _, ok := d.m[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.m[k] = v
}

// rangeVal is a lazy range(start, stop, step).
type rangeVal struct{ start, stop, step int }

func (r rangeVal) len() int {
	// In uint64, as stop-start may overflow an int.
	var span, step uint64
	switch {
	case r.step > 0 && r.start < r.stop:
		span, step = uint64(r.stop)-uint64(r.start), uint64(r.step)
	case r.step < 0 && r.start > r.stop:
		span, step = uint64(r.start)-uint64(r.stop), -uint64(r.step)
	default:
		return 0
	}
	n := span / step
	if span%step != 0 {
		n++
	}
	return int(min(n, math.MaxInt))
}

// builtin is a global function or a bound method.
type builtin func(e *evaluator, args []Value, kw []kwVal) Value

type kwVal struct {
	name string
	v    Value
}

// macroVal is a macro closed over the scope it was defined in.
type macroVal struct {
	m     *macro
	scope *scope
}

// fromGo converts a Go value to a template value.
func (e *evaluator) fromGo(v any) (Value, error) {
	switch v := v.(type) {
	case nil, bool, string, float64:
		return v, nil
	case int:
		return v, nil
	case int64:
		return int(v), nil
	case []any:
		l := &list{items: make([]Value, len(v))}
		for i, x := range v {
			c, err := e.fromGo(x)
			if err != nil {
				return nil, err
			}
			l.items[i] = c
		}
		return l, nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		d := newDict(len(v))
		for _, k := range keys {
			c, err := e.fromGo(v[k])
			if err != nil {
				return nil, err
			}
			d.set(k, c)
		}
		return d, nil
	case json.RawMessage:
		// As Python's json.loads gives it: objects keep their key order,
		// integers stay integers.
		e.scan(len(v))
		e.charge(4 * len(v)) // the values, roughly
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		x, err := e.decodeJSON(d)
		if err == nil {
			if _, err = d.Token(); err == io.EOF {
				return x, nil
			}
			err = errors.New("data after the value")
		}
		return nil, fmt.Errorf("jinja: a json.RawMessage: %w", err)
	}
	return nil, fmt.Errorf("jinja: cannot use a %T in a template", v)
}

func truth(v Value) bool {
	switch v := v.(type) {
	case nil, undefined:
		return false
	case bool:
		return v
	case int:
		return v != 0
	case float64:
		return v != 0
	case string:
		return v != ""
	case *list:
		return len(v.items) > 0
	case *dict:
		return len(v.keys) > 0
	case rangeVal:
		return v.len() > 0
	}
	return true
}

func typeName(v Value) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case undefined:
		return "Undefined"
	case bool:
		return "bool"
	case int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case *list:
		if v.(*list).tuple {
			return "tuple"
		}
		return "list"
	case *dict:
		if v.(*dict).ns {
			return "Namespace"
		}
		return "dict"
	case rangeVal:
		return "range"
	case *loopVal:
		return "LoopContext"
	case *cycler:
		return "Cycler"
	}
	return "function"
}

// strWriter builds a string within the render's bounds.
type strWriter struct {
	e *evaluator
	b []byte
}

func (w *strWriter) str(s string) {
	if len(w.b)+len(s) > w.e.lim.OutputBytes {
		w.e.limit("output bytes", w.e.lim.OutputBytes)
	}
	w.b = append(w.b, s...)
}

func (w *strWriter) byte(c byte) {
	if len(w.b) >= w.e.lim.OutputBytes {
		w.e.limit("output bytes", w.e.lim.OutputBytes)
	}
	w.b = append(w.b, c)
}

// done returns the string built, charged to the render's value bytes.
func (w *strWriter) done() string {
	w.e.chargeStr(len(w.b))
	return string(w.b)
}

// writeStr writes str(v), as Jinja prints v.
func (w *strWriter) writeStr(v Value) {
	switch v := v.(type) {
	case string:
		w.str(v)
	case undefined:
	case *list, *dict:
		w.writeRepr(v)
	default:
		w.str(scalarStr(v))
	}
}

// scalarStr is Python's str() of a value that is not a container.
func scalarStr(v Value) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case int:
		return strconv.Itoa(v)
	case float64:
		return pyFloat(v)
	case string:
		return v
	case undefined:
		return ""
	case rangeVal:
		if v.step == 1 {
			return fmt.Sprintf("range(%d, %d)", v.start, v.stop)
		}
		return fmt.Sprintf("range(%d, %d, %d)", v.start, v.stop, v.step)
	}
	return "<" + typeName(v) + ">"
}

// pyFloat formats f as Python's repr does.
func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// writeRepr writes Python's repr(v).
func (w *strWriter) writeRepr(v Value) {
	w.e.enter()
	defer w.e.leave()
	switch v := v.(type) {
	case string:
		w.str(pyRepr(v))
	case undefined:
		w.str("Undefined")
	case *list:
		open, end := "[", "]"
		if v.tuple {
			open, end = "(", ")"
		}
		w.str(open)
		for i, x := range v.items {
			if i > 0 {
				w.str(", ")
			}
			w.writeRepr(x)
		}
		if v.tuple && len(v.items) == 1 {
			w.str(",")
		}
		w.str(end)
	case *dict:
		if v.ns {
			w.str("<Namespace ")
		}
		w.str("{")
		for i, k := range v.keys {
			if i > 0 {
				w.str(", ")
			}
			w.writeRepr(k)
			w.str(": ")
			w.writeRepr(v.m[k])
		}
		w.str("}")
		if v.ns {
			w.str(">")
		}
	default:
		w.str(scalarStr(v))
	}
}

// pyRepr quotes s as Python's repr does.
func pyRepr(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			b = fmt.Appendf(b, `\x%02x`, r)
		case r > 0x7f && !unicode.IsPrint(r):
			if r > 0xffff {
				b = fmt.Appendf(b, `\U%08x`, r)
			} else {
				b = fmt.Appendf(b, `\u%04x`, r)
			}
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return string(append(b, q))
}

// writeJSON writes v as transformers' tojson does: Python's json.dumps
// with ensure_ascii off; indent < 0 is none.
func (w *strWriter) writeJSON(v Value, indent, depth int) {
	w.e.enter()
	defer w.e.leave()
	switch v := v.(type) {
	case nil:
		w.str("null")
	case bool:
		if v {
			w.str("true")
		} else {
			w.str("false")
		}
	case int:
		w.str(strconv.Itoa(v))
	case float64:
		switch {
		case math.IsInf(v, 1):
			w.str("Infinity")
		case math.IsInf(v, -1):
			w.str("-Infinity")
		case math.IsNaN(v):
			w.str("NaN")
		default:
			w.str(pyFloat(v))
		}
	case string:
		w.jsonString(v)
	case *list:
		w.jsonItems('[', ']', len(v.items), indent, depth, func(i int) {
			w.writeJSON(v.items[i], indent, depth+1)
		})
	case *dict:
		w.jsonItems('{', '}', len(v.keys), indent, depth, func(i int) {
			k := v.keys[i]
			switch k := k.(type) {
			case string:
				w.jsonString(k)
			case nil, bool, int, float64:
				w.byte('"')
				w.writeJSON(k, -1, 0)
				w.byte('"')
			}
			w.str(": ")
			w.writeJSON(v.m[k], indent, depth+1)
		})
	default:
		w.e.fail("Object of type %s is not JSON serializable", typeName(v))
	}
}

// jsonItems writes n items between open and end, spaced as json.dumps
// spaces them.
func (w *strWriter) jsonItems(open, end byte, n, indent, depth int, item func(int)) {
	w.byte(open)
	for i := range n {
		if i > 0 {
			w.byte(',')
			if indent < 0 {
				w.byte(' ')
			}
		}
		if indent >= 0 {
			w.newline(indent, depth+1)
		}
		item(i)
	}
	if n > 0 && indent >= 0 {
		w.newline(indent, depth)
	}
	w.byte(end)
}

func (w *strWriter) newline(indent, depth int) {
	w.byte('\n')
	for range depth * indent {
		w.byte(' ')
	}
}

func (w *strWriter) jsonString(s string) {
	w.byte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		w.str(s[start:i])
		start = i + 1
		switch c {
		case '"':
			w.str(`\"`)
		case '\\':
			w.str(`\\`)
		case '\n':
			w.str(`\n`)
		case '\r':
			w.str(`\r`)
		case '\t':
			w.str(`\t`)
		case '\b':
			w.str(`\b`)
		case '\f':
			w.str(`\f`)
		default:
			w.str(fmt.Sprintf(`\u%04x`, c))
		}
	}
	w.str(s[start:])
	w.byte('"')
}

// num returns v as a number, with ok false where it is none.
func num(v Value) (i int, f float64, isFloat, ok bool) {
	switch v := v.(type) {
	case bool:
		if v {
			return 1, 1, false, true
		}
		return 0, 0, false, true
	case int:
		return v, float64(v), false, true
	case float64:
		return 0, v, true, true
	}
	return 0, 0, false, false
}

// equal is Python's ==.
func (e *evaluator) equal(a, b Value) bool {
	e.enter()
	defer e.leave()
	if _, _, _, ok := num(a); ok {
		if _, _, _, ok := num(b); ok {
			ai, af, afl, _ := num(a)
			bi, bf, bfl, _ := num(b)
			if afl || bfl {
				return af == bf
			}
			return ai == bi
		}
		return false
	}
	switch a := a.(type) {
	case nil:
		return b == nil
	case undefined:
		_, ok := b.(undefined)
		return ok
	case string:
		s, ok := b.(string)
		if !ok || len(a) != len(s) {
			return false
		}
		e.scan(len(a))
		return a == s
	case *list:
		l, ok := b.(*list)
		return ok && slices.EqualFunc(a.items, l.items, e.equal)
	case *dict:
		d, ok := b.(*dict)
		if !ok || len(a.keys) != len(d.keys) {
			return false
		}
		for _, k := range a.keys {
			v, ok := d.m[k]
			if !ok || !e.equal(a.m[k], v) {
				return false
			}
		}
		return true
	case rangeVal:
		r, ok := b.(rangeVal)
		return ok && a == r
	case builtin:
		return false // Go funcs do not compare
	}
	return a == b
}

// less is Python's <; ok is false for values it does not order.
func (e *evaluator) less(a, b Value) (lt, ok bool) {
	e.enter()
	defer e.leave()
	_, af, afl, aok := num(a)
	_, bf, bfl, bok := num(b)
	if aok && bok {
		if afl || bfl {
			return af < bf, true
		}
		ai, _, _, _ := num(a)
		bi, _, _, _ := num(b)
		return ai < bi, true
	}
	switch a := a.(type) {
	case string:
		if s, ok := b.(string); ok {
			e.scan(min(len(a), len(s)))
			return a < s, true
		}
	case *list:
		if l, ok := b.(*list); ok {
			for i := 0; i < len(a.items) && i < len(l.items); i++ {
				if !e.equal(a.items[i], l.items[i]) {
					return e.less(a.items[i], l.items[i])
				}
			}
			return len(a.items) < len(l.items), true
		}
	}
	return false, false
}

// hashable reports whether v may be a dict key.
func hashable(v Value) bool {
	switch v.(type) {
	case nil, bool, int, float64, string:
		return true
	}
	return false
}

// runeLen is Python's len() of a string.
func (e *evaluator) runeLen(s string) int {
	e.scan(len(s))
	return utf8.RuneCountInString(s)
}
