package toolcall

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// counter gives ids call_1, call_2, … so that parses compare.
func counter() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("call_%d", n) }
}

// collect joins a turn's events into its content and calls, checking that
// each call starts once, in order, before its arguments.
func collect(t *testing.T, evs []Event) (string, []Call) {
	t.Helper()
	var b strings.Builder
	var calls []Call
	for _, e := range evs {
		switch e.Kind {
		case Content:
			b.WriteString(e.Text)
		case CallStart:
			if e.Index != len(calls) {
				t.Fatalf("call %d starts after %d calls", e.Index, len(calls))
			}
			calls = append(calls, Call{ID: e.ID, Name: e.Name})
		case CallArgs:
			if e.Index != len(calls)-1 {
				t.Fatalf("arguments of call %d while call %d is open", e.Index, len(calls)-1)
			}
			calls[e.Index].Arguments += e.Text
		}
	}
	return b.String(), calls
}

// feedPieces parses text fed in pieces.
func feedPieces(t *testing.T, f Format, pieces []string) (string, []Call) {
	t.Helper()
	p := f.NewParser(counter())
	var evs []Event
	for _, s := range pieces {
		evs = append(evs, p.Feed(s)...)
	}
	return collect(t, append(evs, p.Finish()...))
}

// checkSplits: the turn fed whole, in every split in two and byte by byte
// parses the same.
func checkSplits(t *testing.T, f Format, text, content string, calls []Call) {
	t.Helper()
	gotContent, gotCalls := feedPieces(t, f, []string{text})
	if gotContent != content || !slices.Equal(gotCalls, calls) {
		t.Fatalf("%s %q:\ncontent %q\ncalls %q\nwant %q\n%q", f, text, gotContent, gotCalls, content, calls)
	}
	for i := range len(text) + 1 {
		c, cs := feedPieces(t, f, []string{text[:i], text[i:]})
		if c != content || !slices.Equal(cs, calls) {
			t.Fatalf("%s %q split at %d:\ncontent %q\ncalls %q\nwant %q\n%q", f, text, i, c, cs, content, calls)
		}
	}
	bytes := make([]string, len(text))
	for i := range text {
		bytes[i] = text[i : i+1]
	}
	if c, cs := feedPieces(t, f, bytes); c != content || !slices.Equal(cs, calls) {
		t.Fatalf("%s %q byte by byte:\ncontent %q\ncalls %q\nwant %q\n%q", f, text, c, cs, content, calls)
	}
}

type parseCase struct {
	name, text, content string
	calls               []Call // ids call_1, call_2, … are filled in
}

func runCases(t *testing.T, f Format, cases []parseCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := range c.calls {
				c.calls[i].ID = fmt.Sprintf("call_%d", i+1)
			}
			checkSplits(t, f, c.text, c.content, c.calls)
			content, calls := f.Parse(c.text, counter())
			if content != c.content || !slices.Equal(calls, c.calls) {
				t.Fatalf("Parse: %q %q", content, calls)
			}
		})
	}
}

const (
	weatherParis = `{"location": "Paris, France", "unit": "celsius"}`
	weatherTokyo = `{"location": "Tokyo", "unit": "celsius"}`
	// Arguments with nested values, brackets and markers inside strings.
	trickyArgs = `{"path": "main.go", "content": "func f() {}\n// </tool_call> <tool_call> {\"name\": \"x\"}\"}", ` +
		`"opts": {"mode": [1, -2.5e3, {"x": null, "y": [true, false]}], "s": "]}\\"}}`
)

func TestToolParseHermes(t *testing.T) {
	call := func(args string) string {
		return "<tool_call>\n" + args + "\n</tool_call>"
	}
	runCases(t, Hermes, []parseCase{
		{"plain", "Hello! a < b, <b>bold</b> and <tool_calls> are text.", "Hello! a < b, <b>bold</b> and <tool_calls> are text.", nil},
		{"plain ends in whitespace", "Hi there!\n\n", "Hi there!\n\n", nil},
		{"one call", call(`{"name": "get_weather", "arguments": ` + weatherParis + `}`), "",
			[]Call{{Name: "get_weather", Arguments: weatherParis}}},
		{"text and parallel calls",
			"I'll look up both cities.\n\n" + call(`{"name": "get_weather", "arguments": `+weatherParis+`}`) + "\n" +
				call(`{"name": "get_weather", "arguments": `+weatherTokyo+`}`) + "\n",
			"I'll look up both cities.",
			[]Call{{Name: "get_weather", Arguments: weatherParis}, {Name: "get_weather", Arguments: weatherTokyo}}},
		{"Qwen3 thinking first",
			"<think>\nThe user wants the time.\n</think>\n\n" + call(`{"name": "now", "arguments": {}}`),
			"<think>\nThe user wants the time.\n</think>",
			[]Call{{Name: "now", Arguments: "{}"}}},
		{"text after calls", call(`{"name":"a","arguments":{"k":1}}`) + "\n\nDone; anything else?",
			"Done; anything else?", []Call{{Name: "a", Arguments: `{"k":1}`}}},
		{"tricky arguments", "Writing it.\n" + call(`{"name": "write_file", "arguments": `+trickyArgs+`}`),
			"Writing it.", []Call{{Name: "write_file", Arguments: trickyArgs}}},
		{"arguments as a string", call(`{"name": "f", "arguments": "{\"a\": \"}\"}"}`), "",
			[]Call{{Name: "f", Arguments: `{"a": "}"}`}}},
		{"parameters and no arguments", call(`{"name": "f", "parameters": {"a": 1}}`) + call(`{"name": "g"}`), "",
			[]Call{{Name: "f", Arguments: `{"a": 1}`}, {Name: "g", Arguments: "{}"}}},
		{"no closer at the end", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1]}}", "",
			[]Call{{Name: "f", Arguments: `{"a": [1]}`}}},
		{"half a closer at the end", "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_", "",
			[]Call{{Name: "f", Arguments: `{}`}}},
		{"stops mid-JSON", "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": \"a }",
			"Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": \"a }", nil},
		{"stops after the opener", "Sure. <tool_call>\n", "Sure. <tool_call>\n", nil},
		{"half an opener at the end", "Let me see <tool_ca", "Let me see <tool_ca", nil},
		{"opener then text", "<tool_call> is how I call tools.", "<tool_call> is how I call tools.", nil},
		{"invalid JSON", call(`{"name": "f", "arguments": {"a": 1,}}`), call(`{"name": "f", "arguments": {"a": 1,}}`), nil},
		{"no name", call(`{"arguments": {}}`), call(`{"arguments": {}}`), nil},
		{"arguments not an object", call(`{"name": "f", "arguments": [1, 2]}`), call(`{"name": "f", "arguments": [1, 2]}`), nil},
		{"a brace short, then a good call",
			call(`{"name": "f", "arguments": {"a": 1}`) + "\n" + call(`{"name": "g", "arguments": {"b": "<"}}`),
			call(`{"name": "f", "arguments": {"a": 1}`), []Call{{Name: "g", Arguments: `{"b": "<"}`}}},
		{"malformed between calls",
			call(`{"name": "f", "arguments": {}}`) + "\n<tool_call>\noops\n" + call(`{"name": "g", "arguments": {}}`),
			"<tool_call>\noops", []Call{{Name: "f", Arguments: "{}"}, {Name: "g", Arguments: "{}"}}},
	})
}

func TestToolParseLlama3(t *testing.T) {
	runCases(t, Llama3, []parseCase{
		{"plain", "The weather in Paris is sunny; {\"name\": \"x\"} is not a call here.",
			"The weather in Paris is sunny; {\"name\": \"x\"} is not a call here.", nil},
		{"one call", `{"name": "get_weather", "parameters": ` + weatherParis + `}`, "",
			[]Call{{Name: "get_weather", Arguments: weatherParis}}},
		{"python tag and whitespace", "\n <|python_tag|> {\n  \"name\": \"get_weather\",\n  \"parameters\": " + weatherTokyo + "\n}\n", "",
			[]Call{{Name: "get_weather", Arguments: weatherTokyo}}},
		{"parallel calls", `{"name": "get_weather", "parameters": ` + weatherParis + `}; {"name": "get_weather", "parameters": ` + weatherTokyo + `};`, "",
			[]Call{{Name: "get_weather", Arguments: weatherParis}, {Name: "get_weather", Arguments: weatherTokyo}}},
		{"calls without a separator", "{\"name\": \"a\", \"parameters\": {}}\n{\"name\": \"b\", \"parameters\": {}}", "",
			[]Call{{Name: "a", Arguments: "{}"}, {Name: "b", Arguments: "{}"}}},
		{"tricky arguments", `{"name": "write_file", "parameters": ` + trickyArgs + `}`, "",
			[]Call{{Name: "write_file", Arguments: trickyArgs}}},
		{"call then text", "{\"name\": \"f\", \"parameters\": {}}\n\nHope that helps.", "Hope that helps.",
			[]Call{{Name: "f", Arguments: "{}"}}},
		{"call, separator, text", "{\"name\": \"f\", \"parameters\": {}}; and more", "; and more",
			[]Call{{Name: "f", Arguments: "{}"}}},
		{"a JSON answer", ` {"answer": 42, "name": "x"}`, ` {"answer": 42, "name": "x"}`, nil},
		{"a key like name", `{"names": ["a"]}`, `{"names": ["a"]}`, nil},
		{"built-in tool", `<|python_tag|>brave_search.call(query="weather")`, `<|python_tag|>brave_search.call(query="weather")`, nil},
		{"half a tag", "  <|python", "  <|python", nil},
		{"stops mid-JSON", `{"name": "f", "parameters": {"a": "x`, `{"name": "f", "parameters": {"a": "x`, nil},
		{"invalid JSON", `{"name": "f", "parameters": {"a": tru}} ok`, `{"name": "f", "parameters": {"a": tru}} ok`, nil},
		{"bad second call", "{\"name\": \"f\", \"parameters\": {}};\n{\"name\": \"g\", \"parameters\": {\"a\": 1}",
			";\n{\"name\": \"g\", \"parameters\": {\"a\": 1}", []Call{{Name: "f", Arguments: "{}"}}},
	})
}

// TestToolShapeParses: calls spelled as Shape says parse back, in each format.
func TestToolShapeParses(t *testing.T) {
	calls := []Call{{ID: "call_1", Name: "get_weather", Arguments: weatherParis}, {ID: "call_2", Name: "write_file", Arguments: trickyArgs}}
	for _, f := range []Format{Hermes, Llama3} {
		s := f.Shape()
		var b strings.Builder
		for i, c := range calls {
			if i > 0 {
				b.WriteString(s.Separator)
			}
			fmt.Fprintf(&b, `%s{"%s": "%s", "%s": %s}%s`, s.Prefix, s.NameKey, c.Name, s.ArgsKey, c.Arguments, s.Suffix)
		}
		checkSplits(t, f, b.String(), "", calls)
	}
}

// TestToolMalformedIsText: in random turns made of pieces of calls, whatever
// no call takes is content as written, and every split parses the same.
func TestToolMalformedIsText(t *testing.T) {
	pieces := []string{"<tool_call>", "</tool_call>", "<tool_", "<|python_tag|>", "{", "}", "[", "]", `"`, `\`, ":", ",", ";",
		"\n", " ", `"name"`, `"arguments"`, `"parameters"`, `"f"`, "1", "a", "<", "true"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		var b strings.Builder
		for range 1 + r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		text := b.String()
		for _, f := range []Format{Hermes, Llama3} {
			content, calls := f.Parse(text, counter())
			if len(calls) == 0 && content != text {
				t.Fatalf("%s %q: content %q", f, text, content)
			}
			checkSplits(t, f, text, content, calls)
		}
	}
}

func TestToolDetect(t *testing.T) {
	vocab := func(tokens ...string) func(string) bool {
		return func(s string) bool { return slices.Contains(tokens, s) }
	}
	for _, c := range []struct {
		name, src string
		has       func(string) bool
		want      Format
	}{
		{"qwen", `{%- if tools %}...<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>{% endif %}`, nil, Hermes},
		{"llama 3.1", `{%- if tools %}<|start_header_id|>ipython<|end_header_id|>{{ '<|python_tag|>' }}{% endif %}`, nil, Llama3},
		{"llama 3.2", `<|start_header_id|>system... "parameters": dictionary of argument name and its value}`, nil, Llama3},
		{"parameters, llama vocab", `{% if tools %}{"name": function name, "parameters": ...}{% endif %}`, vocab("<|start_header_id|>"), Llama3},
		{"parameters, other vocab", `{% if tools %}{"name": function name, "parameters": ...}{% endif %}`, vocab("<|im_start|>"), Hermes},
		{"silent, qwen vocab", `{% if tools %}{{ tools }}{% endif %}`, vocab("<tool_call>", "<|im_start|>"), Hermes},
		{"silent, llama 3.1 vocab", `{% if tools %}{{ tools }}{% endif %}`, vocab("<|python_tag|>"), Llama3},
		{"nothing", `{{ messages }}`, nil, Hermes},
	} {
		if got := Detect(c.src, c.has); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestToolIDs(t *testing.T) {
	ok := regexp.MustCompile(`^call_[A-Za-z0-9]{24}$`)
	a, b := IDs(rand.New(rand.NewPCG(7, 7))), IDs(rand.New(rand.NewPCG(7, 7)))
	seen := map[string]bool{}
	for range 100 {
		x := a()
		if !ok.MatchString(x) || x != b() || seen[x] {
			t.Fatalf("id %q: malformed, not reproducible or repeated", x)
		}
		seen[x] = true
	}
	if x := IDs(nil)(); !ok.MatchString(x) {
		t.Fatalf("id %q", x)
	}
	// A parser without an id source draws random ids.
	_, calls := Hermes.Parse(`<tool_call>{"name": "f", "arguments": {}}</tool_call>`, nil)
	if len(calls) != 1 || !ok.MatchString(calls[0].ID) {
		t.Fatalf("calls %q", calls)
	}
}
