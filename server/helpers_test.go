package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// rig is a server on loopback serving stories260K with the real engine.
type rig struct {
	t    testing.TB
	url  string
	srv  *Server
	b    *batcher.Batcher
	tok  *tokenizer.Tokenizer
	pool *engine.KVPool
	logs *bytes.Buffer
	logw *lockedWriter
}

type rigOptions struct {
	cfg     Config
	bc      batcher.Config
	blocks  int  // KV blocks of 16 positions (default 2048)
	loading bool // do not call SetReady
	// chatTemplate replaces the file's tokenizer.chat_template.
	chatTemplate string
	// context, when set, is the context served in place of the model's.
	context int
	// runner, when set, wraps the engine the batcher steps.
	runner func(batcher.Runner) batcher.Runner
	// fleet, when set, sets the model's Fleet and Forward.
	fleet func(*Model)
	// model, when set, is the GGUF file served in place of stories260K.
	model string
}

// startRig starts a server; everything stops when the test ends.
func startRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	if o.model == "" {
		o.model = shared.Path(t, "models/stories260K.gguf")
	}
	m, tok := loadModel(t, o.model)
	be := cpu.New(1)
	t.Cleanup(be.Close)
	e, err := engine.New(m, be, kernels.OrderBatchInvariant)
	if err != nil {
		t.Fatal(err)
	}
	if o.blocks == 0 {
		o.blocks = 2048
	}
	width := m.KVHeads * m.HeadDim
	pool, err := engine.NewKVPool(engine.KVPoolConfig{Layers: len(m.Layers), Width: width,
		Bytes: int64(o.blocks) * int64(len(m.Layers)) * 2 * 16 * int64(width) * 2, ToHalf: be.ToHalf})
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	logw := &lockedWriter{w: logs}
	if o.cfg.Logger == nil {
		o.cfg.Logger = slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.bc.Logger == nil {
		o.bc.Logger = o.cfg.Logger
	}
	var runner batcher.Runner = e
	if o.runner != nil {
		runner = o.runner(e)
	}
	b := batcher.New(runner, tok, pool, o.bc)
	t.Cleanup(b.Close)
	if o.cfg.ModelName == "" {
		o.cfg.ModelName = "stories260K"
	}
	s := New(o.cfg)
	if !o.loading {
		tmpl, _ := m.File.String("tokenizer.chat_template")
		if o.chatTemplate != "" {
			tmpl = o.chatTemplate
		}
		ctxLen := m.Context
		if o.context > 0 {
			ctxLen = o.context
		}
		ready := Model{Batcher: b, Tokenizer: tok, Context: ctxLen, ChatTemplate: tmpl, Arch: m.Arch}
		if o.fleet != nil {
			o.fleet(&ready)
		}
		if err := s.SetReady(ready); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return &rig{t: t, url: "http://" + ln.Addr().String(), srv: s, b: b, tok: tok, pool: pool, logs: logs, logw: logw}
}

// loadStories loads stories260K and its tokenizer; the model closes when
// the test ends.
func loadStories(t testing.TB) (*models.Model, *tokenizer.Tokenizer) {
	t.Helper()
	return loadModel(t, shared.Path(t, "models/stories260K.gguf"))
}

func loadModel(t testing.TB, path string) (*models.Model, *tokenizer.Tokenizer) {
	t.Helper()
	m, err := models.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tok, err := tokenizer.FromGGUF(m.File)
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// logText returns what the server logged so far.
func (r *rig) logText() string {
	r.logw.mu.Lock()
	defer r.logw.mu.Unlock()
	return r.logs.String()
}

// response is an HTTP answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("status %d, body %q: %v", r.status, r.body, err)
	}
	return v
}

// do sends a request with a raw body ("" for none) and headers as pairs.
func (r *rig) do(method, path, body string, headers ...string) response {
	r.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.url+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	// A body of known length is read into one buffer: io.ReadAll grows by
	// a quarter at a time, which allocates several times a long answer
	// (and the memory tests count the client's heap too).
	var b []byte
	if resp.ContentLength >= 0 {
		b = make([]byte, resp.ContentLength)
		_, err = io.ReadFull(resp.Body, b)
	} else {
		b, err = io.ReadAll(resp.Body)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// post sends v as JSON and expects a 200.
func (r *rig) post(path string, v any) map[string]any {
	r.t.Helper()
	b, _ := json.Marshal(v)
	resp := r.do("POST", path, string(b))
	if resp.status != 200 {
		r.t.Fatalf("POST %s %s: status %d: %s", path, b, resp.status, resp.body)
	}
	return resp.json(r.t)
}

// sse reads a stream of server-sent events: the JSON payloads, and whether
// the last one was [DONE].
func (r *rig) sse(path string, v any) (events []map[string]any, done bool) {
	r.t.Helper()
	b, _ := json.Marshal(v)
	resp, err := http.Post(r.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		r.t.Fatalf("POST %s: status %d: %s", path, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		r.t.Fatalf("Content-Type %q", ct)
	}
	return readSSE(r.t, resp.Body)
}

func readSSE(t testing.TB, body io.Reader) (events []map[string]any, done bool) {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		if done {
			t.Fatalf("data after [DONE]: %q", line)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		events = append(events, ev)
	}
	return events, done
}

// metric reads a sample of the server's /metrics by name ("" labels match
// any), failing the test when it is missing.
func (r *rig) metric(name string) float64 {
	r.t.Helper()
	resp := r.do("GET", "/metrics", "")
	for _, line := range strings.Split(string(resp.body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
		if err != nil {
			r.t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	r.t.Fatalf("no %s in /metrics:\n%s", name, resp.body)
	return 0
}

// waitMetric polls the metric every 20 ms until ok holds for it, or fails
// the test after within; it returns how long that took.
func (r *rig) waitMetric(name string, within time.Duration, ok func(float64) bool) time.Duration {
	r.t.Helper()
	start := time.Now()
	for {
		v := r.metric(name)
		if ok(v) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			r.t.Fatalf("%s is still %v after %v", name, v, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitNoneInFlight waits until the server answers no generation request.
func (r *rig) waitNoneInFlight(within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for r.srv.InFlight() != 0 {
		if time.Now().After(deadline) {
			r.t.Fatalf("%d requests still in flight after %v", r.srv.InFlight(), within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitIdle waits until the batcher has nothing running or waiting and
// every KV block is free (cached prefix blocks count as free).
func (r *rig) waitIdle(within time.Duration) batcher.Stats {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := r.b.Stats()
		if st.Running == 0 && st.Waiting == 0 && st.KVUsage == 0 {
			return st
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("not idle after %v: %+v", within, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// goldenContinuation reads the greedy ids of stories260K after "Once upon
// a time" from ../shared/golden/stories260K_greedy.txt.
func goldenContinuation(t testing.TB) (promptIDs, ids []int32) {
	t.Helper()
	f, err := os.Open(shared.Path(t, "golden/stories260K_greedy.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parse := func(s string) []int32 {
		var out []int32
		for _, f := range strings.Fields(s) {
			v, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, int32(v))
		}
		return out
	}
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "model="):
			in = strings.HasPrefix(line, `model=stories260K.gguf prompt="Once upon a time"`)
		case in && strings.HasPrefix(line, "prompt ids: "):
			promptIDs = parse(strings.TrimPrefix(line, "prompt ids: "))
		case in && strings.HasPrefix(line, "ids: "):
			return promptIDs, parse(strings.TrimPrefix(line, "ids: "))
		}
	}
	t.Fatal("golden block for \"Once upon a time\" not found")
	return nil, nil
}

// choiceTexts returns the choices' texts by index.
func choiceTexts(t testing.TB, v map[string]any) []string {
	t.Helper()
	cs := v["choices"].([]any)
	out := make([]string, len(cs))
	for _, c := range cs {
		c := c.(map[string]any)
		i := int(c["index"].(float64))
		if text, ok := c["text"].(string); ok {
			out[i] = text
		} else {
			out[i] = c["message"].(map[string]any)["content"].(string)
		}
	}
	return out
}

func finishReason(v map[string]any, i int) string {
	for _, c := range v["choices"].([]any) {
		c := c.(map[string]any)
		if int(c["index"].(float64)) == i {
			s, _ := c["finish_reason"].(string)
			return s
		}
	}
	return ""
}

func usageOf(t testing.TB, v map[string]any) (prompt, completion, total int) {
	t.Helper()
	u, ok := v["usage"].(map[string]any)
	if !ok {
		t.Fatalf("no usage in %v", v)
	}
	return int(u["prompt_tokens"].(float64)), int(u["completion_tokens"].(float64)), int(u["total_tokens"].(float64))
}
