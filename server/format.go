package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"

	"github.com/godwit-ai/godwit/engine/constrain"
	"github.com/godwit-ai/godwit/internal/toolcall"
)

// responseFormat is OpenAI's response_format. llama.cpp also takes a
// schema beside json_object's type.
type responseFormat struct {
	Type       string          `json:"type"`
	JSONSchema *jsonSchemaSpec `json:"json_schema"`
	Schema     json.RawMessage `json:"schema"`
}

type jsonSchemaSpec struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema"`
	Strict *bool           `json:"strict"`
}

// structuredOutputs is vLLM's structured_outputs.
type structuredOutputs struct {
	JSON       json.RawMessage `json:"json"`
	Regex      *string         `json:"regex"`
	Choice     []string        `json:"choice"`
	Grammar    *string         `json:"grammar"`
	JSONObject *bool           `json:"json_object"`
}

// formatFields are the request fields that hold the output to a language:
// OpenAI's, vLLM's guided_* and structured_outputs, and llama.cpp's
// json_schema. At most one may be set.
type formatFields struct {
	ResponseFormat    *responseFormat    `json:"response_format"`
	GuidedJSON        json.RawMessage    `json:"guided_json"`
	GuidedRegex       *string            `json:"guided_regex"`
	GuidedChoice      []string           `json:"guided_choice"`
	GuidedGrammar     *string            `json:"guided_grammar"`
	StructuredOutputs *structuredOutputs `json:"structured_outputs"`
	JSONSchema        json.RawMessage    `json:"json_schema"`
}

// formatSpec is one language asked for: what kind and its source.
type formatSpec struct {
	param string // the field that asked, for errors
	kind  string // "json_object", "json_schema", "regex" or "choice"
	src   []byte // the schema, the pattern or the choices as JSON
}

func present(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && string(raw) != "null"
}

// spec finds the one language the fields ask for; nil means plain text.
func (f *formatFields) spec() (*formatSpec, *apiError) {
	var specs []formatSpec
	add := func(param, kind string, src []byte) { specs = append(specs, formatSpec{param, kind, src}) }
	if rf := f.ResponseFormat; rf != nil {
		switch rf.Type {
		case "", "text":
		case "json_object":
			if present(rf.Schema) {
				add("response_format", "json_schema", rf.Schema)
			} else {
				add("response_format", "json_object", nil)
			}
		case "json_schema":
			if rf.JSONSchema == nil || !present(rf.JSONSchema.Schema) {
				return nil, badRequest("response_format", "response_format json_schema needs json_schema.schema, the JSON schema the output must follow")
			}
			add("response_format", "json_schema", rf.JSONSchema.Schema)
		default:
			return nil, badRequest("response_format", "response_format type must be text, json_object or json_schema, not %q", rf.Type)
		}
	}
	if present(f.GuidedJSON) {
		add("guided_json", "json_schema", f.GuidedJSON)
	}
	if f.GuidedRegex != nil {
		add("guided_regex", "regex", []byte(*f.GuidedRegex))
	}
	if f.GuidedChoice != nil {
		src, _ := json.Marshal(f.GuidedChoice)
		add("guided_choice", "choice", src)
	}
	if f.GuidedGrammar != nil {
		return nil, badRequest("guided_grammar", "guided_grammar (a context-free grammar) is not supported; use guided_json, guided_regex or guided_choice")
	}
	if so := f.StructuredOutputs; so != nil {
		if so.Grammar != nil {
			return nil, badRequest("structured_outputs", "structured_outputs.grammar (a context-free grammar) is not supported; use json, regex or choice")
		}
		if present(so.JSON) {
			add("structured_outputs", "json_schema", so.JSON)
		}
		if so.Regex != nil {
			add("structured_outputs", "regex", []byte(*so.Regex))
		}
		if so.Choice != nil {
			src, _ := json.Marshal(so.Choice)
			add("structured_outputs", "choice", src)
		}
		if so.JSONObject != nil && *so.JSONObject {
			add("structured_outputs", "json_object", nil)
		}
	}
	if present(f.JSONSchema) {
		add("json_schema", "json_schema", f.JSONSchema)
	}
	switch len(specs) {
	case 0:
		return nil, nil
	case 1:
		return &specs[0], nil
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.param
	}
	return nil, badRequest(specs[1].param, "%s each ask for an output format; send one", strings.Join(names, " and "))
}

// languages caches compiled languages by their source, so that the agents
// that send one schema with every request compile it once.
type languages struct {
	mu sync.Mutex
	m  map[string]*constrain.Language
}

// maxLanguages bounds the cache; when full it starts again.
const maxLanguages = 256

// language compiles (or finds) the language spec asks for.
func (c *languages) language(spec *formatSpec) (*constrain.Language, *apiError) {
	if spec.kind == "json_object" {
		return constrain.JSONObjectLanguage(), nil
	}
	src := spec.src
	if spec.kind == "json_schema" {
		// A schema sent as a JSON string (guided_json allows it).
		var s string
		if json.Unmarshal(src, &s) == nil {
			src = []byte(s)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, src); err != nil {
			return nil, badRequest(spec.param, "the JSON schema is not valid JSON: %v", err)
		}
		src = compact.Bytes()
	}
	return c.cached(spec.kind+"\x00"+string(src), spec.param, func() (*constrain.Language, error) {
		switch spec.kind {
		case "json_schema":
			return constrain.CompileSchema(src)
		case "regex":
			return constrain.CompileRegex(string(src))
		}
		var choices []string
		_ = json.Unmarshal(src, &choices) // marshalled from []string in spec
		return constrain.CompileChoice(choices)
	})
}

// toolCalls compiles (or finds) the language of calls to tools alone.
func (c *languages) toolCalls(shape toolcall.Shape, tools []constrain.Tool, parallel bool) (*constrain.Language, *apiError) {
	return c.cached(toolsKey(shape, tools, parallel), "tools", func() (*constrain.Language, error) {
		return constrain.CompileToolCalls(constrain.CallShape(shape), tools, parallel)
	})
}

// cached returns the language under key, compiling it on a miss; a
// compile error is the client's, about param.
func (c *languages) cached(key, param string, compile func() (*constrain.Language, error)) (*constrain.Language, *apiError) {
	c.mu.Lock()
	l, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return l, nil
	}
	l, err := compile()
	if err != nil {
		return nil, badRequest(param, "%s: %v", param, err)
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxLanguages {
		c.m = map[string]*constrain.Language{}
	}
	c.m[key] = l
	c.mu.Unlock()
	return l, nil
}
