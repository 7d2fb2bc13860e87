package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/internal/heappeak"
	"github.com/godwit-ai/godwit/internal/jinja"
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
	} {
		t.Run(c.name, func(t *testing.T) {
			ct, err := newChatTemplate(c.src, "", tok, jinja.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ct.render(conv)
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
	ct, err := newChatTemplate(alternateTemplate, "", tok, jinja.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ct.render([]chatMessage{{Role: "user"}, {Role: "user"}}); err == nil || !strings.Contains(err.Error(), "must alternate") {
		t.Fatalf("raise_exception: %v", err)
	}
	if _, err := newChatTemplate("{% for %}", "", tok, jinja.DefaultLimits); err == nil {
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
