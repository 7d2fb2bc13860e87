package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/internal/heappeak"
	"github.com/godwit-ai/godwit/internal/jinja"
	"github.com/godwit-ai/godwit/internal/toolcall"
)

// Chat templates as the Llama 3 Instruct and Qwen2 Instruct GGUF files
// carry them in tokenizer.chat_template.
const (
	llama3Template = `{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>

'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>

' }}{% endif %}`

	qwen2Template = `{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
You are a helpful assistant.<|im_end|>
' }}{% endif %}{{'<|im_start|>' + message['role'] + '
' + message['content'] + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %}`

	alternateTemplate = `{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ message['content'] }}{% endfor %}`
)

// TestChatTemplates: real models' templates render with the Jinja engine
// exactly as their models expect, and a template's raise_exception becomes
// an error.
func TestChatTemplates(t *testing.T) {
	_, tok := loadStories(t)
	conv := []chatMessage{{Role: "user", Content: " Hello! "}, {Role: "assistant", Content: "Hi."}, {Role: "user", Content: "Tell me a story."}}
	for _, c := range []struct {
		name, src, want string
	}{
		{"llama3", llama3Template, "<s><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi.<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nTell me a story.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"qwen2", qwen2Template, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n Hello! <|im_end|>\n" +
			"<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n"},
		{"built-in llama3", templateLlama3, "<s><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi.<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nTell me a story.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"built-in chatml", templateChatML, "<|im_start|>user\n Hello! <|im_end|>\n<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n"},
		{"built-in llama2", templateLlama2, "<s>[INST] Hello! [/INST] Hi. </s>[INST] Tell me a story. [/INST]"},
		{"built-in phi3", templatePhi3, "<|user|>\n Hello! <|end|>\n<|assistant|>\nHi.<|end|>\n<|user|>\nTell me a story.<|end|>\n<|assistant|>\n"},
		{"built-in gemma", templateGemma, "<s><start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\nHi.<end_of_turn>\n" +
			"<start_of_turn>user\nTell me a story.<end_of_turn>\n<start_of_turn>model\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ct, err := newChatTemplate(c.src, "", "", tok, jinja.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ct.render(conv, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("rendered\n%q\nwant\n%q", got, c.want)
			}
			// The template's BOS is parsed as the token, never doubled.
			ids := ct.tokens(got)
			if ids[0] != tok.BOS() || ids[1] == tok.BOS() {
				t.Fatalf("ids start %v", ids[:2])
			}
		})
	}
	ct, err := newChatTemplate(alternateTemplate, "", "", tok, jinja.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ct.render([]chatMessage{{Role: "user"}, {Role: "user"}}, nil); err == nil || !strings.Contains(err.Error(), "must alternate") {
		t.Fatalf("raise_exception: %v", err)
	}
	if _, err := newChatTemplate("{% for %}", "", "", tok, jinja.DefaultLimits); err == nil {
		t.Fatal("a broken template compiled")
	}
}

// TestChatTemplateFromFile: a model's tokenizer.chat_template is what chat
// requests are rendered with; its errors are 400s.
func TestChatTemplateFromFile(t *testing.T) {
	r := startRig(t, rigOptions{chatTemplate: alternateTemplate})
	resp := r.do("POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`)
	checkError(t, resp, 400, typeInvalid, "messages", "must alternate")
	r = startRig(t, rigOptions{chatTemplate: llama3Template})
	v := r.post("/tokenize", map[string]any{"messages": []map[string]any{{"role": "user", "content": "Hello"}}})
	want := r.tok.Encode("<s><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", false, true)
	if int(v["count"].(float64)) != len(want) {
		t.Fatalf("%v tokens, want %d", v["count"], len(want))
	}
}

// TestChatTemplateBudget: a hostile template (a loop of a billion turns,
// or one that doubles a string) answers 400 at once on both endpoints that
// render it, naming the template; the server's memory stays small and it
// goes on answering.
func TestChatTemplateBudget(t *testing.T) {
	client := &http.Client{Timeout: 10 * time.Second} // a hang fails, not waits
	post := func(r *rig, path, body string) response {
		t.Helper()
		start := time.Now()
		resp, err := client.Post(r.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s: no answer: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s answered %d in %v", path, resp.StatusCode, time.Since(start).Round(time.Millisecond))
		return response{resp.StatusCode, resp.Header, b}
	}
	msgs := `{"messages":[{"role":"user","content":"Hello"}]}`
	r := startRig(t, rigOptions{chatTemplate: "{% for i in range(1000000000) %}x{% endfor %}"})
	small := startRig(t, rigOptions{chatTemplate: "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
		cfg: Config{ChatTemplateLimits: jinja.Limits{OutputBytes: 1 << 20}}})
	good := startRig(t, rigOptions{chatTemplate: llama3Template})

	stop := heappeak.Start() // the heap's peak while the requests run

	for _, path := range []string{"/v1/chat/completions", "/tokenize"} {
		checkError(t, post(r, path, msgs), 400, typeInvalid, "messages",
			"the chat template (gguf) exceeded its render budget of 5000000 steps")
	}
	checkError(t, post(small, "/tokenize", msgs), 400, typeInvalid, "messages",
		"budget of 1048576 output bytes at line 1:76: the template is broken or hostile; serve the model with another one (--chat-template FILE), or raise --chat-template-max-bytes")
	// The server still answers: other endpoints on the same rig, and
	// chat on a rig with a sound template.
	if resp := post(r, "/v1/completions", `{"prompt":"Once","max_tokens":2}`); resp.status != 200 {
		t.Fatalf("completions after the hostile template: %d %s", resp.status, resp.body)
	}
	if resp := post(good, "/tokenize", msgs); resp.status != 200 {
		t.Fatalf("tokenize with a sound template: %d %s", resp.status, resp.body)
	}
	grew := stop()
	t.Logf("heap in use grew by at most %d MiB", grew>>20)
	if grew > 100<<20 {
		t.Errorf("heap in use grew by %d MiB", grew>>20)
	}
}

// A conversation with tools: text and two parallel calls, their results,
// and the answer.
const (
	weatherTool = `{"type": "function", "function": {"name": "get_weather", "description": "The weather now", "parameters": ` +
		`{"type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}, "required": ["location"]}}}`
	// The second tool comes decoded, so its keys are sorted.
	nowTool = `{"function": {"name": "now", "parameters": {"properties": {}, "type": "object"}}, "type": "function"}`

	hermesToolList = "# Tools\n\nYou may call one or more functions to help with the request. " +
		"The functions are described by their JSON signatures within <tools></tools> XML tags:\n<tools>\n" + weatherTool + "\n" + nowTool +
		"\n</tools>\n\nTo call a function, write a JSON object with its name and arguments within <tool_call></tool_call> XML tags, " +
		"one block for each call:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
	hermesCallText = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\", \"days\": 2}}\n</tool_call>\n" +
		"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Tokyo\"}}\n</tool_call>"
	llama3CallText = `{"name": "get_weather", "parameters": {"location": "Paris", "days": 2}}; {"name": "get_weather", "parameters": {"location": "Tokyo"}}`

	// chatmlTools is the conversation in Qwen2.5's manner, as the ChatML
	// built-in renders it and as a ChatML template without tools gets it.
	chatmlTools = "<|im_start|>system\nBe brief.\n\n" + hermesToolList + "<|im_end|>\n" +
		"<|im_start|>user\nWeather in Paris and Tokyo?<|im_end|>\n" +
		"<|im_start|>assistant\nLet me check.\n" + hermesCallText + "<|im_end|>\n" +
		"<|im_start|>user\n<tool_response>\nsunny, 21 C\n</tool_response>\n<tool_response>\nrain, 15 C\n</tool_response><|im_end|>\n" +
		"<|im_start|>assistant\nParis: sunny. Tokyo: rain.<|im_end|>\n<|im_start|>user\nThanks!<|im_end|>\n<|im_start|>assistant\n"

	// toolsEcho renders what a template is given for tools, calls and
	// results, reading them as Qwen's templates do.
	toolsEcho = `{%- if tools is none %}none{% else %}{{ tools | map(attribute='function') | map(attribute='name') | join(',') }}{% endif %}
{%- for m in messages %}|{{ m.role }}:{{ m.content }}{% if m.tool_call_id %}[{{ m.tool_call_id }}]{% endif %}
{%- for c in m.tool_calls %}({{ c.id }} {{ c.type }} {{ c.function.name }} {{ c.function.arguments is mapping }} {{ c.function.arguments | tojson }}){% endfor %}
{%- endfor %}`
)

func testTools() []any {
	return []any{json.RawMessage(weatherTool), map[string]any{"type": "function", "function": map[string]any{
		"name": "now", "parameters": map[string]any{"type": "object", "properties": map[string]any{}}}}}
}

var toolConv = []chatMessage{
	{Role: "system", Content: "Be brief."},
	{Role: "user", Content: "Weather in Paris and Tokyo?"},
	{Role: "assistant", Content: "Let me check.", ToolCalls: []toolcall.Call{
		{ID: "call_1", Name: "get_weather", Arguments: `{"location": "Paris", "days": 2}`},
		{ID: "call_2", Name: "get_weather", Arguments: "\n{\"location\": \"Tokyo\"} "}}},
	{Role: "tool", ToolCallID: "call_1", Content: "sunny, 21 C"},
	{Role: "tool", ToolCallID: "call_2", Content: "rain, 15 C"},
	{Role: "assistant", Content: "Paris: sunny. Tokyo: rain."},
	{Role: "user", Content: "Thanks!"},
}

// indent4 is a tool as tojson(indent=4) writes it.
func indent4(t *testing.T, tool string) string {
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(tool), "", "    "); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestChatTemplateTools: tools, calls and results render in each built-in's
// family manner, and in Hermes form through a template that renders no
// tools; the calls as rendered are what the template's format parses.
func TestChatTemplateTools(t *testing.T) {
	_, tok := loadStories(t)
	llama3Tools := "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.\n\n" +
		"You can call the functions below. To call one, answer with nothing but a JSON object of the form " +
		`{"name": function name, "parameters": object of argument names and their values}; to call several, join their objects with "; ". ` +
		"Use literal values, not variables.\n\n" + indent4(t, weatherTool) + "\n\n" + indent4(t, nowTool) + "\n\n<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nWeather in Paris and Tokyo?<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\n" + llama3CallText + "<|eot_id|>" +
		"<|start_header_id|>ipython<|end_header_id|>\n\nsunny, 21 C<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\nrain, 15 C<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\nParis: sunny. Tokyo: rain.<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nThanks!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
	llama2Tools := "<s>[INST] <<SYS>>\nBe brief.\n\n" + hermesToolList + "\n<</SYS>>\n\nWeather in Paris and Tokyo? [/INST] Let me check.\n" + hermesCallText +
		" </s>[INST] <tool_response>\nsunny, 21 C\n</tool_response>\n<tool_response>\nrain, 15 C\n</tool_response> [/INST] Paris: sunny. Tokyo: rain. </s>[INST] Thanks! [/INST]"
	for _, c := range []struct {
		name, src string
		format    toolcall.Format
		want      string
		calls     string // the calls as rendered
	}{
		{"built-in chatml", templateChatML, toolcall.Hermes, chatmlTools, hermesCallText},
		{"built-in llama3", templateLlama3, toolcall.Llama3, llama3Tools, llama3CallText},
		{"qwen2 without tools", qwen2Template, toolcall.Hermes, chatmlTools, hermesCallText},
		{"built-in llama2", templateLlama2, toolcall.Hermes, llama2Tools, hermesCallText},
	} {
		t.Run(c.name, func(t *testing.T) {
			ct, err := newChatTemplate(c.src, "", "", tok, jinja.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if f := ct.toolFormat(); f != c.format {
				t.Errorf("format %s, want %s", f, c.format)
			}
			got, err := ct.render(toolConv, testTools())
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("rendered\n%q\nwant\n%q", got, c.want)
			}
			content, calls := c.format.Parse(c.calls, nil)
			want := toolConv[2].ToolCalls
			if content != "" || len(calls) != len(want) {
				t.Fatalf("the rendered calls parse to %q, %q", content, calls)
			}
			for i, call := range calls {
				if call.Name != want[i].Name || call.Arguments != strings.TrimSpace(want[i].Arguments) {
					t.Errorf("call %d parses to %q", i, call)
				}
			}
		})
	}
	// Without a system message one is made for the tools.
	for _, src := range []string{templateChatML, qwen2Template} {
		ct, err := newChatTemplate(src, "", "", tok, jinja.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ct.render([]chatMessage{{Role: "user", Content: "Hi"}}, testTools())
		if want := "<|im_start|>system\n" + hermesToolList + "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"; err != nil || got != want {
			t.Errorf("%.30q: %q, %v", src, got, err)
		}
	}
}

// TestChatTemplateNoTools: no tools, an empty list and none at all render
// alike, as they did before tools.
func TestChatTemplateNoTools(t *testing.T) {
	_, tok := loadStories(t)
	conv := []chatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello."}, {Role: "user", Content: "Bye"}}
	for _, src := range []string{templateChatML, templateLlama3, templateLlama2, qwen2Template, llama3Template, toolsEcho} {
		ct, err := newChatTemplate(src, "", "", tok, jinja.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ct.render(conv, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, tools := range [][]any{nil, {}} {
			if got, err := ct.render(conv, tools); err != nil || got != want {
				t.Errorf("%.30q with tools %v: %q, %v; want %q", src, tools, got, err, want)
			}
		}
	}
}

// TestChatTemplateToolValues: a template that renders tools gets them as
// transformers gives them: tools (none without), each call's id, type,
// name and arguments (the object when they are JSON), and tool_call_id;
// its format is told by its source.
func TestChatTemplateToolValues(t *testing.T) {
	_, tok := loadStories(t)
	ct, err := newChatTemplate(toolsEcho, "", "", tok, jinja.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	conv := append(slices.Clone(toolConv[1:4]), chatMessage{Role: "assistant", ToolCalls: []toolcall.Call{{ID: "call_3", Name: "now", Arguments: "not JSON"}}})
	got, err := ct.render(conv, testTools())
	want := "get_weather,now|user:Weather in Paris and Tokyo?" +
		`|assistant:Let me check.(call_1 function get_weather True {"location": "Paris", "days": 2})(call_2 function get_weather True {"location": "Tokyo"})` +
		`|tool:sunny, 21 C[call_1]|assistant:(call_3 function now False "not JSON")`
	if err != nil || got != want {
		t.Fatalf("rendered\n%q, %v\nwant\n%q", got, err, want)
	}
	if got, err := ct.render(conv[:1], nil); err != nil || got != "none|user:Weather in Paris and Tokyo?" {
		t.Fatalf("without tools: %q, %v", got, err)
	}
	if f := ct.toolFormat(); f != toolcall.Hermes {
		t.Errorf("format %s", f)
	}
	ct, err = newChatTemplate(toolsEcho+`{{ '<|python_tag|>' }}`, "", "", tok, jinja.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if f := ct.toolFormat(); f != toolcall.Llama3 {
		t.Errorf("format %s", f)
	}
}

// TestChatTemplateToolsBudget: tools too big for the render's budget are
// refused, whether the template or the server's preamble lists them.
func TestChatTemplateToolsBudget(t *testing.T) {
	_, tok := loadStories(t)
	tools := []any{map[string]any{"type": "function", "function": map[string]any{"name": "f", "description": strings.Repeat("x", 2<<20)}}}
	for _, src := range []string{templateChatML, qwen2Template} {
		ct, err := newChatTemplate(src, "", "", tok, jinja.Limits{Steps: jinja.DefaultLimits.Steps, OutputBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ct.render([]chatMessage{{Role: "user", Content: "Hi"}}, tools); err == nil || !strings.Contains(err.Error(), "exceeded its render budget of 1048576 output bytes") {
			t.Errorf("%.30q: %v", src, err)
		}
	}
}

// TestBuiltinSystemMessages: Gemma, which has no system role, gets a system
// message at the head of the next user turn; Phi-3 renders its own.
func TestBuiltinSystemMessages(t *testing.T) {
	_, tok := loadStories(t)
	conv := []chatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hello!"}}
	for _, c := range []struct{ name, src, want string }{
		{"gemma", templateGemma, "<s><start_of_turn>user\nBe brief.\n\nHello!<end_of_turn>\n<start_of_turn>model\n"},
		{"phi3", templatePhi3, "<|system|>\nBe brief.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\n"},
	} {
		ct, err := newChatTemplate(c.src, "", "", tok, jinja.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ct.render(conv, nil); err != nil || got != c.want {
			t.Errorf("%s: rendered %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}

// TestBuiltinByArch: a vocabulary that names no chat format (stories260K's)
// gets its architecture's template, and ChatML when that has none.
func TestBuiltinByArch(t *testing.T) {
	_, tok := loadStories(t)
	for arch, want := range map[string]string{"gemma2": "gemma", "gemma3": "gemma", "phi3": "phi3", "llama": "chatml", "": "chatml"} {
		if got, _ := builtinTemplate(tok, arch); got != want {
			t.Errorf("%q: template %s, want %s", arch, got, want)
		}
	}
}
