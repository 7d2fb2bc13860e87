package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/engine"
)

// TestPanicIs500: a panic in a handler answers 500 with the request id, the
// stack is logged, and the server keeps serving.
func TestPanicIs500(t *testing.T) {
	r := startRig(t, rigOptions{})
	r.srv.routes["/v1/panic"] = route{method: "POST", gen: true, h: func(*Server, *fasthttp.RequestCtx, *ready) *apiError {
		var m map[string]int
		m["boom"]++ // a nil map write
		return nil
	}}
	resp := r.do("POST", "/v1/panic", "{}")
	checkError(t, resp, 500, typeServer, "", "request id")
	id := resp.header.Get("X-Request-Id")
	if id == "" || !strings.Contains(string(resp.body), id) {
		t.Fatalf("request id %q not in %s", id, resp.body)
	}
	if logs := r.logText(); !strings.Contains(logs, "panic in handler") || !strings.Contains(logs, "robust_test.go") || !strings.Contains(logs, id) {
		t.Fatalf("stack not logged:\n%s", logs)
	}
	// A client's own request id is used.
	resp = r.do("POST", "/v1/panic", "{}", "X-Request-Id", "abc-123")
	if !strings.Contains(string(resp.body), "abc-123") {
		t.Fatalf("%s", resp.body)
	}
	if r.srv.InFlight() != 0 {
		t.Fatalf("%d in flight after panics", r.srv.InFlight())
	}
	r.post("/v1/completions", map[string]any{"prompt": "Once", "max_tokens": 2})
	if resp := r.do("GET", "/health", ""); resp.status != 200 {
		t.Fatalf("health after a panic: %d", resp.status)
	}
}

// openStream starts a streaming completion and returns its reader after the
// first chunk arrived, and a function that hangs up.
func openStream(t *testing.T, url string, maxTokens int) (*bufio.Reader, func()) {
	t.Helper()
	body := fmt.Sprintf(`{"prompt":"Once upon a time","max_tokens":%d,"ignore_eos":true,"stream":true}`, maxTokens)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/completions", strings.NewReader(body))
	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return br, func() {
		cancel()
		resp.Body.Close()
		tr.CloseIdleConnections()
	}
}

// TestDisconnectCancels: a client that hangs up mid-stream cancels its
// request, and its KV blocks are free right after.
func TestDisconnectCancels(t *testing.T) {
	r := startRig(t, rigOptions{})
	_, hangUp := openStream(t, r.url, 2000)
	if st := r.b.Stats(); st.GenerationTokens >= 1990 {
		t.Skip("the whole stream was generated before the hang-up")
	}
	hangUp()
	st := r.waitIdle(2 * time.Second)
	if st.GenerationTokens >= 2000 {
		t.Fatalf("the request ran to the end: %d tokens", st.GenerationTokens)
	}
	r.waitNoneInFlight(2 * time.Second)
}

// TestQueueFull: past the queue limit a request gets 429 with Retry-After.
func TestQueueFull(t *testing.T) {
	r := startRig(t, rigOptions{bc: batcher.Config{MaxSeqs: 1, MaxQueue: 1}})
	_, hangUp := openStream(t, r.url, 2000) // runs
	defer hangUp()
	waiting := make(chan response, 1)
	go func() {
		resp, err := http.Post(r.url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"Once","max_tokens":2}`))
		if err != nil {
			waiting <- response{}
			return
		}
		resp.Body.Close()
		waiting <- response{status: resp.StatusCode}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for r.b.Stats().Waiting != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the second request never waited: %+v", r.b.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	resp := r.do("POST", "/v1/completions", `{"prompt":"Once","max_tokens":2}`)
	checkError(t, resp, 429, typeRateLimit, "", "retry")
	if resp.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", resp.header.Get("Retry-After"))
	}
	hangUp()
	if w := <-waiting; w.status != 200 {
		t.Fatalf("the waiting request got %d", w.status)
	}
	r.waitIdle(2 * time.Second)
}

// TestDrain: while draining, /health and new requests get 503, requests in
// flight finish, and Drain returns once they have.
func TestDrain(t *testing.T) {
	r := startRig(t, rigOptions{})
	br, hangUp := openStream(t, r.url, 300)
	defer hangUp()
	drained := make(chan error, 1)
	go func() { drained <- r.srv.Drain(context.Background()) }()
	deadline := time.Now().Add(2 * time.Second)
	for !r.srv.drain.Load() {
		if time.Now().After(deadline) {
			t.Fatal("not draining")
		}
		time.Sleep(time.Millisecond)
	}
	checkError(t, r.do("POST", "/v1/completions", `{"prompt":"a"}`), 503, typeUnavailable, "", "shutting down")
	checkError(t, r.do("GET", "/health", ""), 503, typeUnavailable, "", "shutting down")
	if r := r.do("POST", "/tokenize", `{"prompt":"a"}`); r.status != 200 {
		t.Fatalf("tokenize while draining: %d", r.status)
	}
	// The stream in flight runs to its end.
	var last string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(line, "data: ") {
			last = line
		}
	}
	if last != "data: [DONE]\n" {
		t.Fatalf("the stream in flight ended with %q", last)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return")
	}
}

// TestLoad: many concurrent streaming clients, a third of whom hang up
// mid-stream, against a small queue: the only errors are 429s, and
// afterwards nothing runs, nothing waits and every KV block is back in the
// pool. GODWIT_LOAD_CLIENTS and GODWIT_LOAD_SECONDS set the size (200 and
// 2 here; the full run is GODWIT_LOAD_SECONDS=30 go test ./server
// -run TestLoad -v). Peak RSS is logged.
func TestLoad(t *testing.T) {
	clients, seconds := envInt("GODWIT_LOAD_CLIENTS", 200), envInt("GODWIT_LOAD_SECONDS", 2)
	if testing.Short() {
		seconds = 1
	}
	r := startRig(t, rigOptions{bc: batcher.Config{MaxSeqs: 32, MaxQueue: 48}, blocks: 512})
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	var ok, hungUp, busy, failed atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(time.Duration(seconds) * time.Second)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				hang := c%3 == 0
				maxTokens := 16 + (c*7+i*13)%48
				body := fmt.Sprintf(`{"prompt":"Once upon a time %d","max_tokens":%d,"ignore_eos":true,"stream":true,"temperature":0.8}`, c%17, maxTokens)
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, "POST", r.url+"/v1/completions", strings.NewReader(body))
				resp, err := client.Do(req)
				if err != nil {
					cancel()
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				switch resp.StatusCode {
				case 200:
				case 429:
					resp.Body.Close()
					cancel()
					busy.Add(1)
					time.Sleep(time.Duration(5+c%20) * time.Millisecond)
					continue
				default:
					resp.Body.Close()
					cancel()
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint("status ", resp.StatusCode))
					continue
				}
				sc := bufio.NewScanner(resp.Body)
				chunks, done := 0, false
				for sc.Scan() {
					line := sc.Text()
					if line == "data: [DONE]" {
						done = true
					} else if strings.HasPrefix(line, "data: ") {
						var ev map[string]any
						if json.Unmarshal([]byte(line[6:]), &ev) != nil || ev["error"] != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, line)
						}
						chunks++
						if hang && chunks == 3 {
							break
						}
					}
				}
				cancel()
				resp.Body.Close()
				switch {
				case hang && chunks == 3:
					hungUp.Add(1)
				case done:
					ok.Add(1)
				default:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("stream ended after %d chunks without [DONE]: %v", chunks, sc.Err()))
				}
			}
		}()
	}
	wg.Wait()
	tr.CloseIdleConnections()
	st := r.waitIdle(5 * time.Second)
	rss := peakRSS()
	t.Logf("%d clients for %ds: %d streams finished, %d hung up, %d answered 429, %d failed; %d tokens generated, %d preemptions; peak RSS %s",
		clients, seconds, ok.Load(), hungUp.Load(), busy.Load(), failed.Load(), st.GenerationTokens, st.Preemptions, rss)
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed; first: %v", failed.Load(), firstErr.Load())
	}
	if ok.Load() == 0 || hungUp.Load() == 0 {
		t.Fatal("no stream finished or none hung up")
	}
	if busy.Load() == 0 {
		t.Error("the queue never filled: no 429 was answered")
	}
	r.waitNoneInFlight(2 * time.Second)
	// The hung-up requests cost nothing afterwards: the next request is
	// served at once from an empty batch, so the batcher takes one step per
	// token of it (the prompt's yields the first) and generates nothing else.
	before := r.b.Stats()
	resp := r.post("/v1/completions", map[string]any{"prompt": "Once upon a time", "max_tokens": 8})
	after := r.waitIdle(time.Second)
	u, _ := resp["usage"].(map[string]any)
	if u["completion_tokens"] != 8.0 || after.Steps-before.Steps != 8 || after.GenerationTokens-before.GenerationTokens != 8 ||
		after.Preemptions != before.Preemptions {
		t.Fatalf("a request of 8 tokens after the load: usage %v; %d steps, %d tokens generated, %d preemptions",
			u, after.Steps-before.Steps, after.GenerationTokens-before.GenerationTokens, after.Preemptions-before.Preemptions)
	}
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v > 0 {
		return v
	}
	return def
}

// peakRSS is this process's peak resident memory (VmHWM).
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// dial opens a raw connection to the server; it closes when the test ends.
func (r *rig) dial() net.Conn {
	r.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close() })
	return conn
}

// rawPost writes a POST of body to path on conn, as HTTP/1.1 with
// keep-alive.
func rawPost(t *testing.T, conn net.Conn, path, body string) {
	t.Helper()
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
}

// readCompletion reads a whole completion's answer from br and checks that
// it is a 200 of tokens completion tokens.
func readCompletion(t *testing.T, br *bufio.Reader, tokens int) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	if _, completion, _ := usageOf(t, v); completion != tokens {
		t.Fatalf("%d tokens, want %d: %v", completion, tokens, v)
	}
}

// TestNonStreamedDisconnectCancels: a non-streamed request, which writes
// nothing until its answer is whole, stops generating within a second of
// its client hanging up.
func TestNonStreamedDisconnectCancels(t *testing.T) {
	r := startRig(t, rigOptions{})
	conn := r.dial()
	const n, maxTokens = 4, 2000
	rawPost(t, conn, "/v1/completions", fmt.Sprintf(`{"prompt":"Once upon a time","max_tokens":%d,"n":%d,"ignore_eos":true}`, maxTokens, n))
	r.waitMetric("vllm:num_requests_running", 2*time.Second, func(v float64) bool { return v == n })
	conn.Close()
	took := r.waitMetric("vllm:num_requests_running", 2*time.Second, func(v float64) bool { return v == 0 })
	if took > time.Second {
		t.Errorf("the request ran on for %v after its client hung up", took)
	}
	if st := r.b.Stats(); st.GenerationTokens >= n*maxTokens {
		t.Fatalf("the request ran to its end (%d tokens), so the hang-up went unseen", st.GenerationTokens)
	}
	r.waitIdle(time.Second)
	r.waitNoneInFlight(2 * time.Second)
	if v := r.metric(`godwit_http_requests_total{code="499",path="/v1/completions"}`); v != 1 {
		t.Errorf("%v requests counted as 499, want 1", v)
	}
}

// TestKeepAlivePipelined: watching the connection of a non-streamed request
// leaves keep-alive alone: a request pipelined behind it on the same
// connection (waiting in the socket while the first generates) is answered
// after it, and the connection serves a third.
func TestKeepAlivePipelined(t *testing.T) {
	r := startRig(t, rigOptions{})
	conn := r.dial()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	read := func(maxTokens int) { t.Helper(); readCompletion(t, br, maxTokens) }
	body := func(maxTokens int) string {
		return fmt.Sprintf(`{"prompt":"Once upon a time","max_tokens":%d,"ignore_eos":true}`, maxTokens)
	}
	rawPost(t, conn, "/v1/completions", body(200))
	// Sent once the first runs, the second waits in the socket, where
	// the watch of the first sees it.
	r.waitMetric("vllm:num_requests_running", 2*time.Second, func(v float64) bool { return v == 1 })
	rawPost(t, conn, "/v1/completions", body(3))
	read(200)
	read(3)
	rawPost(t, conn, "/v1/completions", body(5))
	read(5)
}

// stepFault is the engine with one step that panics: the first to run two
// sequences or more, so that both requests of a two-prompt completion are in
// it.
type stepFault struct {
	batcher.Runner
	fired atomic.Bool
}

func (f *stepFault) Step(in []engine.SeqInput) ([]float32, error) {
	if len(in) >= 2 && f.fired.CompareAndSwap(false, true) {
		panic("injected step fault")
	}
	return f.Runner.Step(in)
}

// TestStepPanicIs500: the requests of a step that panics get a 500 with an
// OpenAI error body, the stack is logged once, and later requests are
// served.
func TestStepPanicIs500(t *testing.T) {
	fault := &stepFault{}
	r := startRig(t, rigOptions{runner: func(e batcher.Runner) batcher.Runner { fault.Runner = e; return fault }})
	body := `{"prompt":["Once upon a time","There was a dog"],"max_tokens":20,"ignore_eos":true,"temperature":0}`
	resp := r.do("POST", "/v1/completions", body)
	checkError(t, resp, 500, typeServer, "", "injected step fault")
	if !fault.fired.Load() {
		t.Fatal("the fault never fired")
	}
	r.waitIdle(2 * time.Second)
	// The same request now runs, and its greedy text is the golden one.
	_, golden := goldenContinuation(t)
	v := r.post("/v1/completions", map[string]any{"prompt": []string{"Once upon a time", "There was a dog"}, "max_tokens": 16, "temperature": 0})
	if got, want := choiceTexts(t, v)[0], r.tok.Detokenize(golden[:16], false, false); got != want {
		t.Fatalf("text after the fault %q\nwant %q", got, want)
	}
	if text := choiceTexts(t, v)[1]; text == "" || finishReason(v, 1) == "" {
		t.Fatalf("second choice after the fault: %q, finish %q", text, finishReason(v, 1))
	}
	logs := r.logText()
	if n := strings.Count(logs, "runtime/debug.Stack()"); n != 1 {
		t.Fatalf("%d stacks logged, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, "a step panicked"); n != 1 {
		t.Fatalf("the panic logged %d times, want 1:\n%s", n, logs)
	}
}
