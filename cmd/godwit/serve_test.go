package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/internal/shared"
)

// TestMain lets a test run the test binary as godwit itself
// (GODWIT_TEST_MAIN=1), so that serve runs as its own process.
func TestMain(m *testing.M) {
	if os.Getenv("GODWIT_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveProcess is godwit serve running as a child process.
type serveProcess struct {
	cmd  *exec.Cmd
	url  string
	logs *strings.Builder
	mu   *sync.Mutex
	done chan error
}

func startServe(t *testing.T, env []string, args ...string) *serveProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, append([]string{"serve"}, args...)...)
	cmd.Env = append(append(os.Environ(), "GODWIT_TEST_MAIN=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, logs: &strings.Builder{}, mu: &sync.Mutex{}, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		addr := regexp.MustCompile(`addr=(https?://\S+)`)
		sc := bufio.NewScanner(stderr)
		url := ""
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := addr.FindStringSubmatch(line); m != nil {
				url = m[1]
			}
			if strings.Contains(line, "msg=ready") {
				ready <- url
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	select {
	case p.url = <-ready:
	case err := <-p.done:
		t.Fatalf("godwit serve exited: %v\n%s", err, p.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("godwit serve did not get ready:\n%s", p.log())
	}
	return p
}

func (p *serveProcess) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// post sends body to path as JSON and returns the answer's JSON, which must
// come with status 200.
func (p *serveProcess) post(t *testing.T, path, body string) map[string]any {
	t.Helper()
	resp, err := http.Post(p.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: %d %v %v", path, resp.StatusCode, v, err)
	}
	return v
}

// peakRSS is the process's peak resident memory (VmHWM).
func peakRSS(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// TestServeDrainsOnSIGTERM: SIGTERM while streams are running: they
// complete, new requests get 503, and godwit exits 0 within the drain
// timeout. Flags come from GODWIT_* variables too.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	p := startServe(t, []string{"GODWIT_SERVED_MODEL_NAME=tiny", "GODWIT_DRAIN_TIMEOUT=20s"},
		"-m", stories, "--port", "0", "-t", "1", "--kv-cache-mem", "8MiB", "--max-num-seqs", "8")
	if resp, err := http.Get(p.url + "/health"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp, err := http.Get(p.url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"id":"tiny"`) {
		t.Fatalf("GODWIT_SERVED_MODEL_NAME not used: %s", body)
	}

	const streams = 12
	type result struct {
		last   string
		finish string
		err    error
	}
	results := make(chan result, streams)
	started := make(chan struct{}, streams)
	for range streams {
		go func() {
			resp, err := http.Post(p.url+"/v1/completions", "application/json",
				strings.NewReader(`{"model":"tiny","prompt":"Once upon a time","max_tokens":300,"ignore_eos":true,"stream":true}`))
			if err != nil {
				started <- struct{}{}
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			var res result
			first := true
			for sc.Scan() {
				line := sc.Text()
				if !strings.HasPrefix(line, "data: ") {
					continue
				}
				if first {
					started <- struct{}{}
					first = false
				}
				res.last = line
				if m := regexp.MustCompile(`"finish_reason":"(\w+)"`).FindStringSubmatch(line); m != nil {
					res.finish = m[1]
				}
			}
			if first {
				started <- struct{}{}
			}
			res.err = sc.Err()
			results <- res
		}()
	}
	for range streams {
		<-started
	}
	rss := peakRSS(p.cmd.Process.Pid)
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New requests are refused with 503 while the streams finish.
	refused := false
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !refused; {
		resp, err := http.Post(p.url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"Once","max_tokens":1}`))
		if err != nil {
			break // already stopped listening: too late to see the 503
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 503 {
			refused = true
			if !strings.Contains(string(body), "shutting down") {
				t.Errorf("503 body %s", body)
			}
		}
	}
	if !refused {
		t.Error("no new request was refused with 503 during the drain")
	}
	for range streams {
		r := <-results
		if r.err != nil || r.last != "data: [DONE]" || r.finish != "length" {
			t.Errorf("a stream in flight did not complete: finish %q, last %q, err %v", r.finish, r.last, r.err)
		}
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.log())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("godwit did not exit within the drain timeout\n%s", p.log())
	}
	t.Logf("exited 0 %v after SIGTERM; peak RSS %s", time.Since(sent).Round(time.Millisecond), rss)
	if log := p.log(); !strings.Contains(log, "msg=draining") || !strings.Contains(log, "msg=stopped") {
		t.Errorf("log:\n%s", log)
	}
}

// TestServeRefusesEmptyAPIKey: --api-key "$KEY" with KEY unset (or blank,
// or a list of blanks) is a start-up error, not a server without
// authentication.
func TestServeRefusesEmptyAPIKey(t *testing.T) {
	for _, key := range []string{"", " ", ","} {
		_, _, err := godwit(t, "serve", "--api-key", key, "--port", "0", "-m", "/nonexistent.gguf")
		if err == nil || !strings.Contains(err.Error(), "empty key") {
			t.Errorf("--api-key %q: %v, want an error about the empty key", key, err)
		}
	}
	for _, c := range []struct {
		keys []string
		set  bool
		want int
	}{{nil, false, 0}, {[]string{" a ", "b"}, true, 2}} {
		if keys, err := checkAPIKeys(c.keys, c.set); err != nil || len(keys) != c.want {
			t.Errorf("checkAPIKeys(%q, %v) = %q, %v", c.keys, c.set, keys, err)
		}
	}
}

// TestServeChatTemplateFlags: a --chat-template that does not parse is a
// start-up error naming the file, before the model loads; the render
// budget's flags are checked.
func TestServeChatTemplateFlags(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.jinja")
	if err := os.WriteFile(bad, []byte("{% for m in messages %}{{ m.content }}"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := godwit(t, "serve", "--chat-template", bad, "--port", "0", "-m", "/nonexistent.gguf")
	if err == nil || !strings.Contains(err.Error(), "chat template ("+bad+"): line 1:4: {% for %} is not closed") {
		t.Errorf("broken --chat-template: %v", err)
	}
	for _, args := range [][]string{{"--chat-template-max-bytes", "0"}, {"--chat-template-max-bytes", "lots"}, {"--chat-template-max-steps", "0"}} {
		_, _, err := godwit(t, append([]string{"serve", "--port", "0", "-m", "/nonexistent.gguf"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%s %s: %v", args[0], args[1], err)
		}
	}
}

// TestServeCtxSize: --ctx-size serves a shorter context than the model's:
// /v1/models says so and a request beyond it gets a 400 naming it; a size
// beyond the model's is refused.
func TestServeCtxSize(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	if _, _, err := godwit(t, "serve", "-m", stories, "--port", "0", "--ctx-size", "100000"); err == nil || !strings.Contains(err.Error(), "beyond the model's context of 2048") {
		t.Fatalf("--ctx-size past the model's: %v", err)
	}
	p := startServe(t, nil, "-m", stories, "--port", "0", "-t", "1", "--kv-cache-mem", "8MiB", "--ctx-size", "64")
	resp, err := http.Get(p.url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"max_model_len":64`) {
		t.Fatalf("/v1/models with --ctx-size 64: %s", body)
	}
	resp, err = http.Post(p.url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"Once upon a time","max_tokens":100}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "maximum context length is 64") {
		t.Fatalf("past 64 tokens: %d %s", resp.StatusCode, body)
	}
}

// TestServeGemmaChat: godwit serve on a gemma2 file, which has no chat
// template and a vocabulary without Gemma's turn tokens, answers chat
// through the built-in Gemma template: the prompt is the Gemma rendering,
// token for token.
func TestServeGemmaChat(t *testing.T) {
	p := startServe(t, nil, "-m", shared.Path(t, "models/random-families/gemma2-F32.gguf"), "--port", "0", "-t", "1", "--kv-cache-mem", "8MiB")
	post := func(path, body string) map[string]any { return p.post(t, path, body) }
	v := post("/v1/chat/completions", `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Tell me a story."}],"max_tokens":8,"temperature":0,"ignore_eos":true}`)
	choice := v["choices"].([]any)[0].(map[string]any)
	if content, _ := choice["message"].(map[string]any)["content"].(string); content == "" || choice["finish_reason"] != "length" {
		t.Fatalf("chat answer %v", v)
	}
	// Without a GPU backend the CPU computes, and one log line says why.
	if n := strings.Count(p.log(), "msg=device using=cpu why="); n != 1 {
		t.Errorf("%d device lines in the log:\n%s", n, p.log())
	}
	rendered := "<start_of_turn>user\nBe brief.\n\nTell me a story.<end_of_turn>\n<start_of_turn>model\n"
	tv := post("/tokenize", `{"prompt":`+strconv.Quote(rendered)+`}`)
	if got, want := v["usage"].(map[string]any)["prompt_tokens"], tv["count"]; got != want {
		t.Fatalf("prompt_tokens %v, want the Gemma rendering's %v", got, want)
	}
}

// TestServeLongRoPE: a phi3 file (LongRoPE, original context 4096) served
// with --ctx-size 4096 rotates by its short factors and gives llama.cpp's
// greedy tokens (run with n_ctx 512); with --ctx-size 8192 it rotates by
// its long factors and answers otherwise.
func TestServeLongRoPE(t *testing.T) {
	var g struct {
		Runs []struct {
			PromptIDs []int32 `json:"prompt_ids"`
			GenIDs    []int32 `json:"gen_ids"`
		} `json:"runs"`
	}
	b, err := os.ReadFile(shared.Path(t, "models/random-families/phi3-F32.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	run := g.Runs[0]
	ids := func(x []int32) string { b, _ := json.Marshal(x); return string(b) }
	var want string
	for _, c := range []struct {
		ctx   string
		short bool
	}{{"4096", true}, {"8192", false}} {
		p := startServe(t, nil, "-m", shared.Path(t, "models/random-families/phi3-F32.gguf"), "--port", "0", "-t", "1",
			"--kv-cache-mem", "32MiB", "--ctx-size", c.ctx)
		post := func(path, body string) map[string]any { return p.post(t, path, body) }
		if want == "" {
			want = post("/detokenize", `{"tokens":`+ids(run.GenIDs[:12])+`}`)["prompt"].(string)
		}
		v := post("/v1/completions", `{"prompt":`+ids(run.PromptIDs)+`,"max_tokens":12,"temperature":0,"ignore_eos":true}`)
		got := v["choices"].([]any)[0].(map[string]any)["text"].(string)
		if (got == want) != c.short {
			t.Errorf("--ctx-size %s: %q, llama.cpp's (short factors) %q", c.ctx, got, want)
		}
		_ = p.cmd.Process.Kill()
	}
}
