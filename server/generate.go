package server

import (
	"bufio"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/godwit-ai/godwit/batcher"
)

// generation is a parsed completions or chat request, ready to submit: a
// batcher request per prompt, all with the same N.
type generation struct {
	reqs         []batcher.Request
	stream       bool
	includeUsage bool
}

// shape is what sets an endpoint's answers apart on the generation path
// completions and chat share: C is a choice of a whole response, D a choice
// of a streamed chunk.
type shape[C, D any] struct {
	idPrefix    string
	object      string // of a whole response
	chunkObject string // of a streamed chunk
	// fields names the request fields the endpoint calls otherwise than
	// the batcher's errors do (chat's top_logprobs for logprobs).
	fields map[string]string
	// choice is choice i of a whole response before any token.
	choice func(i int) C
	// add folds an event into its choice.
	add func(c *C, t tagged)
	// opening is what a stream sends of choice i before its first token,
	// if anything.
	opening func(i int) (D, bool)
	// delta is the chunk choice of an event, or false when the event has
	// nothing to send (its text is held back: a partial character or a
	// possible stop string).
	delta func(t tagged) (D, bool)
}

// envelope is a completions or chat response, whole or a streamed chunk.
// Usage is a usage in a whole response; in a chunk it is absent, or, when
// include_usage is asked for, JSON null until the last chunk has it.
type envelope[T any] struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []T    `json:"choices"`
	Usage   any    `json:"usage,omitempty"`
}

// generate runs g and answers with a whole response or a stream of chunks
// shaped by sh. A request forwarded from a peer is always answered with a
// stream (see streamChunks).
func generate[C, D any](s *Server, ctx *fasthttp.RequestCtx, m *ready, g generation, sh shape[C, D]) *apiError {
	in := inboundOf(ctx)
	if in != nil {
		if e := in.apply(&g); e != nil {
			return e
		}
	}
	if g.stream || in != nil {
		j, e := s.start(context.Background(), m, g, sh.idPrefix, sh.fields, in)
		if e != nil {
			return e
		}
		streamChunks(s, ctx, j, g, sh, in)
		return nil
	}
	// Nothing is written until the response is whole, so only watching
	// the connection tells that the client hung up.
	jctx, cancel := clientContext(ctx)
	defer cancel()
	j, e := s.start(jctx, m, g, sh.idPrefix, sh.fields, nil)
	if e != nil {
		return e
	}
	choices, u, failed, _ := collect(j, sh, nil)
	if failed != nil {
		return failed
	}
	if jctx.Err() != nil { // the events stopped because the client left
		return generationError(batcher.ErrCancelled, nil)
	}
	writeJSON(ctx, envelope[C]{ID: j.id, Object: sh.object, Created: j.created, Model: s.cfg.ModelName, Choices: choices, Usage: u})
	return nil
}

// collect folds j's events into whole choices; each, when set, sees every
// event first.
func collect[C, D any](j *job, sh shape[C, D], each func(t tagged) error) ([]C, usage, *apiError, error) {
	choices := make([]C, j.choices())
	for i := range choices {
		choices[i] = sh.choice(i)
	}
	u, failed, err := j.each(sh.fields, func(t tagged) error {
		if each != nil {
			if err := each(t); err != nil {
				return err
			}
		}
		sh.add(&choices[t.choice], t)
		return nil
	})
	return choices, u, failed, err
}

// apply makes g the request a resume asks for: the prompt's ids as sent,
// and the tokens already generated.
func (in *inbound) apply(g *generation) *apiError {
	if in.body.Prompt == nil {
		return nil
	}
	if len(g.reqs) != 1 || g.reqs[0].N > 1 {
		return badRequest("", "only a request with one choice can be resumed")
	}
	g.reqs[0].Prompt, g.reqs[0].Resume = in.body.Prompt, in.body.Resume
	return nil
}

// streamChunks answers with j's events as server-sent chunks, then the
// usage when asked for and [DONE].
//
// A request forwarded from a peer (in set) is answered so that the peer can
// pass it on and resume it: a comment with the prompt's ids first (when
// the request has one choice), and one with each token's id before its
// chunk. A resumed stream sends no opening, and its usage counts the tokens
// resumed from. A forwarded request that wants no stream gets the comments
// and then its whole response as one event; an error event then comes with
// a comment giving its status.
func streamChunks[C, D any](s *Server, ctx *fasthttp.RequestCtx, j *job, g generation, sh shape[C, D], in *inbound) {
	s.stream(ctx, j, func(w *bufio.Writer) error {
		send := func(choices []D, u any) error {
			return writeEvent(w, envelope[D]{ID: j.id, Object: sh.chunkObject, Created: j.created, Model: s.cfg.ModelName, Choices: choices, Usage: u})
		}
		resumed := in != nil && in.body.Prompt != nil
		if in != nil && j.choices() == 1 {
			if err := writeComment(w, promptComment(g.reqs[0].Prompt)); err != nil {
				return err
			}
		}
		// A token's id goes in the same event as its chunk, so that the
		// peer receives both or neither; a token with no chunk (its text
		// held back) has an event of its own.
		tokenID := func(t tagged) error {
			if in != nil && t.ev.Token >= 0 {
				_, err := w.WriteString(": tok " + strconv.Itoa(int(t.ev.Token)) + "\n")
				return err
			}
			return nil
		}
		endEvent := func(t tagged) error {
			if in != nil && t.ev.Token >= 0 {
				if _, err := w.WriteString("\n"); err != nil {
					return err
				}
				return w.Flush()
			}
			return nil
		}
		countResumed := func(u *usage) {
			if resumed {
				u.CompletionTokens += len(in.body.Resume)
				u.TotalTokens = u.PromptTokens + u.CompletionTokens
			}
		}
		// stopped ends the stream when the job failed: the status is
		// sent, so the error goes in an event (after its status for a
		// peer), and the stream ends without [DONE].
		stopped := func(u *usage, failed *apiError, err error) (bool, error) {
			countResumed(u)
			switch {
			case err != nil:
				return true, err
			case failed == nil:
				return false, nil
			case in != nil:
				if _, err := w.WriteString(": status " + strconv.Itoa(failed.Status) + "\n"); err != nil {
					return true, err
				}
			}
			return true, writeEvent(w, errorEvent(failed))
		}
		if !g.stream {
			choices, u, failed, err := collect(j, sh, func(t tagged) error {
				if err := tokenID(t); err != nil {
					return err
				}
				return endEvent(t)
			})
			if stop, err := stopped(&u, failed, err); stop {
				return err
			}
			return writeEvent(w, envelope[C]{ID: j.id, Object: sh.object, Created: j.created, Model: s.cfg.ModelName, Choices: choices, Usage: u})
		}
		// Chunks before the last have no usage, or null with include_usage.
		var noUsage any
		if g.includeUsage {
			noUsage = json.RawMessage("null")
		}
		for i := range j.choices() {
			if d, ok := sh.opening(i); ok && !resumed {
				if err := send([]D{d}, noUsage); err != nil {
					return err
				}
			}
		}
		u, failed, err := j.each(sh.fields, func(t tagged) error {
			if err := tokenID(t); err != nil {
				return err
			}
			if d, ok := sh.delta(t); ok {
				return send([]D{d}, noUsage)
			}
			return endEvent(t)
		})
		if stop, err := stopped(&u, failed, err); stop {
			return err
		}
		if g.includeUsage {
			if err := send([]D{}, u); err != nil {
				return err
			}
		}
		return writeEvent(w, "[DONE]")
	})
}

// stream answers with server-sent events written by write; a failed write
// (the client hung up) cancels the job, freeing its KV blocks by the next
// step.
func (s *Server) stream(ctx *fasthttp.RequestCtx, j *job, write func(w *bufio.Writer) error) {
	ctx.SetContentType("text/event-stream; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	rid := string(ctx.Response.Header.Peek("X-Request-Id"))
	body := func(w *bufio.Writer) {
		defer s.leave()
		defer j.cancel()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic in stream", "request_id", rid, "panic", p)
				_ = writeEvent(w, errorEvent(internalError(rid)))
			}
		}()
		// Only writes fail here, and a failed write means the client
		// is gone: nothing to answer, a line for debugging.
		if err := write(w); err != nil {
			s.log.Debug("stream ended early: the client is gone", "request_id", rid, "error", err)
		}
	}
	if ctx.Request.Header.IsHTTP11() {
		ctx.SetBodyStreamWriter(body)
		return
	}
	// HTTP/1.0 has no chunked encoding, which fasthttp would send all the
	// same: the body runs to the connection's end instead, written on the
	// connection itself once the handler returns.
	ctx.Response.Header.SetContentLength(-2) // no length, Connection: close
	head := append([]byte(nil), ctx.Response.Header.Header()...)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		w := bufio.NewWriter(c)
		_, _ = w.Write(head) // a failure sticks: the first event's write reports it
		body(w)
		_ = w.Flush()
	})
}

// finish is an event's finish reason for JSON: null until the last event
// of its choice.
func finish(t tagged) *string {
	if t.ev.Finish == "" {
		return nil
	}
	return &t.ev.Finish
}

// job is a request's generation: one batcher request per prompt, each of n
// samples. Choice i*n+j is sample j of prompt i.
type job struct {
	s       *Server
	id      string // of the response
	created int64
	cancel  context.CancelFunc
	n       int
	streams []*batcher.Stream
	events  chan tagged
}

type tagged struct {
	choice int
	ev     batcher.Event
}

// start submits one request per prompt of g; on failure nothing is
// queued. Ending ctx cancels the job. The response's id starts with
// idPrefix; fields are as in shape. A forwarded request (in set) takes its
// id, time and seed from the node the client called.
func (s *Server) start(ctx context.Context, m *ready, g generation, idPrefix string, fields map[string]string, in *inbound) (*job, *apiError) {
	ctx, cancel := context.WithCancel(ctx)
	key, created, seed := randomHex(12), time.Now().Unix(), rand.Uint64()
	if in != nil {
		key, created, seed = in.body.Key, in.body.Created, in.body.Seed
	}
	j := &job{s: s, id: idPrefix + key, created: created, cancel: cancel, n: g.reqs[0].N}
	// Every request leaves here with a seed, so that a stream resumed on
	// another node draws what this one would have (issue 14): one without
	// gets its own, per prompt, from the node the client called. It is
	// not part of the response.
	for i := range g.reqs {
		if p := &g.reqs[i].Sampling; !p.HasSeed {
			p.Seed, p.HasSeed = seed+uint64(i)<<32, true
		}
	}
	// All prompts are queued or none: a refused request costs no compute.
	streams, err := m.Batcher.SubmitAll(ctx, g.reqs)
	if err != nil {
		cancel()
		return nil, generationError(err, fields)
	}
	j.streams = streams
	// One reader per stream merges the events, in order per choice.
	j.events = make(chan tagged, 64)
	done := make(chan struct{})
	for i, st := range j.streams {
		go func() {
			for {
				ev, ok := st.Next(ctx)
				if !ok {
					done <- struct{}{}
					return
				}
				select {
				case j.events <- tagged{i*j.n + ev.Index, ev}:
				case <-ctx.Done():
					done <- struct{}{}
					return
				}
			}
		}()
	}
	go func() {
		for range j.streams {
			<-done
		}
		close(j.events)
	}()
	return j, nil
}

// choices is the number of choices the job produces.
func (j *job) choices() int { return len(j.streams) * j.n }

// each passes j's events to f in order and returns their total usage. It
// stops at f's first error, or at an event that carries one, which it
// returns as failed, mapped to its answer (fields as in shape).
func (j *job) each(fields map[string]string, f func(t tagged) error) (u usage, failed *apiError, err error) {
	last := make([]time.Time, j.choices())
	for {
		t, ok := j.next(last)
		if !ok {
			return u, nil, nil
		}
		if t.ev.Err != nil {
			return u, generationError(t.ev.Err, fields), nil
		}
		if t.ev.Usage != nil {
			u.add(t.ev.Usage)
		}
		if err := f(t); err != nil {
			return u, nil, err
		}
	}
}

// next returns the next event; ok is false when every stream has ended.
// It records the latency metrics as events pass.
func (j *job) next(last []time.Time) (tagged, bool) {
	t, ok := <-j.events
	if !ok {
		return t, false
	}
	if t.ev.Token >= 0 {
		if at := last[t.choice]; !at.IsZero() {
			j.s.metrics.itl.WithLabelValues().Observe(t.ev.At.Sub(at).Seconds())
		}
		last[t.choice] = t.ev.At
	}
	if t.ev.Finish != "" {
		j.s.metrics.success.WithLabelValues(t.ev.Finish).Inc()
	}
	if t.ev.Finished {
		j.s.metrics.finished(t.ev)
	}
	return t, true
}
