package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestQuantile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	near(t, "p50", Quantile(v, 0.5), 5.5)
	near(t, "p90", Quantile(v, 0.9), 9.1)
	near(t, "p99", Quantile(v, 0.99), 9.91)
	near(t, "p0", Quantile(v, 0), 1)
	near(t, "p100", Quantile(v, 1), 10)
	near(t, "one", Quantile([]float64{7}, 0.9), 7)
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("quantile of nothing should be NaN")
	}
}

func chunk(text string, finish string) []byte {
	f := "null"
	if finish != "" {
		f = `"` + finish + `"`
	}
	return []byte(fmt.Sprintf(`data: {"choices":[{"index":0,"text":%q,"finish_reason":%s}]}`+"\n", text, f))
}

// scripted feeds the recorder a stream with known timings: the first
// token after ttft, then n-1 more spaced by gap, then usage and [DONE].
func scripted(levelStart, sent time.Time, ttft, gap time.Duration, n int) Sample {
	r := newRecorder(levelStart, sent, 16)
	r.status(200)
	t := sent.Add(ttft)
	for i := 0; i < n; i++ {
		if i > 0 {
			t = t.Add(gap)
		}
		fin := ""
		if i == n-1 {
			fin = "length"
		}
		r.line(t, chunk("tok", fin))
		r.line(t, []byte("\n"))
	}
	r.line(t, []byte(fmt.Sprintf(`data: {"choices":[],"usage":{"prompt_tokens":17,"completion_tokens":%d,"total_tokens":%d}}`+"\n", n, n+17)))
	r.line(t, []byte("data: [DONE]\n"))
	return r.end(t, nil, false)
}

// TestSummarizeScripted: known TTFT, gaps and lengths give known
// percentiles and rates.
func TestSummarizeScripted(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var samples []Sample
	// Four requests: TTFT 100..400 ms, 5 tokens 10 ms apart (20 ms for the last).
	for i := 0; i < 4; i++ {
		gap := 10 * time.Millisecond
		if i == 3 {
			gap = 20 * time.Millisecond
		}
		samples = append(samples, scripted(t0, t0.Add(time.Duration(i)*time.Second), time.Duration(i+1)*100*time.Millisecond, gap, 5))
	}
	s := samples[0]
	if s.TTFT != 100*time.Millisecond || s.E2E != 140*time.Millisecond || len(s.ITL) != 4 || s.OutputTokens != 5 ||
		s.InputTokens != 17 || s.Chunks != 5 || !s.OK() || s.Start != 0 {
		t.Fatalf("sample 0: %+v", s)
	}
	if samples[2].Start != 2*time.Second {
		t.Errorf("start of sample 2: %v", samples[2].Start)
	}
	// Two failures: a 429 and a stream cut off after two tokens.
	r := newRecorder(t0, t0, 16)
	r.status(429)
	r.line(t0, []byte(`{"error":{"message":"queue full"}}`))
	samples = append(samples, r.end(t0.Add(time.Millisecond), nil, false))
	r = newRecorder(t0, t0, 16)
	r.status(200)
	r.line(t0.Add(50*time.Millisecond), chunk("a", ""))
	r.line(t0.Add(60*time.Millisecond), chunk("b", ""))
	samples = append(samples, r.end(t0.Add(70*time.Millisecond), fmt.Errorf("unexpected EOF"), false))

	st := Summarize(samples, 2*time.Second, SLO{TTFT: 250 * time.Millisecond, TPOT: 15 * time.Millisecond})
	if st.Requests != 6 || st.Completed != 4 || st.Errors["429"] != 1 || st.Errors[ErrIncomplete] != 1 {
		t.Fatalf("counts: %+v", st)
	}
	if got := st.ErrorSummary(); got != "429×1 incomplete×1" {
		t.Errorf("error summary %q", got)
	}
	near(t, "req/s", st.ReqPerSec, 2)
	near(t, "out tok/s", st.OutPerSec, 10)
	near(t, "total tok/s", st.TotalPerSec, (4*17+4*5)/2.0)
	// Two of four meet both SLOs (TTFT 100 and 200 ms, TPOT 10 ms).
	near(t, "goodput", st.Goodput, 1)
	near(t, "ttft p50", st.TTFT.P50, 250)
	near(t, "ttft p90", st.TTFT.P90, 370)
	near(t, "ttft p99", st.TTFT.P99, 397)
	near(t, "ttft mean", st.TTFT.Mean, 250)
	near(t, "tpot p50", st.TPOT.P50, 10)
	near(t, "tpot p99", st.TPOT.P99, 10+0.97*10)
	// ITL: 12 gaps of 10 ms and 4 of 20 ms.
	near(t, "itl p50", st.ITL.P50, 10)
	near(t, "itl p90", st.ITL.P90, 20)
	near(t, "itl mean", st.ITL.Mean, (12*10+4*20)/16.0)
	near(t, "e2e p50", st.E2E.P50, (240+340)/2.0)
	near(t, "e2e p99", st.E2E.P99, 340+0.97*(480-340))
}

// TestRecorderWithoutUsage: a server that sends no usage gets its output
// counted by content chunks (chat deltas too); an error object in the
// stream fails the request.
func TestRecorderWithoutUsage(t *testing.T) {
	t0 := time.Unix(0, 0)
	r := newRecorder(t0, t0, 8)
	r.status(200)
	r.line(t0.Add(time.Millisecond), []byte(`data: {"choices":[{"delta":{"role":"assistant"}}]}`))
	r.line(t0.Add(2*time.Millisecond), []byte(`data: {"choices":[{"delta":{"content":"Hi"}}]}`))
	r.line(t0.Add(5*time.Millisecond), []byte(`data: {"choices":[{"delta":{"content":"!"},"finish_reason":"stop"}]}`))
	s := r.end(t0.Add(6*time.Millisecond), nil, false)
	if !s.OK() || s.OutputTokens != 2 || s.InputTokens != 8 || s.TTFT != 2*time.Millisecond || s.ITL[0] != 3*time.Millisecond {
		t.Fatalf("%+v", s)
	}
	r = newRecorder(t0, t0, 8)
	r.status(200)
	r.line(t0, []byte(`data: {"error":{"message":"boom"}}`))
	if s := r.end(t0, nil, false); s.Error != ErrStream {
		t.Fatalf("error in stream: %+v", s)
	}
}

// fakeServer is an in-process OpenAI-compatible SSE server whose timings
// follow a script chosen by each request's max_tokens.
type fakeServer struct {
	ttft, gap time.Duration
	requests  atomic.Int64
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/tokenize":
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		text, _ := body["content"].(string) // llama.cpp's shape: "prompt" is ignored
		ids := []int{}
		for i := range strings.Fields(text) {
			ids = append(ids, 100+i%50)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"tokens": ids})
		return
	case "/v1/models":
		_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"fake"}]}`))
		return
	}
	var req struct {
		MaxTokens int     `json:"max_tokens"`
		Prompt    []int32 `json:"prompt"`
		IgnoreEOS bool    `json:"ignore_eos"`
		Stream    bool    `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !req.Stream || !req.IgnoreEOS {
		http.Error(w, "bad request", 400)
		return
	}
	f.requests.Add(1)
	fl := w.(http.Flusher)
	switch req.MaxTokens {
	case 429:
		http.Error(w, `{"error":{"message":"too many requests"}}`, http.StatusTooManyRequests)
		return
	case 500:
		http.Error(w, `{"error":{"message":"boom"}}`, http.StatusInternalServerError)
		return
	case 999: // hangs after one token: the client's timeout ends it
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write(chunk("x", ""))
		fl.Flush()
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	time.Sleep(f.ttft)
	n := req.MaxTokens
	cut := n == 3 // closes the connection after two tokens
	for i := 0; i < n; i++ {
		if i > 0 {
			time.Sleep(f.gap)
		}
		if cut && i == 2 {
			panic(http.ErrAbortHandler)
		}
		fin := ""
		if i == n-1 {
			fin = "length"
		}
		_, _ = w.Write(append(chunk("t", fin), '\n'))
		fl.Flush()
	}
	_, _ = fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d}}\n\ndata: [DONE]\n\n", len(req.Prompt), n)
	fl.Flush()
}

// TestServeAgainstFakeServer: the client against an SSE server with
// scripted timings: TTFT and gaps stamped as the chunks arrive (bounded by
// the server's sleeps and the request's span, not by a slack that a loaded
// machine exceeds), rates from the wall time, and errors by status code,
// timeout and a connection closed mid-stream.
func TestServeAgainstFakeServer(t *testing.T) {
	f := &fakeServer{ttft: 60 * time.Millisecond, gap: 15 * time.Millisecond}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := &Client{Timeout: 300 * time.Millisecond, IgnoreEOS: true}
	tg := &Target{Name: "fake", URL: srv.URL + "/v1"}
	ctx := context.Background()
	if ids, err := c.Models(ctx, tg); err != nil || len(ids) != 1 || ids[0] != "fake" {
		t.Fatalf("models: %v %v", ids, err)
	}
	tok := ServerTokenizer{Client: c, Target: tg}
	p, err := NewPrompts(ctx, PromptConfig{InputTokens: 12, OutputTokens: 6, SharedPrefix: 4, Seed: 1}, tok)
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Get(3); len(r.Tokens) != 16 || r.InputTokens != 16 || r.MaxTokens != 6 {
		t.Fatalf("request 3: %+v", r)
	}

	res, err := RunLoad(ctx, c, []*Target{tg}, p, LoadConfig{Levels: []Level{{Concurrency: 2}}, Requests: 6, Warmup: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || f.requests.Load() != 7 {
		t.Fatalf("results %d, requests %d", len(res), f.requests.Load())
	}
	st := res[0].Stats
	if st.Completed != 6 || st.OutputTokens != 36 || st.InputTokens != 6*16 {
		t.Fatalf("%+v", st)
	}
	// What the client measures, checked against what cannot vary with the
	// machine's load: the server sleeps before each chunk, so the first and
	// the last chunk come no sooner than its sleeps allow (one gap alone may
	// look shorter when the client read the chunk before it late); the
	// chunks come in order, so the first and the gaps after it fit within
	// the request; and each client's requests follow each other, so theirs
	// fit within the run.
	var e2e time.Duration
	for i, s := range res[0].Samples {
		var gaps time.Duration
		for _, g := range s.ITL {
			gaps += g
		}
		if s.TTFT < f.ttft || len(s.ITL) != 5 || s.TTFT+gaps < f.ttft+5*f.gap || s.TTFT+gaps > s.E2E {
			t.Errorf("sample %d: TTFT %v, gaps %v (sum %v), E2E %v: want TTFT >= %v, 5 gaps, %v <= TTFT+gaps <= E2E",
				i, s.TTFT, s.ITL, gaps, s.E2E, f.ttft, f.ttft+5*f.gap)
		}
		e2e += s.E2E
	}
	if e2e > 2*st.Wall {
		t.Errorf("the requests took %v in all, more than two clients' %v each", e2e, st.Wall)
	}
	if ms := func(d time.Duration) float64 { return float64(d) / 1e6 }; st.TTFT.P50 < ms(f.ttft) || st.E2E.P50 < ms(f.ttft+5*f.gap) {
		t.Errorf("p50s under the server's timings: TTFT %.2f, E2E %.2f ms", st.TTFT.P50, st.E2E.P50)
	}
	near(t, "req/s", st.ReqPerSec, 6/st.Wall.Seconds())
	near(t, "out tok/s", st.OutPerSec, 36/st.Wall.Seconds())

	// Errors: by status code, timeout, and a stream cut off.
	for _, tc := range []struct {
		max  int
		want string
	}{{429, "429"}, {500, "500"}, {999, ErrTimeout}, {3, ErrIncomplete}} {
		s := c.Do(ctx, tg, Request{Tokens: []int32{1, 2}, MaxTokens: tc.max}, time.Now())
		if s.Error != tc.want {
			t.Errorf("max_tokens %d: error %q, want %q (%+v)", tc.max, s.Error, tc.want, s)
		}
	}
	if s := c.Do(ctx, &Target{URL: "http://127.0.0.1:1"}, Request{MaxTokens: 1}, time.Now()); s.Error != ErrConnection {
		t.Errorf("refused: %+v", s)
	}
}

// TestOpenLoopAndCompare: Poisson arrivals send the requests asked for, and --compare interleaves two targets level
// by level; the ratio table pairs them.
func TestOpenLoopAndCompare(t *testing.T) {
	f := &fakeServer{ttft: 5 * time.Millisecond, gap: 2 * time.Millisecond}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := &Client{Timeout: 5 * time.Second, IgnoreEOS: true}
	a := &Target{Name: "a", URL: srv.URL}
	b := &Target{Name: "b", URL: srv.URL}
	p, err := NewPrompts(context.Background(), PromptConfig{InputTokens: 4, OutputTokens: 3, OutputSpread: 0.5, InputSpread: 0.5, Seed: 7},
		ServerTokenizer{Client: c, Target: a})
	if err != nil {
		t.Fatal(err)
	}
	// Cut-off streams have max_tokens 3: keep the spread clear of it.
	p.cfg.OutputTokens, p.cfg.OutputSpread = 8, 0.25
	res, err := RunLoad(context.Background(), c, []*Target{a, b}, p,
		LoadConfig{Levels: []Level{{Rate: 200}, {Concurrency: 3}}, Requests: 5, Seed: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range res {
		order = append(order, r.Target+" "+r.Level.String())
		if r.Stats.Completed != 5 {
			t.Errorf("%s %v: %+v", r.Target, r.Level, r.Stats)
		}
		for _, s := range r.Samples {
			if s.Start < 0 || s.Start > time.Second {
				t.Errorf("%s %v: start %v", r.Target, r.Level, s.Start)
			}
		}
	}
	if got := strings.Join(order, ","); got != "a rate 200/s,b rate 200/s,a c=3,b c=3" {
		t.Errorf("order %s", got)
	}
	var buf bytes.Buffer
	WriteServeTable(&buf, res, SLO{})
	WriteRatios(&buf, res, "a", "b")
	if strings.Count(buf.String(), "\n| rate 200/s |") != 1 || strings.Count(buf.String(), "| a | c=3 | 5/5 |") != 1 {
		t.Errorf("tables:\n%s", buf.String())
	}
	for _, ext := range []string{".png", ".svg"} {
		var img bytes.Buffer
		if err := Plot(&img, "x"+ext, res); err != nil || img.Len() < 1000 {
			t.Errorf("plot %s: %v (%d bytes)", ext, err, img.Len())
		}
	}
}

// TestDatasetPrompts: a JSONL dataset's prompts go out as text, in order,
// with their own max_tokens or the configured one.
func TestDatasetPrompts(t *testing.T) {
	d, err := ReadDataset(strings.NewReader("{\"prompt\": \"a b\", \"max_tokens\": 5}\n\n{\"prompt\": \"c\"}\n"))
	if err != nil || len(d) != 2 {
		t.Fatalf("%v %v", d, err)
	}
	p, err := NewPrompts(context.Background(), PromptConfig{OutputTokens: 9, Dataset: d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Get(0); r.Text != "a b" || r.MaxTokens != 5 || r.Tokens != nil {
		t.Errorf("0: %+v", r)
	}
	if r := p.Get(3); r.Text != "c" || r.MaxTokens != 9 {
		t.Errorf("3: %+v", r)
	}
	if _, err := ReadDataset(strings.NewReader("{\"text\": \"no prompt\"}\n")); err == nil {
		t.Error("a line without a prompt should fail")
	}
}

// TestSpread: a target of several servers sends its requests to each in
// turn, so that three servers of a fleet share nine requests three apiece.
func TestSpread(t *testing.T) {
	var fakes [3]*fakeServer
	var urls []string
	for i := range fakes {
		fakes[i] = &fakeServer{ttft: time.Millisecond, gap: time.Millisecond}
		srv := httptest.NewServer(fakes[i])
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	c := &Client{Timeout: 5 * time.Second, IgnoreEOS: true}
	fleet := &Target{Name: "fleet", URL: urls[0], Spread: urls}
	p, err := NewPrompts(context.Background(), PromptConfig{InputTokens: 4, OutputTokens: 4, Seed: 1}, ServerTokenizer{Client: c, Target: fleet})
	if err != nil {
		t.Fatal(err)
	}
	res, err := RunLoad(context.Background(), c, []*Target{fleet}, p, LoadConfig{Levels: []Level{{Concurrency: 3}}, Requests: 9}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Stats.Completed != 9 {
		t.Fatalf("%+v", res[0].Stats)
	}
	for i, f := range fakes {
		if n := f.requests.Load(); n != 3 {
			t.Errorf("server %d got %d requests, want 3", i, n)
		}
	}
}
