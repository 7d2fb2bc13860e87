// Package server is godwit's OpenAI-compatible HTTP API on fasthttp:
// /v1/completions, /v1/chat/completions (with server-sent events), /v1/models,
// /tokenize, /detokenize, /health and Prometheus /metrics under vLLM's metric
// names. Requests become batcher requests; errors have OpenAI's shape.
//
// A Server answers from the moment it listens: /health and the API answer 503
// until SetReady hands it a loaded model, and again once Drain starts.
package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/cluster"
	"github.com/godwit-ai/godwit/internal/jinja"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// Config sets up a Server; the zero value takes the defaults named.
type Config struct {
	// ModelName is the id clients name in "model" (default "godwit").
	ModelName string
	// APIKeys, when not empty, are the bearer tokens the API accepts;
	// /health and /metrics stay open.
	APIKeys []string
	// MaxBodySize is the largest request body in bytes (default 4 MiB);
	// larger ones get a 413.
	MaxBodySize int
	// Logger receives request errors and panics (default slog.Default()).
	Logger *slog.Logger

	// HeaderTimeout bounds the wait for a request's headers, from the
	// connection's opening or a keep-alive request's first byte (default
	// 10 s): a client that sends nothing, or a byte at a time, cannot hold
	// a connection. Late requests get a 408 and the connection closes.
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body once its headers are in
	// (default 60 s). Neither timeout touches the answer: a stream may run
	// for as long as it generates.
	BodyTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request (default 2 min).
	IdleTimeout time.Duration
	// MaxConns is the most connections served at once (default 4096);
	// more are answered 503 and closed.
	MaxConns int
	// MaxConnsPerIP, when above 0, is the most connections from one
	// address; more are answered 429 and closed. 0 (the default) sets no
	// limit, since clients behind one proxy or NAT share an address.
	MaxConnsPerIP int
	// ChatTemplateLimits bound each render of the chat template, which
	// comes with the model and may be hostile; a zero field takes
	// jinja.DefaultLimits'. A request whose render goes past them gets a
	// 400.
	ChatTemplateLimits jinja.Limits
}

// Defaults of Config.
const (
	DefaultHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout   = 60 * time.Second
	DefaultIdleTimeout   = 2 * time.Minute
	DefaultMaxConns      = 4096
)

// Limits of a request's head, fixed: the API needs no more. Headers get
// maxHeaderBytes (room for a long bearer token; larger get a 431) and the
// request target maxURLBytes (longer gets a 414): a connection's read
// buffer is maxHeaderBytes, so MaxConns bounds their memory.
const (
	maxHeaderBytes = 32 << 10
	maxURLBytes    = 4 << 10
)

// Model is what a Server serves once loaded.
type Model struct {
	Batcher   *batcher.Batcher
	Tokenizer *tokenizer.Tokenizer
	// Context is the model's context length in tokens.
	Context int
	// ChatTemplate is the Jinja chat template (the file's
	// tokenizer.chat_template); empty picks a built-in one.
	ChatTemplate string
	// ChatTemplateName names ChatTemplate in errors (default "gguf").
	ChatTemplateName string
	// Arch is the model's architecture (general.architecture): without a
	// ChatTemplate, and with a vocabulary that names no chat format, it
	// picks its family's built-in template (gemma2 and gemma3: Gemma's,
	// phi3: Phi-3's).
	Arch string
	// Fleet, when the node is in a cluster, lists its members for
	// GET /v1/cluster and the fleet's models; nil: the node runs alone.
	Fleet Fleet
	// Forward, with Fleet, lets the node forward requests to its peers.
	Forward *Forwarding
}

// Fleet is the cluster this node belongs to (*cluster.Node).
type Fleet interface {
	Members() []cluster.Member
}

// ready is a Model prepared for serving.
type ready struct {
	Model
	chat      *chatTemplate
	bos, eos  string
	createdAt int64
}

// modelsPrefix starts the path of GET /v1/models/{id}.
const modelsPrefix = "/v1/models/"

// Server is the HTTP API. Create it with New.
type Server struct {
	cfg     Config
	log     *slog.Logger
	model   atomic.Pointer[ready]
	drain   atomic.Bool
	metrics *metrics
	routes  map[string]route

	// In-flight generation requests (a stream counts until its last
	// byte is written), for Drain.
	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed when inflight drops to 0 while draining

	srv *fasthttp.Server

	// Forwarding's: the client to peers, the peers that failed lately, and
	// the requests sent lately.
	peers *fasthttp.Client
	avoid cluster.Avoid
	sent  sentLog

	langs languages // compiled output formats
}

type route struct {
	method string
	auth   bool // needs an API key when keys are set
	gen    bool // a generation request: counted in flight, refused while draining
	h      func(s *Server, ctx *fasthttp.RequestCtx, m *ready) *apiError
}

// New returns a server that answers 503 until SetReady.
func New(cfg Config) *Server {
	if cfg.ModelName == "" {
		cfg.ModelName = "godwit"
	}
	if cfg.MaxBodySize <= 0 {
		cfg.MaxBodySize = 4 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.HeaderTimeout, DefaultHeaderTimeout}, {&cfg.BodyTimeout, DefaultBodyTimeout}, {&cfg.IdleTimeout, DefaultIdleTimeout}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.ChatTemplateLimits.Steps <= 0 {
		cfg.ChatTemplateLimits.Steps = jinja.DefaultLimits.Steps
	}
	if cfg.ChatTemplateLimits.OutputBytes <= 0 {
		cfg.ChatTemplateLimits.OutputBytes = jinja.DefaultLimits.OutputBytes
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.metrics = newMetrics(s)
	s.routes = map[string]route{
		"/v1/completions":      {method: "POST", auth: true, gen: true, h: (*Server).completions},
		"/v1/chat/completions": {method: "POST", auth: true, gen: true, h: (*Server).chatCompletions},
		"/v1/models":           {method: "GET", auth: true, h: (*Server).listModels},
		"/v1/cluster":          {method: "GET", auth: true, h: (*Server).listMembers},
		forwardPath:            {method: "POST", gen: true}, // its token is its key; see forwarded
		modelsPrefix:           {method: "GET", auth: true, h: (*Server).retrieveModel},
		"/tokenize":            {method: "POST", auth: true, h: (*Server).tokenize},
		"/detokenize":          {method: "POST", auth: true, h: (*Server).detokenize},
	}
	return s
}

// SetReady starts serving m.
func (s *Server) SetReady(m Model) error {
	r := &ready{Model: m, createdAt: time.Now().Unix()}
	if id := m.Tokenizer.BOS(); id >= 0 {
		r.bos = string(m.Tokenizer.Piece(id))
	}
	if id := m.Tokenizer.EOS(); id >= 0 {
		r.eos = string(m.Tokenizer.Piece(id))
	}
	ct, err := newChatTemplate(m.ChatTemplate, m.ChatTemplateName, m.Arch, m.Tokenizer, s.cfg.ChatTemplateLimits)
	if err != nil {
		return err
	}
	r.chat = ct
	if m.Forward != nil {
		s.mu.Lock()
		s.peers = newPeerClient(m.Forward)
		s.mu.Unlock()
	}
	s.model.Store(r)
	return nil
}

// Handler is the server's request handler, for a fasthttp.Server of the
// caller's (Serve makes one).
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	id := string(ctx.Request.Header.Peek("X-Request-Id"))
	if id == "" || len(id) > 128 {
		id = "req-" + randomHex(12)
	}
	ctx.Response.Header.Set("X-Request-Id", id)
	path := string(ctx.Path())
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in handler", "request_id", id, "path", path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			ctx.Response.Reset()
			ctx.Response.Header.Set("X-Request-Id", id)
			writeError(ctx, internalError(id))
		}
		s.metrics.request(path, ctx.Response.StatusCode(), time.Since(start))
	}()
	if n := len(ctx.Request.Header.RequestURI()); n > maxURLBytes {
		writeError(ctx, &apiError{Status: fasthttp.StatusRequestURITooLong, Type: typeInvalid, Code: "uri_too_long",
			Message: fmt.Sprintf("the request target is %d bytes, over the limit of %d; the API takes its parameters in the body", n, maxURLBytes)})
		return
	}
	switch path {
	case "/health", "/metrics":
		// Read-only; HEAD too, for probes that send it.
		if m := string(ctx.Method()); m != "GET" && m != "HEAD" {
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			writeError(ctx, &apiError{Status: fasthttp.StatusMethodNotAllowed, Type: typeInvalid,
				Message: fmt.Sprintf("%s takes GET, not %s", path, m)})
			return
		}
	}
	switch path {
	case "/health":
		if s.model.Load() == nil || s.drain.Load() {
			writeError(ctx, s.unavailable())
			return
		}
		ctx.SetStatusCode(fasthttp.StatusOK)
		return
	case "/metrics":
		s.metrics.write(ctx)
		return
	}
	rt, ok := s.routes[path]
	if !ok && strings.HasPrefix(path, modelsPrefix) && len(path) > len(modelsPrefix) {
		rt, ok = s.routes[modelsPrefix], true
	}
	if !ok {
		writeError(ctx, notFound("not_found", "there is no route %s %s", ctx.Method(), path))
		return
	}
	if string(ctx.Method()) != rt.method {
		ctx.Response.Header.Set("Allow", rt.method)
		writeError(ctx, &apiError{Status: fasthttp.StatusMethodNotAllowed, Type: typeInvalid,
			Message: fmt.Sprintf("%s takes %s, not %s", path, rt.method, ctx.Method())})
		return
	}
	if rt.auth && !s.authorized(ctx) {
		ctx.Response.Header.Set("WWW-Authenticate", "Bearer")
		writeError(ctx, &apiError{Status: fasthttp.StatusUnauthorized, Type: typeAuth, Code: "invalid_api_key",
			Message: "a valid API key is required: send it as Authorization: Bearer KEY"})
		return
	}
	m := s.model.Load()
	if m == nil || (rt.gen && s.drain.Load()) {
		writeError(ctx, s.unavailable())
		return
	}
	if rt.gen {
		if !s.enter() {
			writeError(ctx, s.unavailable())
			return
		}
		// A stream leaves when its writer ends (see stream).
		defer func() {
			if !ctx.Response.IsBodyStream() && !ctx.Hijacked() {
				s.leave()
			}
		}()
	}
	if rt.method == "POST" && !utf8.Valid(ctx.PostBody()) {
		writeError(ctx, badRequest("", "the request body is not valid UTF-8"))
		return
	}
	var e *apiError
	switch {
	case path == forwardPath:
		e = s.forwarded(ctx, m)
	case rt.gen:
		e = s.route(ctx, m, rt, path)
	default:
		e = rt.h(s, ctx, m)
	}
	if e != nil {
		if e.Status >= 500 {
			s.log.Error("request failed", "request_id", id, "path", path, "status", e.Status, "error", e.Message)
		}
		writeError(ctx, e)
	}
}

func (s *Server) unavailable() *apiError {
	if s.drain.Load() {
		return unavailable("the server is shutting down")
	}
	return unavailable("the model is still loading")
}

// authorized checks the bearer token against the configured keys.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	if len(s.cfg.APIKeys) == 0 {
		return true
	}
	// The scheme is case-insensitive (RFC 9110, 11.1): "bearer KEY" too.
	scheme, token, ok := bytes.Cut(ctx.Request.Header.Peek("Authorization"), []byte(" "))
	if !ok || !bytes.EqualFold(scheme, []byte("Bearer")) {
		return false
	}
	good := false
	for _, k := range s.cfg.APIKeys {
		if subtle.ConstantTimeCompare(token, []byte(k)) == 1 {
			good = true
		}
	}
	return good
}

// enter counts a generation request in flight; it fails while draining.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drain.Load() {
		return false
	}
	s.inflight++
	return true
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if s.inflight == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// Draining tells whether Drain has been called.
func (s *Server) Draining() bool { return s.drain.Load() }

// InFlight is the number of generation requests being answered.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight
}

// Drain makes /health and new generation requests answer 503 and waits
// until the requests in flight have finished or ctx is done.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.drain.Store(true)
	var idle chan struct{}
	if s.inflight > 0 {
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle = s.idle
	}
	s.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.srv == nil {
		s.srv = &fasthttp.Server{
			Handler:            s.Handler,
			Name:               "godwit",
			MaxRequestBodySize: s.cfg.MaxBodySize,
			ReadBufferSize:     maxHeaderBytes,
			// fasthttp's ReadTimeout runs from the connection's opening (a
			// keep-alive request's first byte) to the end of the request;
			// HeaderReceived restarts it for the body. No write deadline is
			// set, and reads stop while a request is answered, so neither
			// cuts a long stream or the hang-up watch (which peeks at the
			// socket directly).
			ReadTimeout: s.cfg.HeaderTimeout,
			HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
				return fasthttp.RequestConfig{ReadTimeout: s.cfg.BodyTimeout}
			},
			IdleTimeout:     s.cfg.IdleTimeout,
			Concurrency:     s.cfg.MaxConns,
			MaxConnsPerIP:   s.cfg.MaxConnsPerIP,
			CloseOnShutdown: true,
			ErrorHandler:    s.errorHandler,
			Logger:          slogPrinter{s.log},
		}
	}
	srv := s.srv
	s.mu.Unlock()
	return srv.Serve(ln)
}

// Shutdown stops listening and waits for open connections until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.ShutdownWithContext(ctx)
}

// errorHandler answers requests fasthttp could not read: an oversized body
// gets a 413 (fasthttp's own answer would be a 400), a late one a 408.
func (s *Server) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var nerr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, tooLarge(s.cfg.MaxBodySize))
	case errors.As(err, &small):
		writeError(ctx, &apiError{Status: fasthttp.StatusRequestHeaderFieldsTooLarge, Type: typeInvalid,
			Message: fmt.Sprintf("the request line and headers are larger than %d KiB", maxHeaderBytes>>10)})
	case errors.As(err, &nerr) && nerr.Timeout():
		writeError(ctx, &apiError{Status: fasthttp.StatusRequestTimeout, Type: typeInvalid, Code: "request_timeout",
			Message: fmt.Sprintf("the request did not arrive in time: headers must arrive within %v and the body within %v of them (--header-timeout, --body-timeout)",
				s.cfg.HeaderTimeout, s.cfg.BodyTimeout)})
	default:
		writeError(ctx, badRequest("", "cannot read the HTTP request: %v", err))
	}
	s.metrics.request("", ctx.Response.StatusCode(), 0)
}

type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }

// decode reads the JSON body into v, refusing unknown fields.
func decode(ctx *fasthttp.RequestCtx, v any) *apiError {
	body := ctx.PostBody()
	if len(bytes.TrimSpace(body)) == 0 {
		return decodeError(errEmptyBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	// More() would miss a stray ']' or '}', so read on to the end.
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("", "malformed JSON: something follows the request's object")
	}
	return nil
}

// writeJSON answers 200 with v.
func writeJSON(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own types always marshal
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// decodeRequest reads the JSON body into v, an API request whose model
// field model points at, and answers 404 for a model we do not serve (""
// means ours).
func (s *Server) decodeRequest(ctx *fasthttp.RequestCtx, v any, model *string) *apiError {
	if e := decode(ctx, v); e != nil {
		return e
	}
	if name := *model; name != "" && name != s.cfg.ModelName {
		return notFound("model_not_found", "the model %q does not exist; this server serves %q", name, s.cfg.ModelName)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// modelEntry is a model in GET /v1/models.
type modelEntry struct {
	ID          string   `json:"id"`
	Object      string   `json:"object"`
	Created     int64    `json:"created"`
	OwnedBy     string   `json:"owned_by"`
	MaxModelLen int      `json:"max_model_len,omitempty"`
	Nodes       []string `json:"nodes,omitempty"` // in a fleet: the nodes serving it
}

// models lists the models a request here can name. In a fleet, which has
// one model namespace, that is every model a live node serves, each with
// the nodes that serve it.
func (s *Server) models(m *ready) []modelEntry {
	list := []modelEntry{{ID: s.cfg.ModelName, Object: "model", Created: m.createdAt, OwnedBy: "godwit", MaxModelLen: m.Context}}
	if m.Fleet == nil {
		return list
	}
	at := map[string]int{s.cfg.ModelName: 0}
	for _, mb := range m.Fleet.Members() {
		if mb.Status != cluster.Alive {
			continue
		}
		for _, md := range mb.State.Models {
			i, ok := at[md.Name]
			if !ok {
				i = len(list)
				at[md.Name] = i
				list = append(list, modelEntry{ID: md.Name, Object: "model", OwnedBy: "godwit"})
			}
			list[i].Nodes = append(list[i].Nodes, mb.Name)
		}
	}
	return list
}

// listModels answers GET /v1/models.
func (s *Server) listModels(ctx *fasthttp.RequestCtx, m *ready) *apiError {
	writeJSON(ctx, struct {
		Object string       `json:"object"`
		Data   []modelEntry `json:"data"`
	}{"list", s.models(m)})
	return nil
}

// retrieveModel answers GET /v1/models/{id}; an id may hold slashes.
func (s *Server) retrieveModel(ctx *fasthttp.RequestCtx, m *ready) *apiError {
	id := strings.TrimPrefix(string(ctx.Path()), modelsPrefix)
	for _, e := range s.models(m) {
		if e.ID == id {
			writeJSON(ctx, e)
			return nil
		}
	}
	return notFound("model_not_found", "the model %q does not exist; GET /v1/models lists the models served", id)
}

// listMembers answers GET /v1/cluster: the fleet's members as this node
// sees them.
func (s *Server) listMembers(ctx *fasthttp.RequestCtx, m *ready) *apiError {
	if m.Fleet == nil {
		return notFound("not_in_a_cluster", "this node is not in a cluster; start it with --cluster-bind or --join")
	}
	type model struct {
		Name     string `json:"name"`
		Hash     string `json:"hash,omitempty"`
		Numerics string `json:"numerics,omitempty"`
	}
	type member struct {
		Name     string   `json:"name"`
		Self     bool     `json:"self,omitempty"`
		Status   string   `json:"status"`
		Gossip   string   `json:"gossip_addr"`
		HTTP     string   `json:"http_addr"`
		Region   string   `json:"region,omitempty"`
		Zone     string   `json:"zone,omitempty"`
		Models   []model  `json:"models"`
		Running  int      `json:"running"`
		Waiting  int      `json:"waiting"`
		FreeKV   float64  `json:"free_kv"`
		WaitMs   float64  `json:"wait_ms"` // its estimate of a new request's wait for a first token
		TPS      float64  `json:"decode_tokens_per_second"`
		Draining bool     `json:"draining"`
		RTTMs    *float64 `json:"rtt_ms"` // null until the member's coordinate is heard
	}
	var out []member
	for _, mb := range m.Fleet.Members() {
		st := mb.State
		e := member{Name: mb.Name, Self: mb.Self, Status: mb.Status.String(), Gossip: mb.Addr, HTTP: st.HTTPAddr,
			Region: st.Region, Zone: st.Zone, Models: []model{}, Running: st.Running, Waiting: st.Waiting,
			FreeKV: st.FreeKV, WaitMs: float64(st.Wait) / float64(time.Millisecond), TPS: st.DecodeTPS, Draining: st.Draining}
		for _, md := range st.Models {
			e.Models = append(e.Models, model{md.Name, md.Hash, md.Numerics})
		}
		if mb.HasRTT {
			ms := float64(mb.RTT) / float64(time.Millisecond)
			e.RTTMs = &ms
		}
		out = append(out, e)
	}
	writeJSON(ctx, struct {
		Object  string   `json:"object"`
		Members []member `json:"members"`
	}{"list", out})
	return nil
}
