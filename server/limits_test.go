package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/engine"
)

// closedWithin reads conn until the server closes it, failing the test
// unless that happens within limit; it returns what the server sent and
// how long it took.
func closedWithin(t *testing.T, conn net.Conn, limit time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	conn.SetReadDeadline(start.Add(limit + 2*time.Second))
	b, err := io.ReadAll(conn)
	took := time.Since(start)
	if err != nil && !isReset(err) {
		t.Fatalf("the connection was still open after %v (%v); read %q", took, err, b)
	}
	if took > limit {
		t.Fatalf("the connection closed after %v, want within %v", took, limit)
	}
	return string(b), took
}

// isReset reports a connection reset, which is how a close reads on Linux
// when the server closed with bytes of ours unread.
func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// TestSlowloris: connections that send their headers a byte at a time are
// answered 408 and closed once the header timeout passes, however steadily
// they trickle; the server then answers normally.
func TestSlowloris(t *testing.T) {
	const timeout = 500 * time.Millisecond
	r := startRig(t, rigOptions{cfg: Config{HeaderTimeout: timeout}})
	const n = 100
	head := "POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nX-Padding: " + strings.Repeat("a", 1000)
	var wg sync.WaitGroup
	errs := make(chan string, n)
	start := time.Now()
	for range n {
		conn := r.dial()
		wg.Add(2)
		go func() { // a byte every 100 ms, until the server hangs up
			defer wg.Done()
			for i := range len(head) {
				if _, err := conn.Write([]byte{head[i]}); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		go func() {
			defer wg.Done()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(conn)
			switch {
			case err != nil && !isReset(err):
				errs <- fmt.Sprintf("still open: %v", err)
			case time.Since(start) > timeout+time.Second:
				errs <- fmt.Sprintf("closed after %v", time.Since(start))
			case !strings.HasPrefix(string(b), "HTTP/1.1 408 "):
				errs <- fmt.Sprintf("answered %q, want a 408", b)
			}
			conn.Close() // ends the writer
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if resp := r.do("POST", "/v1/completions", `{"prompt":"a","max_tokens":2}`); resp.status != 200 {
		t.Fatalf("after the slow clients: %d %s", resp.status, resp.body)
	}
}

// TestSilentConnections: a connection that sends nothing is closed after the
// header timeout, one that stops halfway through its body after the body
// timeout, and a keep-alive connection after the idle timeout: none holds
// its slot for longer.
func TestSilentConnections(t *testing.T) {
	const header, body, idle = 300 * time.Millisecond, 600 * time.Millisecond, 400 * time.Millisecond
	r := startRig(t, rigOptions{cfg: Config{HeaderTimeout: header, BodyTimeout: body, IdleTimeout: idle}})
	slack := 700 * time.Millisecond

	t.Run("nothing sent", func(t *testing.T) {
		got, took := closedWithin(t, r.dial(), header+slack)
		if took < header-50*time.Millisecond {
			t.Fatalf("closed after %v, before the header timeout of %v", took, header)
		}
		checkTimeoutAnswer(t, got)
	})
	t.Run("half a body", func(t *testing.T) {
		conn := r.dial()
		fmt.Fprintf(conn, "POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
		got, took := closedWithin(t, conn, body+slack)
		// The body timeout runs from the headers, not the connection.
		if took < body-50*time.Millisecond {
			t.Fatalf("closed after %v, before the body timeout of %v", took, body)
		}
		checkTimeoutAnswer(t, got)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		conn := r.dial()
		rawPost(t, conn, "/v1/completions", `{"prompt":"a","max_tokens":2}`)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("status %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
		}
		start := time.Now()
		conn.SetReadDeadline(start.Add(idle + 2*time.Second))
		b, err := io.ReadAll(br)
		if err != nil || len(b) != 0 || time.Since(start) > idle+slack {
			t.Fatalf("idle connection: %v, %q after %v, want a quiet close within %v", err, b, time.Since(start), idle+slack)
		}
	})
}

func checkTimeoutAnswer(t *testing.T, raw string) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("answer %q: %v", raw, err)
	}
	b, _ := io.ReadAll(resp.Body)
	checkError(t, response{resp.StatusCode, resp.Header, b}, http.StatusRequestTimeout, typeInvalid, "", "--header-timeout")
}

// TestMaxConns: beyond MaxConns, connections are answered 503 and closed;
// once the silent ones holding the slots are cut, requests are served.
func TestMaxConns(t *testing.T) {
	const timeout = 500 * time.Millisecond
	r := startRig(t, rigOptions{cfg: Config{MaxConns: 4, HeaderTimeout: timeout}})
	var silent []net.Conn
	for range 4 {
		silent = append(silent, r.dial())
	}
	time.Sleep(100 * time.Millisecond) // the server takes them up
	got, _ := closedWithin(t, r.dial(), 200*time.Millisecond)
	if !strings.HasPrefix(got, "HTTP/1.1 503 ") {
		t.Fatalf("a fifth connection got %q, want a 503", got)
	}
	for _, c := range silent {
		closedWithin(t, c, timeout+time.Second)
	}
	if resp := r.do("POST", "/v1/completions", `{"prompt":"a","max_tokens":2}`); resp.status != 200 {
		t.Fatalf("after the silent connections were cut: %d %s", resp.status, resp.body)
	}
}

// slowSteps makes each engine step last at least d.
type slowSteps struct {
	batcher.Runner
	d time.Duration
}

func (s slowSteps) Step(in []engine.SeqInput) ([]float32, error) {
	time.Sleep(s.d)
	return s.Runner.Step(in)
}

// TestLongAnswersOutliveTimeouts: answers that take many times the header,
// body and idle timeouts, streamed or not, are whole: the read deadlines do
// not cut a stream, nor fool the hang-up watch of a non-streamed request;
// the keep-alive connection then serves another.
func TestLongAnswersOutliveTimeouts(t *testing.T) {
	const timeout = 150 * time.Millisecond
	r := startRig(t, rigOptions{
		cfg:    Config{HeaderTimeout: timeout, BodyTimeout: timeout, IdleTimeout: timeout},
		runner: func(e batcher.Runner) batcher.Runner { return slowSteps{e, 10 * time.Millisecond} },
	})
	const tokens = 60 // about 600 ms: four timeouts
	body := fmt.Sprintf(`{"prompt":"Once upon a time","max_tokens":%d,"ignore_eos":true}`, tokens)
	start := time.Now()
	events, done := r.sse("/v1/completions", map[string]any{"prompt": "Once upon a time", "max_tokens": tokens, "ignore_eos": true, "stream": true})
	if len(events) != tokens || !done {
		t.Fatalf("stream: %d events, [DONE] %v; want %d and [DONE]", len(events), done, tokens)
	}
	if took := time.Since(start); took < 3*timeout {
		t.Fatalf("the stream took %v, not long enough to test the timeouts", took)
	}
	conn := r.dial()
	br := bufio.NewReader(conn)
	for range 2 {
		rawPost(t, conn, "/v1/completions", body)
		readCompletion(t, br, tokens)
	}
}

// TestHTTP10Stream: an HTTP/1.0 client, which cannot read chunked encoding,
// gets its stream close-delimited: no Transfer-Encoding, no length, events
// whole, the connection closed after [DONE]; hanging up cancels it.
func TestHTTP10Stream(t *testing.T) {
	r := startRig(t, rigOptions{})
	conn := r.dial()
	body := `{"prompt":"Once upon a time","max_tokens":8,"ignore_eos":true,"stream":true}`
	fmt.Fprintf(conn, "POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	raw, err := io.ReadAll(conn) // ends only when the server closes
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "/v1/completions", nil)
	req.ProtoMajor, req.ProtoMinor = 1, 0
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(raw))), req)
	if err != nil {
		t.Fatalf("%v: %q", err, raw)
	}
	if resp.StatusCode != 200 || len(resp.TransferEncoding) != 0 || resp.ContentLength != -1 || !resp.Close {
		t.Fatalf("status %d, Transfer-Encoding %v, length %d, close %v; want a close-delimited 200:\n%s",
			resp.StatusCode, resp.TransferEncoding, resp.ContentLength, resp.Close, raw)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	events, done := readSSE(t, resp.Body)
	if len(events) != 8 || !done {
		t.Fatalf("%d events, [DONE] %v:\n%s", len(events), done, raw)
	}
	r.waitNoneInFlight(2 * time.Second)
	r.waitIdle(2 * time.Second)

	// A client that hangs up mid-stream cancels its request, as on HTTP/1.1.
	conn = r.dial()
	body = `{"prompt":"Once upon a time","max_tokens":2000,"ignore_eos":true,"stream":true}`
	fmt.Fprintf(conn, "POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := bufio.NewReader(conn).ReadString('}'); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	r.waitNoneInFlight(2 * time.Second)
	if st := r.waitIdle(2 * time.Second); st.GenerationTokens >= 8+2000 {
		t.Fatalf("the stream ran to its end (%d tokens), so the hang-up went unseen", st.GenerationTokens)
	}
}

// TestHeadLimits: a 12 KiB bearer token authenticates; headers over the
// 32 KiB buffer get a 431 and a request target over 4 KiB a 414, each with
// an OpenAI error body.
func TestHeadLimits(t *testing.T) {
	token := strings.Repeat("k", 12<<10)
	r := startRig(t, rigOptions{cfg: Config{APIKeys: []string{token}}})
	if resp := r.do("POST", "/v1/completions", `{"prompt":"a","max_tokens":2}`, "Authorization", "Bearer "+token); resp.status != 200 {
		t.Fatalf("12 KiB token: %d %s", resp.status, resp.body)
	}
	resp := r.do("POST", "/v1/completions", `{"prompt":"a"}`, "Authorization", "Bearer "+token, "X-Big", strings.Repeat("x", 40<<10))
	checkError(t, resp, http.StatusRequestHeaderFieldsTooLarge, typeInvalid, "", "32 KiB")
	resp = r.do("POST", "/v1/completions?q="+strings.Repeat("a", 8<<10), `{"prompt":"a"}`, "Authorization", "Bearer "+token)
	checkError(t, resp, http.StatusRequestURITooLong, typeInvalid, "", "4096")
	// At the limit, the target is read as usual (and this one names no route).
	resp = r.do("GET", "/"+strings.Repeat("a", maxURLBytes-1), "")
	checkError(t, resp, http.StatusNotFound, typeInvalid, "", "no route")
}
