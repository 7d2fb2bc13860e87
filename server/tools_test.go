package server

import (
	"encoding/json"
	"strings"
	"testing"
)

var testToolsJSON = []map[string]any{
	{"type": "function", "function": map[string]any{"name": "get_weather", "description": "The weather in a city",
		"parameters": json.RawMessage(`{"type":"object","properties":{"city":{"type":"string","maxLength":12},"unit":{"enum":["C","F"]}},"required":["city","unit"],"additionalProperties":false}`)}},
	{"type": "function", "function": map[string]any{"name": "add",
		"parameters": json.RawMessage(`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}`)}},
}

// checkCall validates one returned call's arguments against its tool's
// schema with the independent validator.
func checkCall(t *testing.T, name, args string) {
	t.Helper()
	for _, tool := range testToolsJSON {
		f := tool["function"].(map[string]any)
		if f["name"] == name {
			if err := validates(schemaValidator(t, string(f["parameters"].(json.RawMessage))), args); err != nil {
				t.Fatalf("call of %s with %q: %v", name, args, err)
			}
			return
		}
	}
	t.Fatalf("a call of %q, which is not a tool", name)
}

type testCall struct {
	ID, Type string
	Function struct{ Name, Arguments string }
}

// TestToolCalls: with tool_choice required or a named function, the answer
// is tool calls alone, well formed, arguments that their schema accepts,
// finish_reason tool_calls, content null; streamed, the tool_calls deltas
// add up to the same calls. Both the Hermes (ChatML) and the Llama 3
// spellings are parsed back.
func TestToolCalls(t *testing.T) {
	for _, tmpl := range []string{templateChatML, templateLlama3} {
		r := startRig(t, rigOptions{chatTemplate: tmpl})
		msgs := []map[string]any{{"role": "user", "content": "What is the weather in Paris?"}}
		for seed := range 4 {
			body := map[string]any{"messages": msgs, "tools": testToolsJSON, "tool_choice": "required", "temperature": 1, "seed": seed, "max_tokens": 100}
			if seed%2 == 1 {
				body["tool_choice"] = map[string]any{"type": "function", "function": map[string]any{"name": "add"}}
				body["parallel_tool_calls"] = false
			}
			v := r.post("/v1/chat/completions", body)
			msg := v["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
			if finishReason(v, 0) != "tool_calls" || msg["content"] != nil {
				t.Fatalf("seed %d: finish %q, message %v", seed, finishReason(v, 0), msg)
			}
			raw, _ := json.Marshal(msg["tool_calls"])
			var calls []testCall
			if err := json.Unmarshal(raw, &calls); err != nil || len(calls) == 0 {
				t.Fatalf("seed %d: tool_calls %s", seed, raw)
			}
			for _, c := range calls {
				if !strings.HasPrefix(c.ID, "call_") || c.Type != "function" {
					t.Fatalf("seed %d: call %+v", seed, c)
				}
				if seed%2 == 1 && (c.Function.Name != "add" || len(calls) != 1) {
					t.Fatalf("seed %d: one call of add asked, got %s", seed, raw)
				}
				checkCall(t, c.Function.Name, c.Function.Arguments)
			}
			// Streamed: the deltas add up to calls just as good.
			body["stream"] = true
			events, done := r.sse("/v1/chat/completions", body)
			var streamed []testCall
			finish := ""
			for _, ev := range events {
				ch := ev["choices"].([]any)[0].(map[string]any)
				if f, ok := ch["finish_reason"].(string); ok {
					finish = f
				}
				d := ch["delta"].(map[string]any)
				if c, ok := d["content"].(string); ok && c != "" {
					t.Fatalf("seed %d: streamed content %q beside calls", seed, c)
				}
				tcs, _ := d["tool_calls"].([]any)
				for _, x := range tcs {
					x := x.(map[string]any)
					i := int(x["index"].(float64))
					f := x["function"].(map[string]any)
					if i == len(streamed) {
						if x["id"] == nil || x["type"] != "function" || f["name"] == nil {
							t.Fatalf("seed %d: a call's first delta %v lacks its id, type or name", seed, x)
						}
						streamed = append(streamed, testCall{ID: x["id"].(string), Type: "function"})
						streamed[i].Function.Name = f["name"].(string)
					} else if x["id"] != nil || f["name"] != nil {
						t.Fatalf("seed %d: a later delta %v names its call again", seed, x)
					}
					streamed[i].Function.Arguments += f["arguments"].(string)
				}
			}
			if !done || finish != "tool_calls" || len(streamed) != len(calls) {
				t.Fatalf("seed %d: streamed %+v finish %q (done %v), whole %+v", seed, streamed, finish, done, calls)
			}
			for i, c := range streamed {
				if c.Function != calls[i].Function {
					t.Fatalf("seed %d: streamed call %+v, whole %+v", seed, c, calls[i])
				}
			}
		}
		// A conversation that carries calls and their results renders;
		// tool_choice auto lets the model answer in words.
		conv := []map[string]any{
			{"role": "user", "content": "What is the weather in Paris?"},
			{"role": "assistant", "content": nil, "tool_calls": []map[string]any{{"id": "call_1", "type": "function", "function": map[string]any{"name": "get_weather", "arguments": `{"city":"Paris","unit":"C"}`}}}},
			{"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"},
		}
		v := r.post("/v1/chat/completions", map[string]any{"messages": conv, "tools": testToolsJSON, "temperature": 0, "max_tokens": 12})
		if f := finishReason(v, 0); f != "length" && f != "stop" && f != "tool_calls" {
			t.Fatalf("auto: finish %q", f)
		}
	}
	r := startRig(t, rigOptions{})
	msgs := `[{"role":"user","content":"Hi"}]`
	tools, _ := json.Marshal(testToolsJSON)
	for _, c := range []struct{ body, param string }{
		{`{"messages":` + msgs + `,"tool_choice":"required"}`, "tool_choice"},
		{`{"messages":` + msgs + `,"tools":` + string(tools) + `,"tool_choice":"sometimes"}`, "tool_choice"},
		{`{"messages":` + msgs + `,"tools":` + string(tools) + `,"tool_choice":{"type":"function","function":{"name":"nope"}}}`, "tool_choice"},
		{`{"messages":` + msgs + `,"tools":[{"type":"retrieval"}]}`, "tools"},
		{`{"messages":` + msgs + `,"tools":[{"type":"function","function":{"name":"a b"}}]}`, "tools"},
		{`{"messages":` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]}`, "tools"},
		{`{"messages":` + msgs + `,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"wat"}}}],"tool_choice":"required"}`, "tools"},
		{`{"messages":` + msgs + `,"tools":` + string(tools) + `,"tool_choice":"required","response_format":{"type":"json_object"}}`, "tool_choice"},
		{`{"messages":[{"role":"user","content":"x","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, "messages"},
	} {
		got := r.do("POST", "/v1/chat/completions", c.body)
		if got.status != 400 || got.json(t)["error"].(map[string]any)["param"] != c.param {
			t.Errorf("%s: %d %s", c.body, got.status, got.body)
		}
	}
}
