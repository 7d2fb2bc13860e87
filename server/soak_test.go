package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/batcher"
)

// hostileBodies are request bodies an attacker sends; each must get a 4xx
// quickly (or a short 200), never a 5xx.
var hostileBodies = []string{
	`{"prompt":"x","max_tokens":9223372036854775807}`,
	`{"prompt":"x","max_tokens":1e308}`,
	`{"prompt":"x","temperature":1e308}`,
	`{"prompt":"x","n":100000}`,
	`{"prompt":[-1,99999999]}`,
	`{"prompt":"x","logit_bias":{"1":1e308}}`,
	`{"prompt":"x","logprobs":1000000}`,
	`{"prompt":` + strings.Repeat("[", 5000),
	`{"prompt":"x","stop":` + strings.Repeat(`"a",`, 10) + `]}`,
	`{"messages":[{"role":"wizard","content":"x"}]}`,
	`{"messages":"hello"}`,
	`{"messages":[{"role":"user","content":"x"}],"top_logprobs":1000}`,
	`{"prompt":"` + strings.Repeat("Once upon a time ", 2000) + `"}`,
	"\x00\xff\xfe",
	`null`,
}

// soakKinds are what the soak test's clients do, one kind per client.
const (
	soakComplete     = iota // a valid completion
	soakChatStream          // a valid streamed chat
	soakHostile             // a hostile body, maybe mutated
	soakHangUpStream        // a stream the client leaves after two events
	soakHangUpWait          // a non-streamed request the client leaves
	soakSlowloris           // one header byte every 100 ms
	soakSilent              // a connection that sends nothing
	soakOther               // tokenize, models, health, metrics
	soakKindCount
)

// TestSoak: GODWIT_SOAK_SECONDS (2 by default; the run is 300) of
// 200 clients mixing valid requests, hostile bodies, hang-ups, slowloris
// and silent connections, after a warm-up of the same mix for a tenth of
// that (at least a second). No answer is a 5xx or malformed, and at most
// 1% of valid requests get a 408 (with the server's CPUs shared by 200
// clients in this process, one may write its request late); afterwards the
// running sequences, KV usage and open connections return to idle, RSS is
// within 2x of its value after the warm-up, and a greedy request returns
// the golden text.
func TestSoak(t *testing.T) {
	clients, seconds := envInt("GODWIT_SOAK_CLIENTS", 200), envInt("GODWIT_SOAK_SECONDS", 2)
	// Idle connections are cut after a second, so that every slowloris
	// and silent client is cut several times even in a short run.
	r := startRig(t, rigOptions{
		cfg:    Config{HeaderTimeout: time.Second, MaxConns: 4 * clients},
		bc:     batcher.Config{MaxSeqs: 32, MaxQueue: 64},
		blocks: 512,
	})
	s := &soak{r: r, clients: clients}
	s.run(t, max(time.Second, time.Duration(seconds)*time.Second/10))
	s.idle(t)
	rssWarm := rss(t)
	s = &soak{r: r, clients: clients}
	s.run(t, time.Duration(seconds)*time.Second)
	st := s.idle(t)
	rssAfter := rss(t)
	c := &s.counts
	t.Logf("%d clients for %ds: completions %d, streamed chats %d, hostile %d, streams left %d, waits left %d, slowloris %d, silent %d, other %d; "+
		"%d answered 429, %d valid requests answered 408, %d idle connections cut by the server; %d tokens generated, %d preemptions; RSS %d MiB after warm-up, %d MiB after, peak %s",
		clients, seconds, c[soakComplete].Load(), c[soakChatStream].Load(), c[soakHostile].Load(), c[soakHangUpStream].Load(),
		c[soakHangUpWait].Load(), c[soakSlowloris].Load(), c[soakSilent].Load(), c[soakOther].Load(),
		s.busy.Load(), s.late.Load(), s.cut.Load(), st.GenerationTokens, st.Preemptions, rssWarm>>20, rssAfter>>20, peakRSS())
	for k := range soakKindCount {
		if c[k].Load() == 0 {
			t.Errorf("no client of kind %d finished a round", k)
		}
	}
	valid := c[soakComplete].Load() + c[soakChatStream].Load() + c[soakHangUpStream].Load() + c[soakOther].Load()
	if late := s.late.Load(); late*100 > valid {
		t.Errorf("%d of %d valid requests answered 408: more than 1%%", late, valid)
	}
	if rssAfter > 2*rssWarm {
		t.Errorf("RSS %d MiB after the soak, more than twice the %d MiB after warm-up", rssAfter>>20, rssWarm>>20)
	}
	_, golden := goldenContinuation(t)
	if got, want := greedyText(r, "Once upon a time", 32), r.tok.Detokenize(golden[:32], false, false); got != want {
		t.Fatalf("greedy text after the soak %q, want %q", got, want)
	}
}

// soak is one round of TestSoak's clients.
type soak struct {
	r        *rig
	clients  int
	counts   [soakKindCount]atomic.Int64 // rounds finished, by kind
	busy     atomic.Int64                // 429s
	late     atomic.Int64                // 408s to valid requests
	cut      atomic.Int64                // idle connections the server closed
	mu       sync.Mutex
	failures []string
}

func (s *soak) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) < 10 {
		s.failures = append(s.failures, fmt.Sprintf(format, args...))
	}
}

// run runs the clients for d and fails the test on any bad answer.
func (s *soak) run(t *testing.T, d time.Duration) {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: s.clients, MaxConnsPerHost: s.clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	stop := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(context.Background(), stop)
	defer cancel()
	addr := strings.TrimPrefix(s.r.url, "http://")
	var wg sync.WaitGroup
	for c := range s.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(d)))
			kind := c % soakKindCount
			for time.Now().Before(stop) {
				var err error
				switch kind {
				case soakComplete, soakChatStream, soakHostile, soakHangUpStream, soakOther:
					var status int
					status, err = soakRequest(ctx, client, s.r.url, kind, rng)
					if status == http.StatusRequestTimeout && kind != soakHostile {
						s.late.Add(1)
					}
					if status == http.StatusTooManyRequests {
						s.busy.Add(1)
						time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
					}
				case soakHangUpWait:
					err = soakHangUp(ctx, addr, rng)
				case soakSlowloris, soakSilent:
					var closed bool
					closed, err = soakIdle(ctx, addr, kind == soakSlowloris)
					if closed {
						s.cut.Add(1)
					} else if err == nil {
						continue // the run ended first: not a round
					}
				}
				switch {
				case err == nil:
					s.counts[kind].Add(1)
				case time.Now().Before(stop): // (a dial's own deadline may fire before ctx's)
					s.fail("client %d (kind %d): %v", c, kind, err)
				}
			}
		}()
	}
	wg.Wait()
	if len(s.failures) > 0 {
		t.Fatalf("%d failures; the first:\n%s", len(s.failures), strings.Join(s.failures, "\n"))
	}
}

// idle waits until nothing runs or waits, no KV block is held and no
// connection is open (the test's own idle clients are closed first).
func (s *soak) idle(t *testing.T) batcher.Stats {
	t.Helper()
	http.DefaultClient.CloseIdleConnections()
	st := s.r.waitIdle(10 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for s.r.openConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open after the soak", s.r.openConns())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return st
}

// soakRequest sends one request of kind and checks its answer; it returns
// the status.
func soakRequest(ctx context.Context, client *http.Client, url string, kind int, rng *rand.Rand) (int, error) {
	method, path, body := "POST", "/v1/completions", ""
	switch kind {
	case soakComplete:
		body = fmt.Sprintf(`{"prompt":"Once upon a time %d","max_tokens":%d,"temperature":0.8,"n":%d}`, rng.IntN(50), 4+rng.IntN(40), 1+rng.IntN(3))
	case soakChatStream:
		path = "/v1/chat/completions"
		body = fmt.Sprintf(`{"messages":[{"role":"user","content":"Tell me a story %d"}],"max_tokens":%d,"stream":true}`, rng.IntN(50), 4+rng.IntN(40))
	case soakHangUpStream:
		body = `{"prompt":"Once upon a time","max_tokens":500,"ignore_eos":true,"stream":true}`
	case soakHostile:
		if rng.IntN(2) == 0 {
			path = "/v1/chat/completions"
		}
		body = hostileBodies[rng.IntN(len(hostileBodies))]
		if rng.IntN(3) == 0 { // mutate a byte or cut the body short
			b := []byte(body)
			if i := rng.IntN(len(b)); rng.IntN(2) == 0 {
				b[i] = byte(rng.IntN(256))
			} else {
				b = b[:i]
			}
			body = string(b)
		}
	case soakOther:
		switch rng.IntN(4) {
		case 0:
			path, body = "/tokenize", `{"prompt":"Once upon a time"}`
		case 1:
			method, path = "GET", "/v1/models"
		case 2:
			method, path = "GET", "/health"
		default:
			method, path = "GET", "/metrics"
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, url+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if kind == soakHangUpStream && resp.StatusCode == 200 {
		sc := bufio.NewScanner(resp.Body)
		for events := 0; events < 2 && sc.Scan(); {
			if strings.HasPrefix(sc.Text(), "data: ") {
				events++
			}
		}
		return resp.StatusCode, sc.Err() // leaving: the body closes unread
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
	case resp.StatusCode == http.StatusRequestTimeout && strings.Contains(string(b), `"request_timeout"`):
		// With 200 clients on the server's own CPUs, a client's request
		// may be written later than the header timeout: TestSoak bounds
		// how often.
	case resp.StatusCode >= 500:
		return resp.StatusCode, fmt.Errorf("%s %q: status %d: %s", path, body, resp.StatusCode, b)
	case resp.StatusCode >= 400:
		var e struct {
			Error *struct{ Message, Type string } `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == nil || e.Error.Message == "" {
			return resp.StatusCode, fmt.Errorf("%s %q: status %d without an OpenAI error: %q", path, body, resp.StatusCode, b)
		}
		if kind != soakHostile {
			return resp.StatusCode, fmt.Errorf("%s %q: a valid request got %d: %s", path, body, resp.StatusCode, b)
		}
	case strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"):
		if !strings.HasSuffix(string(b), "data: [DONE]\n\n") || strings.Contains(string(b), `"error"`) {
			return resp.StatusCode, fmt.Errorf("%s %q: a broken stream: %q", path, body, b)
		}
	}
	return resp.StatusCode, nil
}

// soakHangUp posts a long non-streamed request on a raw connection and
// closes it before the answer.
func soakHangUp(ctx context.Context, addr string, rng *rand.Rand) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	body := `{"prompt":"Once upon a time","max_tokens":1000,"ignore_eos":true,"n":2}`
	if _, err := fmt.Fprintf(conn, "POST /v1/completions HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		return err
	}
	time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
	return nil
}

// soakIdle holds a connection that sends a header byte every 100 ms
// (slowloris) or nothing, until the server closes it or ctx is done; it
// reports whether the server closed it.
func soakIdle(ctx context.Context, addr string, slow bool) (closed bool, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	go func() {
		<-ctx.Done()
		conn.SetDeadline(time.Now()) // unblock the read below
	}()
	header := "POST /v1/completions HTTP/1.1\r\nHost: soak\r\nX-Slow: " + strings.Repeat("a", 1000)
	for i := 0; ; i++ {
		if slow {
			if _, err := conn.Write([]byte{header[i%len(header)]}); err != nil {
				return true, nil
			}
		}
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := conn.Read(make([]byte, 512))
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			return false, nil
		case errors.As(err, &ne) && ne.Timeout():
		case err != nil: // EOF or reset: the server closed it
			return true, nil
		}
	}
}

// rss is this process's resident memory after returning freed memory to the
// system.
func rss(t *testing.T) int64 {
	t.Helper()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status:", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// openConns is how many connections the server holds open.
func (r *rig) openConns() int { return int(r.srv.srv.GetOpenConnectionsCount()) }
