package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/cluster"
)

// fakeFleet is a fleet as gossip would show it, set by the test.
type fakeFleet struct {
	mu      sync.Mutex
	members []cluster.Member
}

func (f *fakeFleet) Members() []cluster.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.members)
}

func (f *fakeFleet) set(ms ...cluster.Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members = ms
}

var fleetKey = []byte("0123456789abcdef")

// cutDialer dials peers, and breaks the connections to one address once
// they have read a number of bytes in all, as a peer killed mid-stream
// would. Pooled connections count too, so arm it before each request.
type cutDialer struct {
	addr atomic.Value // string
	left atomic.Int64 // bytes still to read; negative: never cut
}

func (d *cutDialer) arm(after int64) {
	if after == 0 {
		after = -1
	}
	d.left.Store(after)
}

func (d *cutDialer) dial(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil || addr != d.addr.Load() {
		return c, err
	}
	return &cutConn{Conn: c, d: d}, nil
}

type cutConn struct {
	net.Conn
	d *cutDialer
}

func (c *cutConn) Read(p []byte) (int, error) {
	left := c.d.left.Load()
	if left < 0 {
		return c.Conn.Read(p)
	}
	if left == 0 {
		c.Conn.Close()
		return 0, errors.New("connection reset by the test")
	}
	n, err := c.Conn.Read(p[:min(int64(len(p)), left)])
	c.d.left.Add(-int64(n))
	return n, err
}

// fleetNode is a rig in a fake fleet.
type fleetNode struct {
	*rig
	fleet *fakeFleet
}

func (n *fleetNode) member(name, model string, rtt time.Duration, self bool) cluster.Member {
	return cluster.Member{Name: name, Status: cluster.Alive, Self: self, RTT: rtt, HasRTT: true,
		State: cluster.State{HTTPAddr: strings.TrimPrefix(n.url, "http://"),
			Models: []cluster.Model{{Name: model, Hash: "h1", Numerics: "cpu"}}}}
}

// startFleetNode starts a rig serving model that forwards with dial.
func startFleetNode(t *testing.T, model string, dial func(string) (net.Conn, error), keys ...string) *fleetNode {
	f := &fakeFleet{}
	r := startRig(t, rigOptions{cfg: Config{ModelName: model, APIKeys: keys}, fleet: func(m *Model) {
		m.Fleet = f
		m.Forward = &Forwarding{Config: cluster.DefaultForwardConfig(0), Auth: cluster.NewAuth(fleetKey), Dial: dial}
	}})
	return &fleetNode{r, f}
}

// streamText posts a streamed completion and returns its text, whether it
// ended with [DONE], and its usage's completion tokens.
func streamText(t *testing.T, url string, body map[string]any) (string, bool, int) {
	t.Helper()
	r := &rig{t: t, url: url}
	events, done := r.sse("/v1/completions", body)
	var text strings.Builder
	completion := -1
	for _, ev := range events {
		if _, bad := ev["error"]; bad {
			t.Fatalf("an error event: %v", ev)
		}
		for _, c := range ev["choices"].([]any) {
			text.WriteString(c.(map[string]any)["text"].(string))
		}
		if u, ok := ev["usage"].(map[string]any); ok {
			completion = int(u["completion_tokens"].(float64))
		}
	}
	return text.String(), done, completion
}

// brokenPeerFleet: a serves "other"; b and c serve stories260K, b nearer
// (so a forwards to it), and cut breaks a's connections to b.
func brokenPeerFleet(t *testing.T) (a, b, c *fleetNode, cut *cutDialer) {
	cut = &cutDialer{}
	a = startFleetNode(t, "other", cut.dial)
	b = startFleetNode(t, "stories260K", nil)
	c = startFleetNode(t, "stories260K", nil)
	cut.addr.Store(strings.TrimPrefix(b.url, "http://"))
	a.fleet.set(a.member("a", "other", 0, true), b.member("b", "stories260K", time.Millisecond, false), c.member("c", "stories260K", 20*time.Millisecond, false))
	return a, b, c, cut
}

// TestForwardResume: A does not serve stories260K; B and C do, B nearer.
// A forwards to B, whose connection breaks part-way through the stream;
// A resumes it on C, and the client's stream is the one C gives
// uninterrupted, token for token, greedy and seeded (and held to a JSON
// object), with one [DONE], no error and the usage of the whole.
func TestForwardResume(t *testing.T) {
	a, _, c, cut := brokenPeerFleet(t)

	for _, p := range []map[string]any{
		{"temperature": 0},
		{"temperature": 0.9, "seed": 7},
		// The constraint's state goes through the resumed tokens too.
		{"temperature": 0.9, "seed": 11, "response_format": map[string]any{"type": "json_object"}},
	} {
		body := map[string]any{"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 60, "ignore_eos": true,
			"stream": true, "stream_options": map[string]any{"include_usage": true}}
		for k, v := range p {
			body[k] = v
		}
		want, _, wantN := streamText(t, c.url, body)
		for _, after := range []int64{0, 1200, 6000} {
			cut.arm(after)
			before := a.metric("godwit:stream_resumes_total")
			got, done, n := streamText(t, a.url, body)
			resumes := a.metric("godwit:stream_resumes_total") - before
			t.Logf("%v, cut after %d bytes: %d resume(s), %d tokens", p, after, int(resumes), n)
			if got != want || !done || n != wantN {
				t.Fatalf("%v, cut after %d bytes: %q (done %v, %d tokens), want %q (%d tokens)", p, after, got, done, n, want, wantN)
			}
			if (after > 0) != (resumes == 1) {
				t.Fatalf("cut after %d bytes: %v resumes", after, resumes)
			}
			a.srv.avoid = cluster.Avoid{} // let the next run go to b again
		}
	}
	// A whole answer whose peer breaks is asked again elsewhere, the
	// same.
	cut.arm(300)
	body := map[string]any{"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 30, "temperature": 0.9, "seed": 3}
	want := choiceTexts(t, c.post("/v1/completions", body))
	if got := choiceTexts(t, a.post("/v1/completions", body)); !slices.Equal(got, want) {
		t.Fatalf("whole answer via a broken peer: %q, want %q", got, want)
	}
}

// TestForwardChat: a chat stream resumed mid-way opens with the assistant's
// role once and carries the whole content; a stream of tool calls resumed
// mid-call carries the same calls (the resumed node's parser reads what
// was sent before).
func TestForwardChat(t *testing.T) {
	a, _, c, cut := brokenPeerFleet(t)
	body := map[string]any{"model": "stories260K", "messages": []map[string]string{{"role": "user", "content": "Tell a story"}},
		"max_tokens": 50, "ignore_eos": true, "temperature": 0, "stream": true}
	read := func(url string) (roles int, content string) {
		events, done := (&rig{t: t, url: url}).sse("/v1/chat/completions", body)
		if !done {
			t.Fatalf("no [DONE] from %s (a %s, c %s): %v", url, a.url, c.url, events)
		}
		for _, ev := range events {
			for _, ch := range ev["choices"].([]any) {
				d := ch.(map[string]any)["delta"].(map[string]any)
				if d["role"] != nil {
					roles++
				}
				if s, ok := d["content"].(string); ok {
					content += s
				}
				// Calls as name(arguments): ids differ from node to node.
				tcs, _ := d["tool_calls"].([]any)
				for _, x := range tcs {
					f := x.(map[string]any)["function"].(map[string]any)
					if name, ok := f["name"].(string); ok {
						content += "|" + name + "("
					}
					content += f["arguments"].(string)
				}
			}
		}
		return roles, content
	}
	wantRoles, want := read(c.url)
	cut.arm(2500)
	roles, got := read(a.url)
	if got != want || roles != wantRoles || roles != 1 {
		t.Fatalf("via a: %d role(s), %q; from c: %d, %q", roles, got, wantRoles, want)
	}
	if a.metric("godwit:stream_resumes_total") != 1 {
		t.Fatalf("resumes: %v, want 1", a.metric("godwit:stream_resumes_total"))
	}
	body["tools"] = testToolsJSON
	body["tool_choice"] = "required"
	body["temperature"], body["seed"] = 0.9, 4
	body["max_tokens"] = 80
	_, want = read(c.url)
	if !strings.Contains(want, "|") {
		t.Fatalf("no tool call from c: %q", want)
	}
	// Cut in the prompt's ids (a fresh start elsewhere), and after them,
	// mid-call.
	logged := len(a.logText())
	for _, after := range []int64{1500, 4200, 5000} {
		a.srv.avoid = cluster.Avoid{} // let the run go to b again
		before := a.metric("godwit:stream_resumes_total")
		cut.arm(after)
		if _, got = read(a.url); got != want {
			t.Fatalf("tool calls cut after %d bytes: %q, want %q", after, got, want)
		}
		if a.metric("godwit:stream_resumes_total") != before+1 {
			t.Fatalf("tool calls cut after %d bytes: not resumed", after)
		}
	}
	if !regexp.MustCompile(`resumed a stream.* tokens_sent=[1-9]`).MatchString(a.logText()[logged:]) {
		t.Fatalf("no stream of tool calls resumed mid-way:\n%s", a.logText())
	}
}

// signedForward sends a forwarded request to r with a token signed by auth
// (no token when auth is nil).
func signedForward(t *testing.T, r *rig, auth *cluster.Auth, hops, path string, fb forwardBody, token string) response {
	t.Helper()
	body, _ := json.Marshal(fb)
	if auth != nil && token == "" {
		token = auth.Sign(time.Now(), tokenParts(hops, path, body)...)
	}
	return r.do("POST", forwardPath, string(body), headerToken, token, headerHops, hops, headerPath, path)
}

// TestForwardTrust: a forwarded request needs a valid cluster token
// (missing, forged, replayed and expired ones get 401); one that has
// used its hops is not forwarded again; hop headers on the public API do
// nothing, and API keys are checked at the node the client called.
func TestForwardTrust(t *testing.T) {
	a := startFleetNode(t, "other", nil, "key-a")
	b := startFleetNode(t, "stories260K", nil, "key-b")
	a.fleet.set(a.member("a", "other", 0, true), b.member("b", "stories260K", time.Millisecond, false))
	b.fleet.set(b.member("b", "stories260K", 0, true), a.member("a", "other", time.Millisecond, false))

	fb := forwardBody{Endpoint: "/v1/completions", Key: "k", Created: 1, Seed: 1,
		Request: json.RawMessage(`{"model":"stories260K","prompt":"Once","max_tokens":4,"temperature":0}`)}
	auth := cluster.NewAuth(fleetKey)
	body, _ := json.Marshal(fb)
	token := auth.Sign(time.Now(), tokenParts("1", "a", body)...)
	for _, c := range []struct {
		name  string
		auth  *cluster.Auth
		token string
	}{
		{"missing", nil, ""},
		{"forged", cluster.NewAuth([]byte("another key, not the fleet's")), ""},
		{"malformed", nil, "v1.nonsense"},
		{"expired", nil, auth.Sign(time.Now().Add(-time.Minute), tokenParts("1", "a", body)...)},
	} {
		if r := signedForward(t, b.rig, c.auth, "1", "a", fb, c.token); r.status != 401 || !strings.Contains(string(r.body), "invalid_cluster_token") {
			t.Errorf("%s token: %d %s", c.name, r.status, r.body)
		}
	}
	if r := signedForward(t, b.rig, nil, "1", "a", fb, token); r.status != 200 || !strings.Contains(string(r.body), "data: {") {
		t.Fatalf("a valid token: %d %s", r.status, r.body)
	}
	if r := signedForward(t, b.rig, nil, "1", "a", fb, token); r.status != 401 || !strings.Contains(string(r.body), "used before") {
		t.Fatalf("the same token again: %d %s", r.status, r.body)
	}
	// Hops are signed: the path cannot be changed either.
	if r := signedForward(t, b.rig, nil, "1", "", fb, token); r.status != 401 {
		t.Fatalf("a token moved to another path: %d %s", r.status, r.body)
	}

	// A request that has used its hop, for a model a does not serve, is
	// not forwarded again: 404, and b hears nothing of it.
	served := b.metric("vllm:request_success_total")
	if r := signedForward(t, a.rig, auth, "1", "c", fb, ""); r.status != 404 || !strings.Contains(string(r.body), "model_not_found") {
		t.Fatalf("past the hop limit: %d %s", r.status, r.body)
	}
	if r := signedForward(t, a.rig, auth, "0", "b", fb, ""); r.status != 400 {
		t.Fatalf("hops 0: %d %s", r.status, r.body)
	}
	if got := b.metric("vllm:request_success_total"); got != served {
		t.Fatalf("b served %v requests it should not have seen", got-served)
	}

	// The public API ignores hop headers: no key, no answer.
	r := a.do("POST", "/v1/completions", string(fb.Request), headerHops, "1", headerPath, "b")
	if r.status != 401 {
		t.Fatalf("hop headers without an API key: %d %s", r.status, r.body)
	}
	// With a's key, a forwards to b, which has other keys: b trusts the
	// token, not a key.
	r = a.do("POST", "/v1/completions", string(fb.Request), "Authorization", "Bearer key-a")
	if r.status != 200 || a.metric(`godwit:forwarded_requests_total{outcome="ok",peer="b",reason="model_elsewhere"}`) != 1 {
		t.Fatalf("a forwards with its key: %d %s", r.status, r.body)
	}
}

// TestForwardHangUp: a client that hangs up on a forwarded stream stops the
// generation on the peer.
func TestForwardHangUp(t *testing.T) {
	a := startFleetNode(t, "other", nil)
	b := startFleetNode(t, "stories260K", nil)
	a.fleet.set(a.member("a", "other", 0, true), b.member("b", "stories260K", time.Millisecond, false))
	body := `{"model":"stories260K","prompt":"Once","max_tokens":400,"ignore_eos":true,"stream":true}`
	resp, err := http.Post(a.url+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for range 5 {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.b.Stats(); st.Running != 1 {
		t.Fatalf("b runs %d sequences while the stream is read, want 1", st.Running)
	}
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for b.b.Stats().Running != 0 || b.srv.InFlight() != 0 || a.srv.InFlight() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the client left: b runs %d, in flight a %d b %d", b.b.Stats().Running, a.srv.InFlight(), b.srv.InFlight())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// liveFleet shows every node's real load, as gossip with no delay would,
// and round trips from a matrix, as Vivaldi would estimate them.
type liveFleet struct {
	self  string
	nodes map[string]*rig
	model map[string]string
	rtt   map[string]time.Duration // from self
}

func (f *liveFleet) Members() []cluster.Member {
	var out []cluster.Member
	for name, r := range f.nodes {
		st := r.b.Stats()
		out = append(out, cluster.Member{Name: name, Status: cluster.Alive, Self: name == f.self, RTT: f.rtt[name], HasRTT: true,
			State: cluster.State{HTTPAddr: r.url, Models: []cluster.Model{{Name: f.model[name]}}, Running: st.Running,
				Waiting: st.Waiting, Wait: st.Wait, WaitPerSeq: st.WaitPerSeq, Full: st.Waiting >= r.b.Limits().MaxQueue}})
	}
	return out
}

// TestForwardDistance: A, overloaded (one sequence at a time), has a near
// peer (10 ms) and a far one (120 ms); connections to them take that long
// to open. While the near peer has room it gets at least 90% of A's
// forwards; once its queue is full, A's work spills to the far peer.
func TestForwardDistance(t *testing.T) {
	if raceEnabled {
		t.Skip("the near peer's wait is its compute's, which the race detector slows tenfold")
	}
	run := func(nearCfg batcher.Config, preloadNear int) (near, far float64) {
		slow := func(e batcher.Runner) batcher.Runner { return slowSteps{e, 5 * time.Millisecond} }
		rtt := map[string]time.Duration{"a": 0, "near": 10 * time.Millisecond, "far": 120 * time.Millisecond}
		byAddr := map[string]time.Duration{}
		dial := func(addr string) (net.Conn, error) {
			time.Sleep(byAddr[addr]) // the handshake's round trip
			return net.Dial("tcp", addr)
		}
		f := &liveFleet{self: "a", nodes: map[string]*rig{}, rtt: rtt,
			model: map[string]string{"a": "stories260K", "near": "stories260K", "far": "stories260K"}}
		fwd := &Forwarding{Config: cluster.ForwardConfig{Threshold: 50 * time.Millisecond, MaxHops: 1, Margin: 0.2, MinGain: 0.2},
			Auth: cluster.NewAuth(fleetKey), Dial: dial}
		a := startRig(t, rigOptions{bc: batcher.Config{MaxSeqs: 1}, runner: slow, fleet: func(m *Model) { m.Fleet, m.Forward = f, fwd }})
		peerFleet := func(m *Model) { m.Fleet, m.Forward = &fakeFleet{}, &Forwarding{Auth: cluster.NewAuth(fleetKey)} }
		n := startRig(t, rigOptions{bc: nearCfg, runner: slow, fleet: peerFleet})
		fa := startRig(t, rigOptions{runner: slow, fleet: peerFleet})
		f.nodes["a"], f.nodes["near"], f.nodes["far"] = a, n, fa
		for name, r := range f.nodes {
			byAddr[strings.TrimPrefix(r.url, "http://")] = rtt[name]
		}
		// Warm up the peers as serve does, so that their waits start from
		// their idle time to first token rather than from nothing.
		for _, r := range []*rig{n, fa} {
			for range 2 {
				r.do("POST", "/v1/completions", `{"prompt":"Once upon a time","max_tokens":1}`)
			}
		}
		var wg sync.WaitGroup
		long := `{"prompt":"Once","max_tokens":300,"ignore_eos":true}`
		// One at a time: the near peer's queue holds one.
		for i := range preloadNear {
			wg.Go(func() { n.do("POST", "/v1/completions", long) })
			deadline := time.Now().Add(5 * time.Second)
			for st := n.b.Stats(); st.Running+st.Waiting <= i; st = n.b.Stats() {
				if time.Now().After(deadline) {
					t.Fatalf("the near peer never took request %d: %+v", i, st)
				}
				time.Sleep(time.Millisecond)
			}
		}
		// Requests arrive at A every 40 ms; each takes A over 100 ms.
		for range 24 {
			wg.Go(func() {
				if r := a.do("POST", "/v1/completions", `{"prompt":"Once upon a time","max_tokens":20,"ignore_eos":true,"stream":true}`); r.status != 200 {
					t.Errorf("status %d: %s", r.status, r.body)
				}
			})
			time.Sleep(40 * time.Millisecond)
		}
		wg.Wait()
		count := func(peer string) float64 {
			return a.metricOr(`godwit:forwarded_requests_total{outcome="ok",peer="`+peer+`",reason="overloaded"}`, 0) +
				a.metricOr(`godwit:forwarded_requests_total{outcome="ok",peer="`+peer+`",reason="queue_full"}`, 0)
		}
		return count("near"), count("far")
	}
	near, far := run(batcher.Config{}, 0)
	t.Logf("near peer with room: %v forwards to it, %v to the far one", near, far)
	if near+far < 12 || near < 0.9*(near+far) {
		t.Fatalf("near peer with room: %v forwards to it, %v to the far one; want most forwarded, 90%% to the near", near, far)
	}
	near, far = run(batcher.Config{MaxSeqs: 1, MaxQueue: 1}, 2)
	t.Logf("near peer full: %v forwards to it, %v to the far one", near, far)
	if far < 12 || near > 0.1*(near+far) {
		t.Fatalf("near peer full: %v forwards to it, %v to the far one; want the work spilt to the far one", near, far)
	}
}

// metricOr is metric, or def when the series is absent.
func (r *rig) metricOr(name string, def float64) float64 {
	r.t.Helper()
	for line := range strings.SplitSeq(string(r.do("GET", "/metrics", "").body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				r.t.Fatal(err)
			}
			return v
		}
	}
	return def
}

// TestForwardSkipsDraining: a peer that gossips that it drains gets no new
// forwards; the others take them.
func TestForwardSkipsDraining(t *testing.T) {
	a, b, c, _ := brokenPeerFleet(t)
	drainingB := b.member("b", "stories260K", time.Millisecond, false)
	drainingB.State.Draining = true
	a.fleet.set(a.member("a", "other", 0, true), drainingB, c.member("c", "stories260K", 20*time.Millisecond, false))
	for range 5 {
		a.post("/v1/completions", map[string]any{"model": "stories260K", "prompt": "Once", "max_tokens": 4})
	}
	toB := a.metricOr(`godwit:forwarded_requests_total{outcome="ok",peer="b",reason="model_elsewhere"}`, 0)
	toC := a.metricOr(`godwit:forwarded_requests_total{outcome="ok",peer="c",reason="model_elsewhere"}`, 0)
	if toB != 0 || toC != 5 {
		t.Fatalf("with b draining: %v forwards to b, %v to c; want 0 and 5", toB, toC)
	}
}
