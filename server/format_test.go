package server

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/internal/schematest"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaValidator compiles schema with an independent validator.
func schemaValidator(t *testing.T, schema string) *jsonschema.Schema {
	return schematest.Compile(t, []byte(schema))
}

func validates(s *jsonschema.Schema, text string) error {
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// TestStructuredOutputs: every field that asks for a format holds the
// output to it, on chat and completions, streamed or not; a bad format is
// refused with a 400 that names its field.
func TestStructuredOutputs(t *testing.T) {
	r := startRig(t, rigOptions{})
	schema := `{"type":"object","properties":{"name":{"type":"string","maxLength":10},"age":{"type":"integer","minimum":0,"maximum":120},` +
		`"mood":{"enum":["happy","sad"]},"tags":{"type":"array","items":{"type":"string","pattern":"^[a-z]+$"},"maxItems":3}},` +
		`"required":["name","age","mood","tags"],"additionalProperties":false}`
	val := schemaValidator(t, schema)
	var raw map[string]any
	if err := json.Unmarshal([]byte(schema), &raw); err != nil {
		t.Fatal(err)
	}
	msgs := []map[string]string{{"role": "user", "content": "Tell me about a person."}}
	for i, f := range []map[string]any{
		{"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "person", "schema": raw, "strict": true}}},
		{"guided_json": raw},
		{"guided_json": schema}, // as a string
		{"structured_outputs": map[string]any{"json": raw}},
		{"json_schema": raw},
		{"response_format": map[string]any{"type": "json_object", "schema": raw}},
	} {
		for seed := range 4 {
			body := map[string]any{"messages": msgs, "temperature": 1.5, "seed": seed, "max_tokens": 80}
			for k, v := range f {
				body[k] = v
			}
			v := r.post("/v1/chat/completions", body)
			text := v["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"].(string)
			if err := validates(val, text); err != nil {
				t.Fatalf("format %d seed %d: %q (%s): %v", i, seed, text, finishReason(v, 0), err)
			}
			if i == 0 && seed == 0 {
				t.Logf("%s", text)
			}
		}
	}
	// Completions, streamed and n > 1: the chunks add up to valid outputs.
	body := map[string]any{"prompt": "Once upon a time", "guided_json": raw, "temperature": 1, "seed": 3, "max_tokens": 80, "n": 2, "stream": true}
	events, done := r.sse("/v1/completions", body)
	texts := make([]string, 2)
	for _, ev := range events {
		for _, c := range ev["choices"].([]any) {
			c := c.(map[string]any)
			texts[int(c["index"].(float64))] += c["text"].(string)
		}
	}
	for _, text := range texts {
		if err := validates(val, text); !done || err != nil {
			t.Fatalf("streamed %q (done %v): %v", text, done, err)
		}
	}
	// A regular expression and a choice.
	re := regexp.MustCompile(`^[A-Z][a-z]{1,8} (is|was) [0-9]{1,2}$`)
	for seed := range 4 {
		v := r.post("/v1/completions", map[string]any{"prompt": "Once", "guided_regex": `[A-Z][a-z]{1,8} (is|was) [0-9]{1,2}`, "temperature": 1, "seed": seed, "max_tokens": 20})
		if text := choiceTexts(t, v)[0]; !re.MatchString(text) {
			t.Fatalf("guided_regex: %q", text)
		}
		choices := []string{"yes", "no", "maybe so"}
		v = r.post("/v1/chat/completions", map[string]any{"messages": msgs, "structured_outputs": map[string]any{"choice": choices}, "temperature": 1, "seed": seed})
		if text := v["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"].(string); !slices.Contains(choices, text) {
			t.Fatalf("choice: %q", text)
		}
	}
	for _, c := range []struct{ body, param string }{
		{`{"prompt":"x","response_format":{"type":"yaml"}}`, "response_format"},
		{`{"prompt":"x","response_format":{"type":"json_schema"}}`, "response_format"},
		{`{"prompt":"x","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"strin"}}}}`, "response_format"},
		{`{"prompt":"x","guided_json":{"not":{}}}`, "guided_json"},
		{`{"prompt":"x","guided_json":"{"}`, "guided_json"},
		{`{"prompt":"x","guided_regex":"(a"}`, "guided_regex"},
		{`{"prompt":"x","guided_choice":[]}`, "guided_choice"},
		{`{"prompt":"x","guided_grammar":"root ::= x"}`, "guided_grammar"},
		{`{"prompt":"x","guided_regex":"a","guided_choice":["b"]}`, "guided_choice"},
		{`{"prompt":"x","structured_outputs":{"grammar":"x"}}`, "structured_outputs"},
	} {
		got := r.do("POST", "/v1/completions", c.body)
		if got.status != 400 || got.json(t)["error"].(map[string]any)["param"] != c.param {
			t.Errorf("%s: %d %s", c.body, got.status, got.body)
		}
	}
}
