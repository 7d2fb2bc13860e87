package constrain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// A schema's output is compact JSON with the properties in the order the
// schema declares them (as OpenAI, xgrammar and outlines write them),
// allowing one space after ':' and ','. Lengths nobody bounds are left
// unbounded: Matcher.Mask closes the output in time for max_tokens.
const (
	maxDigits   = 15 // whole and fraction digits of a number
	maxRefDepth = 3  // expansions of one $ref inside itself
	anyDepth    = 3  // nesting of a value the schema says nothing about
)

// obj is a JSON object that remembers its keys' order.
type obj struct {
	keys []string
	m    map[string]any
}

// decodeOrdered decodes JSON like encoding/json into any, except that
// objects are *obj.
func decodeOrdered(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	v, err := decodeValue(d)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err == nil {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func decodeValue(d *json.Decoder) (any, error) {
	t, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t {
	case json.Delim('{'):
		o := &obj{m: map[string]any{}}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeValue(d)
			if err != nil {
				return nil, err
			}
			key := k.(string)
			if _, dup := o.m[key]; !dup {
				o.keys = append(o.keys, key)
			}
			o.m[key] = v
		}
		_, err := d.Token()
		return o, err
	case json.Delim('['):
		var a []any
		for d.More() {
			v, err := decodeValue(d)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := d.Token()
		return a, err
	}
	return t, nil
}

// encodeValue writes v (from decodeOrdered) as compact JSON, keys in their
// order.
func encodeValue(w *bytes.Buffer, v any) {
	switch v := v.(type) {
	case *obj:
		w.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				w.WriteByte(',')
			}
			encodeString(w, k)
			w.WriteByte(':')
			encodeValue(w, v.m[k])
		}
		w.WriteByte('}')
	case []any:
		w.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				w.WriteByte(',')
			}
			encodeValue(w, x)
		}
		w.WriteByte(']')
	case string:
		encodeString(w, v)
	case json.Number:
		w.WriteString(v.String())
	case bool:
		w.WriteString(strconv.FormatBool(v))
	default:
		w.WriteString("null")
	}
}

func encodeString(w *bytes.Buffer, s string) {
	e := json.NewEncoder(w)
	e.SetEscapeHTML(false)
	_ = e.Encode(s)         // a string always encodes
	w.Truncate(w.Len() - 1) // the encoder's newline
}

// SchemaError is a JSON schema the compiler cannot hold output to.
type SchemaError struct {
	Path string // where in the schema, as a JSON pointer
	Msg  string
}

func (e *SchemaError) Error() string {
	if e.Path == "" {
		return "json schema: " + e.Msg
	}
	return "json schema at " + e.Path + ": " + e.Msg
}

// schemaCompiler turns one schema into automaton states.
type schemaCompiler struct {
	b     *builder
	root  any
	err   error
	inRef map[string]int // $ref expansions under way
}

func (c *schemaCompiler) fail(path, format string, args ...any) int32 {
	if c.err == nil {
		c.err = &SchemaError{Path: path, Msg: fmt.Sprintf(format, args...)}
	}
	return c.b.state()
}

// space reads the optional space after ':' and ','.
func (c *schemaCompiler) space(from int32) int32 {
	return c.b.opt(from, func(s int32) int32 { return c.b.lit(s, " ") })
}

// value reads one JSON value that schema s accepts.
func (c *schemaCompiler) value(from int32, s any, path string) int32 {
	if c.err != nil || c.b.big {
		return from
	}
	switch s := s.(type) {
	case bool:
		if s {
			return c.anyValue(from, anyDepth)
		}
		return c.b.state() // false accepts nothing
	case *obj:
		return c.object(from, s, path)
	}
	return c.fail(path, "a schema must be an object or a boolean")
}

func (c *schemaCompiler) object(from int32, s *obj, path string) int32 {
	if ref, ok := s.m["$ref"]; ok {
		return c.ref(from, ref, path)
	}
	if all, ok := s.m["allOf"]; ok {
		merged, err := mergeAll(s, all)
		if err != "" {
			return c.fail(path+"/allOf", "%s", err)
		}
		return c.object(from, merged, path)
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts, ok := s.m[k].([]any); ok {
			brs := make([]func(int32) int32, len(alts))
			for i, a := range alts {
				a = withSiblings(s, k, a)
				p := fmt.Sprintf("%s/%s/%d", path, k, i)
				brs[i] = func(st int32) int32 { return c.value(st, a, p) }
			}
			return c.b.alt(from, brs...)
		}
	}
	for _, k := range []string{"not", "if", "then", "else", "dependentSchemas", "patternProperties", "uniqueItems", "contains", "propertyNames"} {
		if _, ok := s.m[k]; ok {
			return c.fail(path, "the keyword %q is not supported; remove it", k)
		}
	}
	if v, ok := s.m["const"]; ok {
		return c.literal(from, v)
	}
	if vs, ok := s.m["enum"]; ok {
		list, ok := vs.([]any)
		if !ok || len(list) == 0 {
			return c.fail(path+"/enum", "enum must be a non-empty array")
		}
		brs := make([]func(int32) int32, len(list))
		for i, v := range list {
			brs[i] = func(st int32) int32 { return c.literal(st, v) }
		}
		return c.b.alt(from, brs...)
	}
	types, err := typesOf(s)
	if err != "" {
		return c.fail(path+"/type", "%s", err)
	}
	brs := make([]func(int32) int32, 0, len(types))
	for _, t := range types {
		brs = append(brs, func(st int32) int32 { return c.typed(st, t, s, path) })
	}
	if len(brs) == 1 {
		return brs[0](from)
	}
	return c.b.alt(from, brs...)
}

// withSiblings adds the keywords beside anyOf (a description, or a type
// that each branch narrows) to branch a.
func withSiblings(s *obj, key string, a any) any {
	ao, ok := a.(*obj)
	if !ok || len(s.keys) == 1 {
		return a
	}
	out := &obj{m: map[string]any{}}
	for _, k := range s.keys {
		if k != key && k != "$defs" && k != "definitions" {
			out.keys = append(out.keys, k)
			out.m[k] = s.m[k]
		}
	}
	for _, k := range ao.keys {
		if _, ok := out.m[k]; !ok {
			out.keys = append(out.keys, k)
		}
		out.m[k] = ao.m[k]
	}
	return out
}

// mergeAll folds allOf's schemas into one: their properties and required
// lists are joined, other keywords taken from the last that has them.
func mergeAll(s *obj, all any) (*obj, string) {
	list, ok := all.([]any)
	if !ok || len(list) == 0 {
		return nil, "allOf must be a non-empty array"
	}
	out := &obj{m: map[string]any{}}
	props := &obj{m: map[string]any{}}
	var required []any
	add := func(o *obj) {
		for _, k := range o.keys {
			switch k {
			case "allOf":
			case "properties":
				if p, ok := o.m[k].(*obj); ok {
					for _, pk := range p.keys {
						if _, ok := props.m[pk]; !ok {
							props.keys = append(props.keys, pk)
						}
						props.m[pk] = p.m[pk]
					}
				}
			case "required":
				r, _ := o.m[k].([]any)
				required = append(required, r...)
			default:
				if _, ok := out.m[k]; !ok {
					out.keys = append(out.keys, k)
				}
				out.m[k] = o.m[k]
			}
		}
	}
	add(s)
	for _, x := range list {
		o, ok := x.(*obj)
		if !ok {
			return nil, "allOf's schemas must be objects"
		}
		if _, ok := o.m["$ref"]; ok {
			return nil, "$ref inside allOf is not supported; inline the definition"
		}
		add(o)
	}
	if len(props.keys) > 0 {
		out.keys = append(out.keys, "properties")
		out.m["properties"] = props
	}
	if len(required) > 0 {
		out.keys = append(out.keys, "required")
		out.m["required"] = required
	}
	return out, ""
}

func (c *schemaCompiler) ref(from int32, ref any, path string) int32 {
	r, ok := ref.(string)
	if !ok || !strings.HasPrefix(r, "#") {
		return c.fail(path+"/$ref", "only local references (#/$defs/NAME) are supported")
	}
	target := c.root
	if r != "#" {
		for _, part := range strings.Split(strings.TrimPrefix(r, "#/"), "/") {
			part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
			o, ok := target.(*obj)
			if !ok {
				return c.fail(path+"/$ref", "%s does not lead to a schema", r)
			}
			if target, ok = o.m[part]; !ok {
				return c.fail(path+"/$ref", "%s does not lead to a schema", r)
			}
		}
	}
	// A recursive schema is unrolled a few levels; below that the
	// reference accepts nothing, so an optional field, an empty array or
	// another branch ends it.
	if c.inRef[r] >= maxRefDepth {
		return c.b.state()
	}
	c.inRef[r]++
	end := c.value(from, target, r)
	c.inRef[r]--
	return end
}

// literal reads exactly v's JSON.
func (c *schemaCompiler) literal(from int32, v any) int32 {
	var w bytes.Buffer
	encodeValue(&w, v)
	return c.b.lit(from, w.String())
}

// typesOf lists the types s allows: its "type", or what its keywords imply.
func typesOf(s *obj) ([]string, string) {
	known := func(t string) bool {
		switch t {
		case "object", "array", "string", "number", "integer", "boolean", "null":
			return true
		}
		return false
	}
	switch t := s.m["type"].(type) {
	case string:
		if !known(t) {
			return nil, fmt.Sprintf("unknown type %q", t)
		}
		return []string{t}, ""
	case []any:
		var out []string
		for _, x := range t {
			ts, ok := x.(string)
			if !ok || !known(ts) {
				return nil, fmt.Sprintf("unknown type %v", x)
			}
			out = append(out, ts)
		}
		if len(out) == 0 {
			return nil, "type must not be empty"
		}
		return out, ""
	case nil:
	default:
		return nil, "type must be a string or an array of strings"
	}
	for _, k := range []string{"properties", "additionalProperties", "required"} {
		if _, ok := s.m[k]; ok {
			return []string{"object"}, ""
		}
	}
	for _, k := range []string{"items", "prefixItems", "minItems", "maxItems"} {
		if _, ok := s.m[k]; ok {
			return []string{"array"}, ""
		}
	}
	for _, k := range []string{"pattern", "minLength", "maxLength", "format"} {
		if _, ok := s.m[k]; ok {
			return []string{"string"}, ""
		}
	}
	return []string{"object", "array", "string", "number", "boolean", "null"}, ""
}

func (c *schemaCompiler) typed(from int32, t string, s *obj, path string) int32 {
	switch t {
	case "object":
		return c.objectValue(from, s, path)
	case "array":
		return c.array(from, s, path)
	case "string":
		return c.str(from, s, path)
	case "number", "integer":
		return c.number(from, s, t == "integer", path)
	case "boolean":
		return c.b.alt(from,
			func(st int32) int32 { return c.b.lit(st, "true") },
			func(st int32) int32 { return c.b.lit(st, "false") })
	}
	return c.b.lit(from, "null")
}

func (c *schemaCompiler) objectValue(from int32, s *obj, path string) int32 {
	props, _ := s.m["properties"].(*obj)
	if props == nil || len(props.keys) == 0 {
		// No named properties: a map from any key to additionalProperties
		// (a bounded generic value when that says nothing).
		var item any = true
		if ap, ok := s.m["additionalProperties"]; ok {
			item = ap
		}
		if b, ok := item.(bool); ok && !b {
			return c.b.lit(from, "{}")
		}
		member := func(st int32) int32 {
			st = c.stringValue(st)
			st = c.space(c.b.lit(st, ":"))
			if b, ok := item.(bool); ok && b {
				return c.anyValue(st, anyDepth-1)
			}
			return c.value(st, item, path+"/additionalProperties")
		}
		st := c.b.lit(from, "{")
		st = c.b.sepRepeat(st, 0, -1, member, func(x int32) int32 { return c.space(c.b.lit(x, ",")) })
		return c.b.lit(st, "}")
	}
	required := map[string]bool{}
	if r, ok := s.m["required"].([]any); ok {
		for _, x := range r {
			if k, ok := x.(string); ok {
				required[k] = true
			}
		}
	}
	// Two states before each property: none written yet (a) and some
	// written (w), so that commas go only between properties.
	b := c.b
	a, w := b.lit(from, "{"), b.state()
	for _, k := range props.keys {
		entry := b.state()
		b.eps(a, entry)
		b.eps(c.space(b.lit(w, ",")), entry)
		st := c.stringLiteral(entry, k)
		st = c.space(b.lit(st, ":"))
		st = c.value(st, props.m[k], path+"/properties/"+k)
		na, nw := b.state(), b.state()
		b.eps(st, nw)
		if !required[k] {
			b.eps(a, na)
			b.eps(w, nw)
		}
		a, w = na, nw
	}
	end := b.state()
	b.eps(b.lit(a, "}"), end)
	b.eps(b.lit(w, "}"), end)
	return end
}

func (c *schemaCompiler) stringLiteral(from int32, s string) int32 {
	var w bytes.Buffer
	encodeString(&w, s)
	return c.b.lit(from, w.String())
}

func (c *schemaCompiler) array(from int32, s *obj, path string) int32 {
	lo, hi, err := bounds(s, "minItems", "maxItems")
	if err != "" {
		return c.fail(path, "%s", err)
	}
	var items any = true
	if it, ok := s.m["items"]; ok {
		items = it
	}
	prefix, _ := s.m["prefixItems"].([]any)
	b := c.b
	sep := func(st int32) int32 { return c.space(b.lit(st, ",")) }
	item := func(st int32) int32 { return c.value(st, items, path+"/items") }
	if b, ok := items.(bool); ok && b {
		item = func(st int32) int32 { return c.anyValue(st, anyDepth-1) }
	}
	st := b.lit(from, "[")
	if len(prefix) == 0 {
		st = b.sepRepeat(st, lo, hi, item, sep)
		return b.lit(st, "]")
	}
	// prefixItems are written in order; an array may stop after any of
	// them once minItems are there.
	end := b.state()
	for i, p := range prefix {
		if i > 0 {
			st = sep(st)
		}
		st = c.value(st, p, fmt.Sprintf("%s/prefixItems/%d", path, i))
		if n := i + 1; n >= lo && (hi < 0 || n <= hi) {
			b.eps(b.lit(st, "]"), end)
		}
	}
	if x, ok := items.(bool); ok && !x {
		return end
	}
	restLo, restHi := max(lo-len(prefix), 1), hi-len(prefix)
	if hi < 0 {
		restHi = -1
	}
	if restHi != 0 && (hi < 0 || restHi > 0) {
		rest := b.sepRepeat(sep(st), restLo, restHi, item, sep)
		b.eps(b.lit(rest, "]"), end)
	}
	return end
}

// bounds reads a pair of non-negative size bounds; hi is -1 when absent.
func bounds(s *obj, minKey, maxKey string) (lo, hi int, err string) {
	hi = -1
	get := func(k string) (int, bool, string) {
		v, ok := s.m[k]
		if !ok {
			return 0, false, ""
		}
		n, isNum := v.(json.Number)
		i, e := strconv.Atoi(string(n))
		if !isNum || e != nil || i < 0 {
			return 0, false, fmt.Sprintf("%s must be a non-negative integer", k)
		}
		return i, true, ""
	}
	lo, _, err = get(minKey)
	if err != "" {
		return
	}
	if h, ok, e := get(maxKey); e != "" {
		return 0, 0, e
	} else if ok {
		hi = h
	}
	if hi >= 0 && lo > hi {
		return 0, 0, fmt.Sprintf("%s is above %s", minKey, maxKey)
	}
	if lo > maxRepeat || hi > maxRepeat {
		return 0, 0, fmt.Sprintf("%s and %s above %d are not supported", minKey, maxKey, maxRepeat)
	}
	return lo, hi, ""
}

// Patterns for the string formats OpenAI's strict mode lists. Dates leave
// out February 29th rather than know leap years.
const (
	datePattern = `[0-9]{4}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)`
	timePattern = `([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])`
	atomPattern = `[a-zA-Z0-9_%+-]{1,12}`
)

var formats = map[string]string{
	"date":      datePattern,
	"time":      timePattern,
	"date-time": datePattern + "T" + timePattern,
	"uuid":      `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`,
	"email":     atomPattern + `(\.` + atomPattern + `){0,3}@[a-zA-Z0-9]{1,16}(\.[a-zA-Z0-9]{1,16}){0,3}\.[a-zA-Z]{2,8}`,
	"ipv4":      `((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])`,
	"hostname":  `[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?){0,3}`,
}

func (c *schemaCompiler) str(from int32, s *obj, path string) int32 {
	lo, hi, err := bounds(s, "minLength", "maxLength")
	if err != "" {
		return c.fail(path, "%s", err)
	}
	pattern, hasPattern := s.m["pattern"].(string)
	if f, ok := s.m["format"].(string); ok && !hasPattern {
		if p, known := formats[f]; known {
			pattern, hasPattern = "^"+p+"$", true
		}
	}
	st := c.b.lit(from, `"`)
	if !hasPattern {
		char := c.stringChar
		if hi >= 0 {
			char = c.bmpChar
		}
		st = c.b.repeat(st, lo, hi, char)
		return c.b.lit(st, `"`)
	}
	if _, ok := s.m["minLength"]; ok {
		return c.fail(path, "pattern (or format) together with minLength or maxLength is not supported; put the length in the pattern")
	}
	if _, ok := s.m["maxLength"]; ok {
		return c.fail(path, "pattern (or format) together with minLength or maxLength is not supported; put the length in the pattern")
	}
	re, perr := parseRegex(pattern)
	if perr != nil {
		return c.fail(path+"/pattern", "%v", perr)
	}
	// A schema pattern matches anywhere in the string unless anchored.
	if !anchored(re, true) {
		st = c.b.star(st, c.stringChar)
	}
	st, perr = c.b.regex(st, re, true)
	if perr != nil {
		return c.fail(path+"/pattern", "%v", perr)
	}
	if !anchored(re, false) {
		st = c.b.star(st, c.stringChar)
	}
	return c.b.lit(st, `"`)
}

// stringChar reads one character of a JSON string's content, escapes
// included. A \u escape never writes half a surrogate pair: characters
// beyond the BMP are written as themselves.
func (c *schemaCompiler) stringChar(from int32) int32 {
	return c.char(from, 0x10FFFF)
}

// bmpChar is stringChar within the BMP. A string with a maxLength is
// written in it: JSON Schema counts characters but JavaScript (zod's
// .max) counts UTF-16 units, two for a character beyond the BMP, and
// output that both accept must agree on the count.
func (c *schemaCompiler) bmpChar(from int32) int32 {
	return c.char(from, 0xFFFF)
}

func (c *schemaCompiler) char(from int32, top rune) int32 {
	b := c.b
	hex := func(s int32) int32 { return b.runes(s, []rune{'0', '9', 'a', 'f', 'A', 'F'}) }
	return b.alt(from,
		func(s int32) int32 { return b.runes(s, []rune{0x20, '"' - 1, '"' + 1, '\\' - 1, '\\' + 1, top}) },
		func(s int32) int32 {
			s = b.lit(s, `\`)
			return b.alt(s,
				func(s int32) int32 {
					return b.runes(s, []rune{'"', '"', '\\', '\\', '/', '/', 'b', 'b', 'f', 'f', 'n', 'n', 'r', 'r', 't', 't'})
				},
				func(s int32) int32 {
					s = b.lit(s, "u")
					// Not D800-DFFF: the first digit is not d, or the
					// second is below 8.
					s = b.alt(s,
						func(s int32) int32 { return hex(b.runes(s, []rune{'0', '9', 'a', 'c', 'e', 'f', 'A', 'C', 'E', 'F'})) },
						func(s int32) int32 { return b.runes(b.runes(s, []rune{'d', 'd', 'D', 'D'}), []rune{'0', '7'}) })
					return hex(hex(s))
				})
		})
}

// stringValue reads any JSON string.
func (c *schemaCompiler) stringValue(from int32) int32 {
	st := c.b.star(c.b.lit(from, `"`), c.stringChar)
	return c.b.lit(st, `"`)
}

// anyValue reads any JSON value nested at most depth containers deep.
func (c *schemaCompiler) anyValue(from int32, depth int) int32 {
	b := c.b
	brs := []func(int32) int32{
		c.stringValue,
		func(s int32) int32 { return c.number(s, &obj{m: map[string]any{}}, false, "") },
		func(s int32) int32 { return b.lit(s, "true") },
		func(s int32) int32 { return b.lit(s, "false") },
		func(s int32) int32 { return b.lit(s, "null") },
	}
	if depth > 0 {
		sep := func(s int32) int32 { return c.space(b.lit(s, ",")) }
		item := func(s int32) int32 { return c.anyValue(s, depth-1) }
		brs = append(brs,
			func(s int32) int32 {
				s = b.sepRepeat(b.lit(s, "["), 0, -1, item, sep)
				return b.lit(s, "]")
			},
			func(s int32) int32 {
				member := func(s int32) int32 { return item(c.space(b.lit(c.stringValue(s), ":"))) }
				s = b.sepRepeat(b.lit(s, "{"), 0, -1, member, sep)
				return b.lit(s, "}")
			})
	}
	return b.alt(from, brs...)
}

// number reads a JSON number (an integer with integer) within the schema's
// minimum and maximum. An unbounded number has up to maxDigits digits
// before and after its point. A bounded one is written with at most
// maxFraction decimals, which makes its values whole multiples of a power
// of ten and the bounds exact.
func (c *schemaCompiler) number(from int32, s *obj, integer bool, path string) int32 {
	var lo, hi float64
	var hasLo, hasHi, loOpen, hiOpen bool
	for _, k := range []string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} {
		v, ok := s.m[k]
		if !ok {
			continue
		}
		n, isNum := v.(json.Number)
		f, err := strconv.ParseFloat(string(n), 64)
		if !isNum || err != nil {
			return c.fail(path+"/"+k, "%s must be a number", k)
		}
		switch k {
		case "minimum", "exclusiveMinimum":
			if !hasLo || f > lo || f == lo && k == "exclusiveMinimum" {
				lo, hasLo, loOpen = f, true, k == "exclusiveMinimum"
			}
		default:
			if !hasHi || f < hi || f == hi && k == "exclusiveMaximum" {
				hi, hasHi, hiOpen = f, true, k == "exclusiveMaximum"
			}
		}
	}
	b := c.b
	digit := func(s int32) int32 { return b.rng(s, '0', '9') }
	if !hasLo && !hasHi {
		st := b.opt(from, func(s int32) int32 { return b.lit(s, "-") })
		st = b.intRange(st, 0, maxWhole)
		if integer {
			return st
		}
		return b.opt(st, func(s int32) int32 { return b.repeat(b.lit(s, "."), 1, maxDigits, digit) })
	}
	decimals := maxFraction
	if integer {
		decimals = 0
	}
	var brs []func(int32) int32
	for d := 0; d <= decimals; d++ {
		// The values are m/10^d for whole m in [mlo, mhi].
		scale := math.Pow10(d)
		limit := float64(maxWhole)
		mlo, mhi := -limit, limit
		if hasLo {
			mlo = max(mlo, boundAbove(lo*scale, loOpen))
		}
		if hasHi {
			mhi = min(mhi, -boundAbove(-hi*scale, hiOpen))
		}
		if mlo > mhi {
			continue
		}
		// A fraction's last digit is not 0, so that each value is written
		// one way (and 1.50 is 1.5 with one decimal).
		last := d > 0
		if mhi >= 0 {
			a, z := int64(max(mlo, 0)), int64(mhi)
			brs = append(brs, func(s int32) int32 { return b.decimal(s, a, z, d, last) })
		}
		if mlo < 0 {
			a, z := int64(max(-mhi, 1)), int64(-mlo)
			brs = append(brs, func(s int32) int32 { return b.decimal(b.lit(s, "-"), a, z, d, last) })
		}
	}
	if len(brs) == 0 {
		return c.fail(path, "no number lies within minimum and maximum; widen the range")
	}
	return b.alt(from, brs...)
}

// boundAbove is the least whole number at or above x (above it when
// open), with x's rounding error forgiven.
func boundAbove(x float64, open bool) float64 {
	if r := math.Round(x); math.Abs(x-r) <= 1e-9*max(1, math.Abs(x)) {
		if open {
			return r + 1
		}
		return r
	}
	return math.Ceil(x)
}

// Digits of numbers: the most whole digits of any number, and decimals of
// a bounded one.
const (
	maxWhole    = 999_999_999_999_999 // maxDigits nines
	maxFraction = 6
)

// decimal reads m/10^d for whole m in [lo, hi] (non-negative), written with
// d decimals; with nonzero the last decimal is not 0.
func (b *builder) decimal(from int32, lo, hi int64, d int, nonzero bool) int32 {
	if d == 0 {
		return b.intRange(from, lo, hi)
	}
	end := b.state()
	// By the number of digits written, at least d+1 ("0.05" for 5, d=2).
	for w := d + 1; w <= maxDigits && !b.big; w++ {
		first, last := int64(math.Pow10(w-1)), int64(math.Pow10(w))-1
		if w == d+1 {
			first = 0
		}
		a, z := max(lo, first), min(hi, last)
		if a > z {
			continue
		}
		st := b.digits(from, fmt.Sprintf("%0*d", w, a), fmt.Sprintf("%0*d", w, z), w-d, nonzero)
		b.eps(st, end)
	}
	return end
}

// intRange reads the decimal digits of a whole number in [lo, hi] (both
// non-negative), without leading zeros.
func (b *builder) intRange(from int32, lo, hi int64) int32 {
	end := b.state()
	for n := 1; n <= maxDigits && !b.big; n++ {
		first, last := int64(math.Pow10(n-1)), int64(math.Pow10(n))-1
		if n == 1 {
			first = 0
		}
		a, z := max(lo, first), min(hi, last)
		if a > z {
			continue
		}
		b.eps(b.digits(from, fmt.Sprintf("%0*d", n, a), fmt.Sprintf("%0*d", n, z), -1, false), end)
	}
	return end
}

// digits reads the digit strings of one length between a and z, with a
// '.' before digit point (none when point < 0); with nonzero the last digit
// is not 0.
func (b *builder) digits(from int32, a, z string, point int, nonzero bool) int32 {
	if point == 0 {
		from = b.lit(from, ".")
	}
	if a == "" {
		return from
	}
	lastLo := byte('0')
	if nonzero && len(a) == 1 {
		lastLo = '1'
	}
	one := func(s int32, lo, hi byte) int32 {
		lo = max(lo, lastLo)
		if lo > hi {
			return b.state() // nothing reaches it
		}
		return b.rng(s, lo, hi)
	}
	if a[0] == z[0] {
		return b.digits(one(from, a[0], a[0]), a[1:], z[1:], point-1, nonzero)
	}
	zeros, nines := strings.Repeat("0", len(a)-1), strings.Repeat("9", len(a)-1)
	if a[1:] == zeros && z[1:] == nines {
		// Every digit after the first may be anything: no branches.
		s := one(from, a[0], z[0])
		for i := 1; i < len(a); i++ {
			if point == i {
				s = b.lit(s, ".")
			}
			lo := byte('0')
			if nonzero && i == len(a)-1 {
				lo = '1'
			}
			s = b.rng(s, lo, '9')
		}
		return s
	}
	brs := []func(int32) int32{
		func(s int32) int32 { return b.digits(one(s, a[0], a[0]), a[1:], nines, point-1, nonzero) },
		func(s int32) int32 { return b.digits(one(s, z[0], z[0]), zeros, z[1:], point-1, nonzero) },
	}
	if a[0]+1 <= z[0]-1 {
		brs = append(brs, func(s int32) int32 {
			return b.digits(one(s, a[0]+1, z[0]-1), zeros, nines, point-1, nonzero)
		})
	}
	return b.alt(from, brs...)
}
