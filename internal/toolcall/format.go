// Package toolcall knows how model families write OpenAI tool calls in
// their output: it picks a family's format from its chat template and
// vocabulary, says how one call is spelled (so that decoding can be
// constrained to it), and parses a model's output, whole or streamed, into
// content and calls. It does no I/O.
package toolcall

import (
	"math/rand/v2"
	"strings"
)

// Format is how a model family writes tool calls.
type Format int

const (
	// Hermes is the format of Hermes, Qwen2.5 and Qwen3: each call a JSON
	// object between <tool_call> and </tool_call> lines, anywhere in the
	// turn, several in a row for parallel calls.
	Hermes Format = iota
	// Llama3 is Llama 3.x's JSON tool calling: the whole turn is a call's
	// JSON object, with "parameters" for the arguments, optionally after
	// <|python_tag|>; several are separated by ";".
	Llama3
)

func (f Format) String() string {
	if f == Llama3 {
		return "llama3"
	}
	return "hermes"
}

// Shape is how one call is spelled, for a grammar to build on: Prefix,
// then the JSON object written exactly
//
//	{"<NameKey>": "<name>", "<ArgsKey>": <arguments object>}
//
// then Suffix. Parallel calls are joined by Separator.
type Shape struct {
	Prefix    string
	NameKey   string
	ArgsKey   string
	Suffix    string
	Separator string
}

// Shape returns how f spells a call.
func (f Format) Shape() Shape {
	if f == Llama3 {
		return Shape{NameKey: "name", ArgsKey: "parameters", Separator: "; "}
	}
	return Shape{Prefix: "<tool_call>\n", NameKey: "name", ArgsKey: "arguments", Suffix: "\n</tool_call>", Separator: "\n"}
}

// Detect picks the format a chat template asks for, from its source and,
// where the source gives no sign, from hasToken (whether the vocabulary has
// a token, such as "<tool_call>"; nil for none). Hermes is the default: it
// is what a template that renders no tools is taught by a preamble.
func Detect(templateSource string, hasToken func(string) bool) Format {
	has := func(s string) bool { return hasToken != nil && hasToken(s) }
	src := templateSource
	switch {
	case strings.Contains(src, "<tool_call>"):
		return Hermes
	case strings.Contains(src, "<|python_tag|>"),
		strings.Contains(src, `"parameters"`) && (strings.Contains(src, "<|start_header_id|>") || has("<|start_header_id|>")):
		return Llama3
	case has("<tool_call>"):
		return Hermes
	case has("<|python_tag|>"):
		return Llama3
	}
	return Hermes
}

// Call is a parsed tool call. Arguments is a JSON object's text.
type Call struct {
	ID, Name, Arguments string
}

const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// IDs returns a source of call ids, "call_" and 24 letters and digits,
// drawn from r (the global source when r is nil).
func IDs(r *rand.Rand) func() string {
	intN := rand.IntN
	if r != nil {
		intN = r.IntN
	}
	return func() string {
		b := []byte("call_")
		for range 24 {
			b = append(b, idChars[intN(len(idChars))])
		}
		return string(b)
	}
}
