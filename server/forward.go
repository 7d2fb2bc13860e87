package server

// Forwarding between the nodes of a fleet (issue 14). The node a client
// calls decides, before local admission, whether to serve the request or
// hand it to a peer (cluster.Choose). A forwarded request travels as a
// forwardBody to the peer's forwardPath, signed with a cluster token; the
// peer answers with server-sent events: the chunks the client will see,
// passed through as they arrive, and comments carrying the prompt's and the
// generated tokens' ids. Should the peer fail mid-stream, the calling node
// resumes the stream elsewhere from those ids, and the client sees one
// unbroken stream.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/godwit-ai/godwit/cluster"
)

// forwardPath is the endpoint of forwarded requests.
const forwardPath = "/cluster/v1/forward"

// Headers of a forwarded request. The hop count and path are read only
// from requests whose token verifies, so a client cannot set them.
const (
	headerToken = "X-Godwit-Cluster-Token"
	headerHops  = "X-Godwit-Hops"
	headerPath  = "X-Godwit-Path"
)

// Forwarding lets a node of a fleet forward requests to its peers; nil in
// Model: requests are served here or refused.
type Forwarding struct {
	// Config is the decision's; a zero Threshold takes twice the idle
	// time to first token the batcher measures.
	Config cluster.ForwardConfig
	// Auth signs forwarded requests and checks received ones.
	Auth *cluster.Auth
	// Dial opens connections to peers (nil: TCP with a 3 s timeout);
	// tests delay it.
	Dial fasthttp.DialFunc
	// TLS, when set, is used for peers whose address is https://.
	TLS *tls.Config
}

// forwardBody is the internal form of a forwarded request.
type forwardBody struct {
	// Endpoint is the API path the client called.
	Endpoint string `json:"endpoint"`
	// Key is the random part of the response's id and Created its time:
	// every node that answers part of the stream uses the same.
	Key     string `json:"key"`
	Created int64  `json:"created"`
	// Seed seeds the prompts that name no seed, so that a resumed stream
	// draws what the first node would have.
	Seed uint64 `json:"seed"`
	// Prompt and Resume, set when a stream is resumed, are the prompt's
	// ids and the tokens already sent: the prompt is not tokenized again,
	// and the text those tokens held back comes out with the next ones.
	Prompt []int32 `json:"prompt,omitempty"`
	Resume []int32 `json:"resume,omitempty"`
	// Request is the client's body, unchanged.
	Request json.RawMessage `json:"request"`
}

// inbound is a verified forwarded request.
type inbound struct {
	hops int
	path []string
	body forwardBody
}

const inboundKey = "godwit.inbound"

// inboundOf returns the forwarded request ctx carries, or nil for a
// client's own.
func inboundOf(ctx *fasthttp.RequestCtx) *inbound {
	in, _ := ctx.UserValue(inboundKey).(*inbound)
	return in
}

// tokenParts is what a cluster token signs: everything the receiver acts on.
func tokenParts(hops, path string, body []byte) [][]byte {
	return [][]byte{[]byte("POST"), []byte(forwardPath), []byte(hops), []byte(path), body}
}

// forwarded answers POST forwardPath: it checks the token, then serves the
// request it carries as the endpoint named, here or (hops allowing) on.
func (s *Server) forwarded(ctx *fasthttp.RequestCtx, m *ready) *apiError {
	if m.Forward == nil {
		return notFound("not_in_a_cluster", "this node is not in a fleet")
	}
	hops, path := string(ctx.Request.Header.Peek(headerHops)), string(ctx.Request.Header.Peek(headerPath))
	if err := m.Forward.Auth.Verify(string(ctx.Request.Header.Peek(headerToken)), time.Now(), tokenParts(hops, path, ctx.PostBody())...); err != nil {
		ctx.Response.Header.Set("WWW-Authenticate", "Godwit-Cluster")
		return &apiError{Status: fasthttp.StatusUnauthorized, Type: typeAuth, Code: "invalid_cluster_token",
			Message: fmt.Sprintf("a forwarded request needs a valid cluster token: %v", err)}
	}
	in := &inbound{}
	var err error
	if in.hops, err = strconv.Atoi(hops); err != nil || in.hops < 1 {
		return badRequest("", "the %s header must be a positive count", headerHops)
	}
	if path != "" {
		in.path = strings.Split(path, ",")
	}
	if err := json.Unmarshal(ctx.PostBody(), &in.body); err != nil {
		return badRequest("", "malformed forwarded request: %v", err)
	}
	rt, ok := s.routes[in.body.Endpoint]
	if !ok || !rt.gen || in.body.Endpoint == forwardPath {
		return badRequest("", "a forwarded request's endpoint must be a generation endpoint, not %q", in.body.Endpoint)
	}
	ctx.SetUserValue(inboundKey, in)
	ctx.Request.SetBodyRaw(in.body.Request)
	return s.route(ctx, m, rt, in.body.Endpoint)
}

// route serves a generation request here or forwards it, as the fleet's
// state decides.
func (s *Server) route(ctx *fasthttp.RequestCtx, m *ready, rt route, endpoint string) *apiError {
	if m.Forward == nil || m.Fleet == nil {
		return rt.h(s, ctx, m)
	}
	in := inboundOf(ctx)
	if in != nil && in.body.Prompt != nil {
		return rt.h(s, ctx, m) // a resume was sent here to be served here
	}
	var head struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	_ = json.Unmarshal(ctx.PostBody(), &head) // a bad body is the handler's to refuse
	model := head.Model
	if model == "" {
		model = s.cfg.ModelName
	}
	fb := forwardBody{Endpoint: endpoint, Key: randomHex(12), Created: time.Now().Unix(), Seed: rand.Uint64(), Request: ctx.PostBody()}
	hops, path := 0, []string(nil)
	if in != nil {
		fb, hops, path = in.body, in.hops, in.path
	}
	var tried []string
	for {
		d, self, peer, err := s.decide(m, model, hops, slices.Concat(path, tried))
		if err != nil {
			return notFound("model_not_found", "the model %q is not served by this node (%q) or by any peer it can reach; GET /v1/models lists the fleet's models", model, s.cfg.ModelName)
		}
		if d.Local {
			return rt.h(s, ctx, m)
		}
		headers := hopHeaders{hops: hops + 1, path: append(slices.Clone(path), self.Name)}
		var done bool
		var e *apiError
		if head.Stream {
			done, e = s.forwardStream(ctx, m, peer, headers, fb, d.Reason, model)
		} else {
			done, e = s.forwardWhole(ctx, m, peer, headers, fb, d.Reason)
		}
		if done {
			return e
		}
		tried = append(tried, d.Peer)
	}
}

// decide runs the forwarding decision on the fleet as gossip shows it, and
// returns this node and the peer chosen (if any) from the same view.
func (s *Server) decide(m *ready, model string, hops int, path []string) (d cluster.Decision, self, peer cluster.Member, err error) {
	members := m.Fleet.Members()
	self, _ = selfMember(members)
	st := m.Batcher.Stats()
	cfg := m.Forward.Config
	if cfg.Threshold <= 0 {
		cfg.Threshold = cluster.DefaultForwardThreshold(st.IdleTTFT)
	}
	now := time.Now()
	in := cluster.ForwardInput{Model: model, Hops: hops, Path: path,
		Local: cluster.LocalView{Name: self.Name, Region: self.State.Region, Zone: self.State.Zone, Serves: model == s.cfg.ModelName,
			Wait: st.Wait, QueueFull: st.Waiting >= m.Batcher.Limits().MaxQueue, Draining: s.drain.Load()},
		Peers: cluster.Candidates(members, func(name string) bool { return s.avoid.Avoided(name, now) }),
	}
	s.sent.adjust(in.Peers, now)
	d, err = cluster.Choose(in, cfg, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	if err == nil && !d.Local {
		s.sent.add(d.Peer, now)
		peer, _ = memberNamed(members, d.Peer) // Choose picks among these members
	}
	return d, self, peer, err
}

// sentWindow is about how long a peer's gossiped state takes to show the
// requests this node sends it: the state goes out every 100 ms, and gossip
// takes a few of its 200 ms rounds.
const sentWindow = 400 * time.Millisecond

// sentLog remembers the requests this node forwarded lately, by peer. Until
// a peer's gossiped wait shows them, the decision adds them itself, each at
// the cost of a sequence the peer gossips: without it, every request between
// two gossip rounds goes to the peer that looked idlest, and the fleet herds.
type sentLog struct {
	mu   sync.Mutex
	sent map[string][]time.Time
}

func (l *sentLog) add(peer string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sent == nil {
		l.sent = map[string][]time.Time{}
	}
	l.sent[peer] = append(l.sent[peer], now)
}

// adjust adds to each peer's wait its requests sent within sentWindow.
func (l *sentLog) adjust(peers []cluster.Candidate, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, ts := range l.sent {
		i := 0
		for i < len(ts) && now.Sub(ts[i]) > sentWindow {
			i++
		}
		if ts = ts[i:]; len(ts) == 0 {
			delete(l.sent, name)
			continue
		}
		l.sent[name] = ts
	}
	for i := range peers {
		peers[i].Wait += time.Duration(len(l.sent[peers[i].Name])) * peers[i].PerSeq
	}
}

func selfMember(members []cluster.Member) (cluster.Member, bool) {
	for _, mb := range members {
		if mb.Self {
			return mb, true
		}
	}
	return cluster.Member{}, false
}

func memberNamed(members []cluster.Member, name string) (cluster.Member, bool) {
	for _, mb := range members {
		if mb.Name == name {
			return mb, true
		}
	}
	return cluster.Member{}, false
}

type hopHeaders struct {
	hops int
	path []string
}

// send makes the forwarded request to peer and returns its answer, whose
// body streams; the caller releases it. An error means the peer did not
// answer.
func (s *Server) send(m *ready, peer cluster.Member, h hopHeaders, fb forwardBody) (*fasthttp.Response, error) {
	body, err := json.Marshal(fb)
	if err != nil {
		return nil, err
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(peerURL(peer.State.HTTPAddr) + forwardPath)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	hops, path := strconv.Itoa(h.hops), strings.Join(h.path, ",")
	req.Header.Set(headerHops, hops)
	req.Header.Set(headerPath, path)
	req.Header.Set(headerToken, m.Forward.Auth.Sign(time.Now(), tokenParts(hops, path, body)...))
	req.SetBodyRaw(body)
	resp := fasthttp.AcquireResponse()
	resp.StreamBody = true
	start := time.Now()
	if err := s.peers.Do(req, resp); err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, err
	}
	s.metrics.forwardRTT.Observe(time.Since(start).Seconds())
	return resp, nil
}

// peerURL is the base URL of a peer's API from its published address.
func peerURL(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "http://" + addr
}

// retryable tells a peer's refusal that another node may not share: it is
// full, draining, or not (any longer) serving the model, or it does not
// take this node's token. Other statuses are the request's own fault and go
// back to the client.
func retryable(status int) bool {
	switch status {
	case fasthttp.StatusUnauthorized, fasthttp.StatusNotFound, fasthttp.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

// failed records a forward that got no answer from peer, which is then
// avoided.
func (s *Server) failed(peer string, reason cluster.Reason, err error) {
	s.avoid.Fail(peer, time.Now())
	s.metrics.forwarded.WithLabelValues(peer, string(reason), "failed").Inc()
	s.log.Warn("forwarding failed; trying another node", "peer", peer, "error", err)
}

// answer sends a peer's non-200 answer to the client, or reports that the
// request should go elsewhere.
func (s *Server) answer(ctx *fasthttp.RequestCtx, peer string, reason cluster.Reason, resp *fasthttp.Response) (done bool) {
	status := resp.StatusCode()
	body, _ := io.ReadAll(io.LimitReader(resp.BodyStream(), 1<<20))
	if retryable(status) {
		s.failed(peer, reason, fmt.Errorf("status %d: %s", status, bytes.TrimSpace(body)))
		return false
	}
	s.metrics.forwarded.WithLabelValues(peer, string(reason), "relayed_error").Inc()
	ctx.SetStatusCode(status)
	ctx.SetContentType(string(resp.Header.ContentType()))
	ctx.SetBody(body)
	return true
}

// forwardWhole forwards a request whose client wants one whole answer. The
// peer streams comments while it generates, so that a hang-up is seen both
// ways, then the answer as one event. Should it fail before that, the
// request goes to the next node from the start: its seed makes the answer
// the same.
func (s *Server) forwardWhole(ctx *fasthttp.RequestCtx, m *ready, peer cluster.Member, h hopHeaders, fb forwardBody, reason cluster.Reason) (bool, *apiError) {
	resp, err := s.send(m, peer, h, fb)
	if err != nil {
		s.failed(peer.Name, reason, err)
		return false, nil
	}
	defer fasthttp.ReleaseResponse(resp)
	if resp.StatusCode() != fasthttp.StatusOK {
		return s.answer(ctx, peer.Name, reason, resp), nil
	}
	cctx, cancel := clientContext(ctx)
	defer cancel()
	body := resp.BodyStream()
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-cctx.Done():
			// Unblocks the read below; the peer sees the hang-up.
			if c, ok := body.(fasthttp.ReadCloserWithError); ok {
				_ = c.CloseWithError(errClientGone)
			}
		case <-stop:
		}
	}()
	defer func() { close(stop); <-watched }() // before resp is released
	var status int
	var data []byte
	err = readEvents(bufio.NewReader(body), func(ev sseEvent) error {
		if ev.status != 0 {
			status = ev.status
		}
		if ev.data != nil {
			data = ev.data
			return errStop
		}
		return nil
	})
	switch {
	case data != nil:
		s.metrics.forwarded.WithLabelValues(peer.Name, string(reason), "ok").Inc()
		ctx.SetStatusCode(max(status, fasthttp.StatusOK)) // an error event carries its status
		ctx.SetContentType("application/json")
		ctx.SetBody(data)
		return true, nil
	case cctx.Err() != nil:
		return true, nil // the client is gone; nothing to answer
	}
	s.failed(peer.Name, reason, fmt.Errorf("the answer broke off: %v", err))
	return false, nil
}

// forwardStream forwards a streamed request. Once the peer answers 200 the
// client's stream starts; events pass through as they arrive, and should
// the peer fail mid-way the stream resumes on another node.
func (s *Server) forwardStream(ctx *fasthttp.RequestCtx, m *ready, peer cluster.Member, h hopHeaders, fb forwardBody, reason cluster.Reason, model string) (bool, *apiError) {
	resp, err := s.send(m, peer, h, fb)
	if err != nil {
		s.failed(peer.Name, reason, err)
		return false, nil
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		defer fasthttp.ReleaseResponse(resp)
		return s.answer(ctx, peer.Name, reason, resp), nil
	}
	ctx.SetContentType("text/event-stream; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	r := &relay{s: s, m: m, fb: fb, h: h, peer: peer.Name, reason: reason, model: model}
	// The stream's writer leaves, as a local stream's does (see stream).
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.leave()
		r.run(w, resp)
	})
	return true, nil
}

// relay passes a peer's stream to the client and resumes it elsewhere when
// the peer fails.
type relay struct {
	s      *Server
	m      *ready
	fb     forwardBody
	h      hopHeaders
	peer   string
	reason cluster.Reason
	model  string

	prompt []int32 // the prompt's ids, when the stream has one choice
	tokens []int32 // ids sent so far
	wrote  bool    // an event went to the client
	ended  bool    // [DONE] or an error event passed
}

// maxResumes bounds how often one stream moves on.
const maxResumes = 3

func (r *relay) run(w *bufio.Writer, resp *fasthttp.Response) {
	var failed []string
	for attempt := 0; ; attempt++ {
		err := r.pass(w, resp)
		fasthttp.ReleaseResponse(resp)
		var gone clientGone
		switch {
		case errors.As(err, &gone):
			return // the peer saw the connection close
		case r.ended:
			r.s.metrics.forwarded.WithLabelValues(r.peer, string(r.reason), "ok").Inc()
			return
		}
		r.s.metrics.forwarded.WithLabelValues(r.peer, string(r.reason), "resumed").Inc()
		r.s.avoid.Fail(r.peer, time.Now())
		failed = append(failed, r.peer)
		r.s.log.Warn("a forwarded stream broke off", "peer", r.peer, "tokens_sent", len(r.tokens), "error", err)
		// A stream that sent the client nothing starts again elsewhere
		// (its prompt's ids, before which it broke, can be long).
		if r.prompt == nil && r.wrote || attempt >= maxResumes {
			_ = writeEvent(w, errorEvent(unavailable("the node generating this stream failed, and it could not be resumed")))
			return
		}
		if resp = r.resume(failed); resp == nil {
			_ = writeEvent(w, errorEvent(unavailable("the node generating this stream failed, and no node could resume it")))
			return
		}
	}
}

// resume sends the stream, as far as it went (from its start when no
// prompt came), to the best node that serves the model (this one
// included), and returns that node's answer.
func (r *relay) resume(failed []string) *fasthttp.Response {
	for len(failed) < 8 {
		members := r.m.Fleet.Members()
		self, _ := selfMember(members)
		now := time.Now()
		peers := cluster.Candidates(members, func(name string) bool { return r.s.avoid.Avoided(name, now) })
		// The stream resumes token for token where the model file and
		// numerics are those of the node it started on.
		model := cluster.Model{Name: r.model}
		if p, ok := memberNamed(members, r.peer); ok {
			for _, md := range p.State.Models {
				if md.Name == r.model {
					model = md
				}
			}
		}
		if !r.s.drain.Load() {
			peers = append(peers, cluster.Candidate{Name: self.Name, Alive: true, Models: self.State.Models, Wait: r.m.Batcher.Stats().Wait})
		}
		to, exact, err := cluster.ChooseResume(cluster.ResumeInput{Model: model.Name, Hash: model.Hash, Numerics: model.Numerics,
			Local: cluster.LocalView{Name: self.Name, Region: self.State.Region, Zone: self.State.Zone}, Peers: peers, Exclude: failed},
			r.m.Forward.Config, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
		if err != nil {
			r.s.log.Warn("no node to resume a stream on", "error", err)
			return nil
		}
		target, _ := memberNamed(members, to)
		fb := r.fb
		fb.Prompt, fb.Resume = r.prompt, slices.Clone(r.tokens)
		resp, err := r.s.send(r.m, target, r.h, fb)
		if err == nil && resp.StatusCode() == fasthttp.StatusOK {
			r.s.metrics.resumes.Inc()
			r.s.log.Info("resumed a stream", "on", to, "exact", exact, "tokens_sent", len(r.tokens))
			r.peer = to
			return resp
		}
		if err == nil {
			err = fmt.Errorf("status %d", resp.StatusCode())
			fasthttp.ReleaseResponse(resp)
		}
		r.s.avoid.Fail(to, time.Now())
		failed = append(failed, to)
		r.s.log.Warn("resuming a stream failed; trying another node", "peer", to, "error", err)
	}
	return nil
}

// errClientGone closes a peer's answer whose client hung up.
var errClientGone = errors.New("the client hung up")

// clientGone wraps a failed write to the client.
type clientGone struct{ error }

// pass writes the events of one peer's answer to the client, recording the
// ids, until the answer ends. A nil error means the answer ended cleanly.
func (r *relay) pass(w *bufio.Writer, resp *fasthttp.Response) error {
	err := readEvents(bufio.NewReader(resp.BodyStream()), func(ev sseEvent) error {
		switch {
		case ev.prompt != nil:
			if r.prompt == nil {
				r.prompt = ev.prompt
			}
		case ev.token >= 0:
			r.tokens = append(r.tokens, ev.token)
		}
		if ev.data == nil {
			return nil
		}
		if bytes.Equal(ev.data, []byte("[DONE]")) || bytes.HasPrefix(ev.data, []byte(`{"error"`)) {
			r.ended = true
		}
		if err := writeEvent(w, string(ev.data)); err != nil {
			_ = resp.CloseBodyStream()
			return clientGone{err}
		}
		r.wrote = true
		return nil
	})
	if err == nil && !r.ended {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// sseEvent is one event of a peer's answer: its data, if any, and what its
// comments carry.
type sseEvent struct {
	data   []byte
	prompt []int32
	token  int32 // -1: none
	status int   // of an error event in a whole answer
}

// errStop ends readEvents early, with no error.
var errStop = errors.New("stop")

// readEvents reads server-sent events from br and passes each to f; it
// returns nil at the end of the stream or when f returns errStop.
func readEvents(br *bufio.Reader, f func(sseEvent) error) error {
	ev := sseEvent{token: -1}
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if err == io.EOF && len(line) == 0 {
				return nil
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if ev.data == nil && ev.prompt == nil && ev.token < 0 && ev.status == 0 {
				continue
			}
			if err := f(ev); err != nil {
				if err == errStop {
					return nil
				}
				return err
			}
			ev = sseEvent{token: -1}
		case bytes.HasPrefix(line, []byte("data: ")):
			ev.data = append(ev.data, line[len("data: "):]...)
		case bytes.HasPrefix(line, []byte(": ")):
			ev.comment(string(line[2:]))
		}
	}
}

// comment reads the forwarding comments: "prompt 1,2,3", "tok 42",
// "status 500". Others are ignored.
func (ev *sseEvent) comment(c string) {
	kind, arg, _ := strings.Cut(c, " ")
	switch kind {
	case "prompt":
		ids := []int32{}
		for f := range strings.SplitSeq(arg, ",") {
			id, err := strconv.ParseInt(f, 10, 32)
			if err != nil {
				return
			}
			ids = append(ids, int32(id))
		}
		ev.prompt = ids
	case "tok":
		if id, err := strconv.ParseInt(arg, 10, 32); err == nil && id >= 0 {
			ev.token = int32(id)
		}
	case "status":
		ev.status, _ = strconv.Atoi(arg)
	}
}

// writeComment writes a comment event, which SSE clients ignore.
func writeComment(w sseWriter, c string) error {
	if _, err := w.Write([]byte(": " + c + "\n\n")); err != nil {
		return err
	}
	return w.Flush()
}

// promptComment is the comment that carries a stream's prompt ids.
func promptComment(ids []int32) string {
	b := make([]byte, 0, 7+6*len(ids))
	b = append(b, "prompt "...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(id), 10)
	}
	return string(b)
}

// newPeerClient is the client forwarded requests go out on: response
// bodies stream, so that each event passes as it arrives.
func newPeerClient(f *Forwarding) *fasthttp.Client {
	dial := f.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: 3 * time.Second}
		dial = func(addr string) (net.Conn, error) { return d.Dial("tcp", addr) }
	}
	return &fasthttp.Client{Name: "godwit", Dial: dial, TLSConfig: f.TLS, StreamResponseBody: true,
		MaxConnsPerHost: 4096, MaxIdleConnDuration: time.Minute, NoDefaultUserAgentHeader: true}
}

// countMembers counts the fleet's members in a state: alive, dead or
// draining (alive and draining).
func (s *Server) countMembers(state string) int {
	m := s.model.Load()
	if m == nil || m.Fleet == nil {
		return 0
	}
	n := 0
	for _, mb := range m.Fleet.Members() {
		switch {
		case state == "dead" && mb.Status == cluster.Dead,
			state == "alive" && mb.Status == cluster.Alive,
			state == "draining" && mb.Status == cluster.Alive && mb.State.Draining:
			n++
		}
	}
	return n
}
