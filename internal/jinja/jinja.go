// Package jinja is a small Jinja subset for chat templates: what the
// templates of Hugging Face tokenizers and GGUF files use, rendered as
// transformers renders them (trim_blocks, lstrip_blocks, the loop controls,
// raise_exception, strftime_now and its tojson).
//
// Templates come from model files off the internet, so they are hostile
// input: every render is bounded in steps, in output bytes and in the
// bytes of the values it builds, and the template's nesting and macro
// recursion are bounded too. Past a bound, Render stops with a *LimitError.
// range() is lazy, so a loop over range(1000000000) costs steps, not memory.
package jinja

import (
	"fmt"
	"time"
)

// Limits bound one render.
type Limits struct {
	// Steps is the most evaluation steps: each statement and expression
	// evaluated, each loop iteration, each element a filter visits.
	Steps int
	// OutputBytes is the largest output, and the largest string the
	// template may build; all the strings and list entries it builds
	// together may come to 16 times as much.
	OutputBytes int
}

// DefaultLimits are far above what real templates take on long
// conversations (a thousand messages with tools take under 2% of the steps)
// and small enough that a render past them stops in well under a second.
var DefaultLimits = Limits{Steps: 5_000_000, OutputBytes: 8 << 20}

// allocFactor: the bytes of values a render builds, all told, may come to
// this many times OutputBytes.
const allocFactor = 16

// Nesting bounds, for the parser's and the evaluator's stacks.
const (
	maxNesting    = 200 // blocks and expressions in the source
	maxCallDepth  = 100 // macro calls within macro calls
	maxValueDepth = 500 // lists and dicts within each other, for walks over them
)

// Error is a template error, with its line:column position.
type Error struct {
	Pos string
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("line %s: %s", e.Pos, e.Msg) }

// LimitError is a render past one of its Limits.
type LimitError struct {
	// What is past its bound: "steps", "output bytes", "bytes of values",
	// "nested macro calls" or "nested values".
	What  string
	Limit int
	Pos   string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("line %s: the render went past its limit of %d %s", e.Pos, e.Limit, e.What)
}

// Template is a parsed template; it is safe for concurrent renders.
type Template struct {
	body []node
}

// Parse parses a template.
func Parse(src string) (*Template, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	body, err := p.parseTemplate()
	if err != nil {
		return nil, err
	}
	return &Template{body: body}, nil
}

// Render renders the template with vars: Go strings, bools, ints, floats,
// nil, []any and map[string]any (its keys in sorted order), nested, and
// json.RawMessage (decoded as Python's json.loads decodes it: objects keep
// their key order, integers stay integers).
func (t *Template) Render(vars map[string]any, lim Limits) (string, error) {
	e := &evaluator{lim: lim, now: time.Now}
	return e.render(t.body, vars)
}
