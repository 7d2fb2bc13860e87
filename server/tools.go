package server

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/godwit-ai/godwit/engine/constrain"
	"github.com/godwit-ai/godwit/internal/toolcall"
)

// chatTool is one of a request's tools.
type chatTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

// chatToolCall is a tool call in a message, sent or received.
type chatToolCall struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"`
	Function chatToolFunction `json:"function"`
}

type chatToolFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// chatToolCallDelta is a streamed piece of a tool call: the first names
// it, the next carry pieces of its arguments.
type chatToolCallDelta struct {
	Index    int               `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function chatFunctionDelta `json:"function"`
}

type chatFunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// toolPlan is what a request's tools and tool_choice ask of a generation.
type toolPlan struct {
	tools  []any               // for the chat template, each a json.RawMessage
	format toolcall.Format     // how the model writes calls
	parse  bool                // the output is parsed for calls
	only   *constrain.Language // set: the output is calls alone
}

var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// planTools checks tools, tool_choice and parallel_tool_calls. It returns
// nil when the output is plain text: no tools, or tool_choice "none".
func (s *Server) planTools(m *ready, tools []chatTool, choiceRaw json.RawMessage, parallel *bool) (*toolPlan, *apiError) {
	choice, named := "auto", ""
	if raw := bytes.TrimSpace(choiceRaw); len(raw) > 0 && string(raw) != "null" {
		var c struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		switch {
		case json.Unmarshal(raw, &choice) == nil:
			if choice != "none" && choice != "auto" && choice != "required" {
				return nil, badRequest("tool_choice", `tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}, not %q`, choice)
			}
		case json.Unmarshal(raw, &c) == nil && c.Type == "function" && c.Function.Name != "":
			choice, named = "named", c.Function.Name
		default:
			return nil, badRequest("tool_choice", `tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`)
		}
	}
	if len(tools) == 0 {
		if choice == "required" || choice == "named" {
			return nil, badRequest("tool_choice", "tool_choice %s needs tools; send tools or leave tool_choice out", choiceRaw)
		}
		return nil, nil
	}
	p := &toolPlan{format: m.chat.toolFormat(), parse: choice != "none"}
	seen := map[string]bool{}
	var ctools []constrain.Tool
	for i, t := range tools {
		name := t.Function.Name
		switch {
		case t.Type != "function":
			return nil, badRequest("tools", "tools[%d].type must be \"function\", not %q", i, t.Type)
		case !toolName.MatchString(name):
			return nil, badRequest("tools", "tools[%d].function.name %q must be 1 to 64 letters, digits, '_' or '-'", i, name)
		case seen[name]:
			return nil, badRequest("tools", "two tools are named %q; give each its own name", name)
		}
		seen[name] = true
		params := bytes.TrimSpace(t.Function.Parameters)
		if len(params) > 0 && (params[0] != '{' || !json.Valid(params)) {
			return nil, badRequest("tools", "tools[%d].function.parameters must be a JSON schema object", i)
		}
		raw, err := json.Marshal(t)
		if err != nil {
			return nil, badRequest("tools", "tools[%d]: %v", i, err)
		}
		p.tools = append(p.tools, json.RawMessage(raw))
		if choice == "required" || name == named {
			ctools = append(ctools, constrain.Tool{Name: name, Parameters: params})
		}
	}
	if choice == "none" {
		// The model is not told of tools it may not call.
		p.tools = nil
		return p, nil
	}
	if choice == "named" && len(ctools) == 0 {
		return nil, badRequest("tool_choice", "tool_choice names the function %q, which is not among the tools", named)
	}
	if len(ctools) > 0 {
		l, e := s.langs.toolCalls(p.format.Shape(), ctools, parallel == nil || *parallel)
		if e != nil {
			return nil, e
		}
		p.only = l
	}
	return p, nil
}

// toolChoices follows each choice's output through its parser, turning
// text into content and tool calls.
type toolChoices struct {
	plan    *toolPlan
	parsers []*toolcall.Parser
	calls   []int // calls seen, by choice
}

func (tc *toolChoices) parser(i int) *toolcall.Parser {
	for len(tc.parsers) <= i {
		tc.parsers = append(tc.parsers, tc.plan.format.NewParser(nil))
		tc.calls = append(tc.calls, 0)
	}
	return tc.parsers[i]
}

// events feeds choice i's text and, at its end, finishes its parser.
func (tc *toolChoices) events(i int, text string, end bool) []toolcall.Event {
	p := tc.parser(i)
	evs := p.Feed(text)
	if end {
		evs = append(evs, p.Finish()...)
	}
	for _, e := range evs {
		if e.Kind == toolcall.CallStart {
			tc.calls[i]++
		}
	}
	return evs
}

// finish is choice i's finish reason: "tool_calls" once it made calls
// and ended on its own (or whole, when it could write nothing but calls).
func (tc *toolChoices) finish(i int, reason *string) *string {
	if reason == nil || tc.calls[i] == 0 || *reason != "stop" && tc.plan.only == nil {
		return reason
	}
	calls := "tool_calls"
	return &calls
}

// messageCalls decodes the tool calls an assistant message carries.
func messageCalls(i int, in []chatToolCall) ([]toolcall.Call, *apiError) {
	out := make([]toolcall.Call, len(in))
	for j, c := range in {
		if c.Function.Name == "" {
			return nil, badRequest("messages", "messages[%d].tool_calls[%d] has no function name", i, j)
		}
		out[j] = toolcall.Call{ID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments}
	}
	return out, nil
}

// toolsKey is the cache key of the language of calls to tools.
func toolsKey(shape toolcall.Shape, tools []constrain.Tool, parallel bool) string {
	var b strings.Builder
	b.WriteString("tools\x00")
	for _, s := range []string{shape.Prefix, shape.NameKey, shape.ArgsKey, shape.Suffix, shape.Separator} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	if parallel {
		b.WriteString("parallel\x00")
	}
	for _, t := range tools {
		b.WriteString(t.Name)
		b.WriteByte(0)
		var compact bytes.Buffer
		if json.Compact(&compact, t.Parameters) == nil {
			b.Write(compact.Bytes())
		}
		b.WriteByte(0)
	}
	return b.String()
}
