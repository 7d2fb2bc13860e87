package constrain

import "fmt"

// Tool is a function a model may call: its name and its parameters' JSON
// schema (nil: any JSON object).
type Tool struct {
	Name       string
	Parameters []byte
}

// CallShape is how a model family writes one tool call: Prefix, then the
// JSON object {"<NameKey>": "<name>", "<ArgsKey>": <arguments>}, then
// Suffix; Separator goes between parallel calls.
type CallShape struct {
	Prefix, NameKey, ArgsKey, Suffix, Separator string
}

// CompileToolCalls is the language of tool calls alone, as tool_choice
// "required" or a named function asks: one call of one of tools (or, with
// parallel, one or more), each call's arguments held to its function's
// schema.
func CompileToolCalls(shape CallShape, tools []Tool, parallel bool) (*Language, error) {
	if len(tools) == 0 {
		return nil, fmt.Errorf("no tools to call")
	}
	b := newBuilder()
	var err error
	call := func(from int32) int32 {
		brs := make([]func(int32) int32, len(tools))
		for i, t := range tools {
			brs[i] = func(s int32) int32 {
				var root any = &obj{keys: []string{"type"}, m: map[string]any{"type": "object"}}
				if len(t.Parameters) > 0 {
					r, e := decodeOrdered(t.Parameters)
					if e != nil {
						err = fmt.Errorf("the parameters of %q are not valid JSON: %v", t.Name, e)
						return s
					}
					root = r
				}
				c := &schemaCompiler{b: b, root: root, inRef: map[string]int{}}
				s = b.lit(s, shape.Prefix+"{")
				s = c.stringLiteral(s, shape.NameKey)
				s = c.space(b.lit(s, ":"))
				s = c.stringLiteral(s, t.Name)
				s = c.space(b.lit(s, ","))
				s = c.stringLiteral(s, shape.ArgsKey)
				s = c.space(b.lit(s, ":"))
				s = c.value(s, root, "")
				if c.err != nil && err == nil {
					err = fmt.Errorf("the parameters of %q: %w", t.Name, c.err)
				}
				return b.lit(s, "}"+shape.Suffix)
			}
		}
		return b.alt(from, brs...)
	}
	end := call(0)
	if parallel {
		end = b.star(end, func(s int32) int32 { return call(b.lit(s, shape.Separator)) })
	}
	if err != nil {
		return nil, err
	}
	return newLanguage(b, end, "the tool calls")
}
