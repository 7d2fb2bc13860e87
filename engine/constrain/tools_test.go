package constrain

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/internal/schematest"
)

// TestToolCalls: random walks through the language of tool calls are calls
// of the tools given, in the family's spelling, with arguments that the
// function's schema accepts (the reference validator says so).
func TestToolCalls(t *testing.T) {
	weather := `{"type":"object","properties":{"city":{"type":"string","maxLength":12},"unit":{"enum":["C","F"]}},"required":["city","unit"]}`
	add := `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}`
	tools := []Tool{{"get_weather", []byte(weather)}, {"add", []byte(add)}, {"now", nil}}
	vals := map[string]func(string) error{
		"get_weather": func(s string) error { return schematest.Compile(t, []byte(weather)).Validate(mustJSON(t, s)) },
		"add":         func(s string) error { return schematest.Compile(t, []byte(add)).Validate(mustJSON(t, s)) },
		"now":         func(s string) error { mustJSON(t, s); return nil },
	}
	hermes := CallShape{Prefix: "<tool_call>\n", NameKey: "name", ArgsKey: "arguments", Suffix: "\n</tool_call>", Separator: "\n"}
	v := byteVocab()
	piece := func(id int32) []byte { return []byte{byte(id)} }
	isEOG := func(id int32) bool { return id == 256 }
	r := rand.New(rand.NewPCG(7, 8))
	for _, parallel := range []bool{false, true} {
		l, err := CompileToolCalls(hermes, tools, parallel)
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		for range 60 {
			out, whole := generate(t, NewMatcher(l, v), r, 300, piece, isEOG)
			if !whole {
				t.Fatalf("not whole: %q", out)
			}
			parts := strings.Split(out, "\n<tool_call>\n")
			if !parallel && len(parts) != 1 {
				t.Fatalf("one call asked, got %q", out)
			}
			for i, p := range parts {
				if i == 0 {
					p = strings.TrimPrefix(p, "<tool_call>\n")
				}
				body, ok := strings.CutSuffix(p, "\n</tool_call>")
				if !ok {
					t.Fatalf("call %q lacks its suffix", p)
				}
				var call struct {
					Name      string          `json:"name"`
					Arguments json.RawMessage `json:"arguments"`
				}
				if err := json.Unmarshal([]byte(body), &call); err != nil {
					t.Fatalf("call %q: %v", body, err)
				}
				val, ok := vals[call.Name]
				if !ok {
					t.Fatalf("call of an unknown function: %q", body)
				}
				if err := val(string(call.Arguments)); err != nil {
					t.Fatalf("%q: %v", body, err)
				}
				calls++
			}
		}
		if parallel && calls <= 60 {
			t.Errorf("parallel: %d calls in 60 outputs, never more than one", calls)
		}
	}
	if _, err := CompileToolCalls(hermes, []Tool{{"f", []byte(`{"type":"wat"}`)}}, false); err == nil || !strings.Contains(err.Error(), `"f"`) {
		t.Errorf("a bad schema: %v", err)
	}
}

func mustJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return v
}
