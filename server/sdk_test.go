package server

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// need returns the path of a program a test runs, skipping the test when it
// is missing (failing it under CI=true, where .ci/run installs it).
func need(t *testing.T, program, why string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (%s; .ci/run installs it)", program, why)
		}
		t.Skipf("%s is not installed (%s)", program, why)
	}
	return p
}

// TestOpenAINodeSDK: the official OpenAI Node SDK, a client we did not
// write, runs completion, streamed completion, chat, streamed chat and
// error calls against the server (testdata/sdk/calls.mjs).
func TestOpenAINodeSDK(t *testing.T) {
	node := need(t, "node", "the OpenAI Node SDK runs on it")
	dir, _ := filepath.Abs("testdata/sdk")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the openai npm package is not installed: .ci/run runs npm ci in server/testdata/sdk")
		}
		t.Skip("the openai npm package is not installed: run npm ci in server/testdata/sdk")
	}
	r := startRig(t, rigOptions{cfg: Config{APIKeys: []string{"sdk-key"}}})
	_, golden := goldenContinuation(t)
	wantText := r.tok.Detokenize(golden[:16], false, false)

	cmd := exec.Command(node, "calls.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GODWIT_URL="+r.url, "GODWIT_KEY=sdk-key", "GODWIT_MODEL=stories260K")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node calls.mjs: %v\n%s", err, stderr.String())
	}
	var res struct {
		Completion struct {
			ID, Object, Text, Finish string
			Usage                    map[string]int
		}
		StreamedCompletion struct {
			Text   string
			Usage  map[string]int
			Chunks int
		}
		Chat struct {
			Object, Role, Content, Finish string
			Usage                         map[string]int
		}
		StreamedChat     struct{ Role, Content, Finish string }
		ChatStreamHelper struct{ Content string }
		Error            *struct {
			Name, Type, Param, Message string
			Status                     int
		}
		NotFound *struct {
			Name   string
			Status int
		}
		Models    []string
		Retrieved struct{ ID, Object string }
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("%s", out)
	c := res.Completion
	if c.Text != wantText || c.Finish != "length" || c.Object != "text_completion" || c.Usage["completion_tokens"] != 16 || c.Usage["total_tokens"] != 21 {
		t.Errorf("completion %+v, want text %q", c, wantText)
	}
	if s := res.StreamedCompletion; s.Text != wantText || s.Usage["completion_tokens"] != 16 || s.Chunks < 16 {
		t.Errorf("streamed completion %+v", s)
	}
	ch := res.Chat
	if ch.Object != "chat.completion" || ch.Role != "assistant" || ch.Content == "" || ch.Finish != "length" || ch.Usage["completion_tokens"] != 12 {
		t.Errorf("chat %+v", ch)
	}
	if s := res.StreamedChat; s.Role != "assistant" || s.Content != ch.Content || s.Finish != "length" {
		t.Errorf("streamed chat %+v, want content %q", s, ch.Content)
	}
	if res.ChatStreamHelper.Content != ch.Content {
		t.Errorf("stream helper %q, want %q", res.ChatStreamHelper.Content, ch.Content)
	}
	if e := res.Error; e == nil || e.Name != "BadRequestError" || e.Status != 400 || e.Type != typeInvalid || e.Param != "temperature" {
		t.Errorf("error %+v", e)
	}
	if e := res.NotFound; e == nil || e.Name != "NotFoundError" || e.Status != 404 {
		t.Errorf("unknown model %+v", e)
	}
	if len(res.Models) != 1 || res.Models[0] != "stories260K" {
		t.Errorf("models %v", res.Models)
	}
	if res.Retrieved.ID != "stories260K" || res.Retrieved.Object != "model" {
		t.Errorf("models.retrieve: %+v", res.Retrieved)
	}
}
