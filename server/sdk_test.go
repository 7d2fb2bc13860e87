package server

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/internal/synth"
	"github.com/godwit-ai/godwit/models/gguf"
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

// randomQwen3 writes a random-weight qwen3 model with Qwen2's 151k-token
// vocabulary: its preferences are noise, so only the constraint makes its
// tool calls and objects well formed.
func randomQwen3(t *testing.T) string {
	t.Helper()
	f, err := gguf.Open(shared.Path(t, "vocab/ggml-vocab-qwen2.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vocab, err := synth.VocabFrom(f)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "qwen3-random.gguf")
	spec := synth.Spec{Arch: "qwen3", Name: "qwen3-random", Dim: 64, Layers: 2, Heads: 4, KVHeads: 2, FFN: 128, Type: gguf.Q8_0, Seed: 5}
	if err := synth.Write(path, spec, vocab); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAgentSDKs: what agent code does every day, through clients we did
// not write (testdata/sdk/agents.mjs): the Vercel AI SDK's generateText
// with a required and a named tool and streamText with tools, LangChain's
// withStructuredOutput of a zod schema (by JSON schema and by function
// calling) and the OpenAI SDK's chat.completions.parse with a zod response
// format. Each client parses and checks what it gets; the test checks it
// got it, against stories260K and against a random-weight qwen3 model.
func TestAgentSDKs(t *testing.T) {
	node := need(t, "node", "the SDKs run on it")
	dir, _ := filepath.Abs("testdata/sdk")
	for _, pkg := range []string{"ai", "@ai-sdk/openai-compatible", "@langchain/openai", "zod", "openai"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("the npm package %s is not installed: .ci/run runs npm ci in server/testdata/sdk", pkg)
			}
			t.Skipf("the npm package %s is not installed: run npm ci in server/testdata/sdk", pkg)
		}
	}
	for _, c := range []struct{ name, model string }{{"stories260K", ""}, {"qwen3-random", randomQwen3(t)}} {
		t.Run(c.name, func(t *testing.T) {
			r := startRig(t, rigOptions{cfg: Config{APIKeys: []string{"sdk-key"}, ModelName: c.name}, model: c.model})
			cmd := exec.Command(node, "agents.mjs")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GODWIT_URL="+r.url, "GODWIT_KEY=sdk-key", "GODWIT_MODEL="+c.name)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("node agents.mjs: %v\n%s", err, stderr.String())
			}
			t.Logf("%s", out)
			type call struct {
				Name    string
				Input   map[string]any
				Invalid bool
			}
			var res struct {
				GenerateText struct {
					Finish string
					Calls  []call
					Valid  bool
					Error  any
				}
				NamedTool struct {
					Calls []call
					Error any
				}
				StreamText struct {
					Parts  map[string]int
					Calls  []call
					Finish string
					Valid  bool
					Error  any
				}
				StreamAuto struct {
					Finish string
					Error  any
				}
				LangchainJSONSchema, LangchainFunctionCalling, Parse struct {
					Valid bool
					Error any
				}
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if g := res.GenerateText; !g.Valid || g.Finish != "tool-calls" || g.Error != nil {
				t.Errorf("generateText with toolChoice required: %+v", g)
			}
			if n := res.NamedTool; n.Error != nil || len(n.Calls) == 0 || n.Calls[0].Name != "add" {
				t.Errorf("generateText with a named tool: %+v", n)
			}
			if s := res.StreamText; !s.Valid || s.Finish != "tool-calls" || s.Error != nil || s.Parts["tool-call"] == 0 || s.Parts["tool-input-delta"] == 0 {
				t.Errorf("streamText with tools: %+v", s)
			}
			if s := res.StreamAuto; s.Error != nil || s.Finish == "" || s.Finish == "error" {
				t.Errorf("streamText with toolChoice auto: %+v", s)
			}
			for name, r := range map[string]struct {
				Valid bool
				Error any
			}{"withStructuredOutput jsonSchema": res.LangchainJSONSchema, "withStructuredOutput functionCalling": res.LangchainFunctionCalling, "chat.completions.parse": res.Parse} {
				if !r.Valid || r.Error != nil {
					t.Errorf("%s: %+v", name, r)
				}
			}
		})
	}
}
