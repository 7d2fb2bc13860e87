package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/engine/sample"
)

// samplingFields are the generation parameters completions and chat share.
// Pointers tell a field left out (or null) from a zero.
type samplingFields struct {
	MaxTokens         *int               `json:"max_tokens"`
	Temperature       *float64           `json:"temperature"`
	TopP              *float64           `json:"top_p"`
	TopK              *int               `json:"top_k"`
	MinP              *float64           `json:"min_p"`
	Seed              *int64             `json:"seed"`
	Stop              json.RawMessage    `json:"stop"`
	N                 *int               `json:"n"`
	PresencePenalty   *float64           `json:"presence_penalty"`
	FrequencyPenalty  *float64           `json:"frequency_penalty"`
	RepetitionPenalty *float64           `json:"repetition_penalty"`
	LogitBias         map[string]float64 `json:"logit_bias"`
	IgnoreEOS         bool               `json:"ignore_eos"`
	User              string             `json:"user"` // accepted, not used
	Stream            bool               `json:"stream"`
	StreamOptions     *streamOptions     `json:"stream_options"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// defaultMaxTokens is OpenAI's default for max_tokens on completions.
const defaultMaxTokens = 16

// request validates f into a batcher request (without its prompt).
// maxTokensParam names the field max_tokens came from, for errors.
func (f *samplingFields) request(m *ready, maxTokensParam string) (batcher.Request, *apiError) {
	var r batcher.Request
	r.MaxTokens = defaultMaxTokens
	if f.MaxTokens != nil {
		if *f.MaxTokens < 1 {
			return r, badRequest(maxTokensParam, "%s must be at least 1, got %d", maxTokensParam, *f.MaxTokens)
		}
		r.MaxTokens = *f.MaxTokens
	}
	p := sample.Params{Temperature: 1, TopP: 1}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if v := f.Temperature; v != nil {
		if !finite(*v) || *v < 0 {
			return r, badRequest("temperature", "temperature must be at least 0, got %v", *v)
		}
		p.Temperature = float32(*v)
	}
	if v := f.TopP; v != nil {
		if !(*v > 0 && *v <= 1) {
			return r, badRequest("top_p", "top_p must be in (0, 1], got %v", *v)
		}
		p.TopP = float32(*v)
	}
	if v := f.TopK; v != nil {
		if *v < -1 {
			return r, badRequest("top_k", "top_k must be -1 or 0 (off) or positive, got %d", *v)
		}
		p.TopK = max(*v, 0)
	}
	if v := f.MinP; v != nil {
		if !(*v >= 0 && *v <= 1) {
			return r, badRequest("min_p", "min_p must be in [0, 1], got %v", *v)
		}
		p.MinP = float32(*v)
	}
	for _, pen := range []struct {
		name string
		v    *float64
		dst  *float32
	}{{"presence_penalty", f.PresencePenalty, &p.PresencePenalty}, {"frequency_penalty", f.FrequencyPenalty, &p.FrequencyPenalty}} {
		if pen.v != nil {
			if !(*pen.v >= -2 && *pen.v <= 2) {
				return r, badRequest(pen.name, "%s must be in [-2, 2], got %v", pen.name, *pen.v)
			}
			*pen.dst = float32(*pen.v)
		}
	}
	if v := f.RepetitionPenalty; v != nil {
		if !finite(*v) || *v <= 0 {
			return r, badRequest("repetition_penalty", "repetition_penalty must be above 0 (1 is off), got %v", *v)
		}
		p.RepetitionPenalty = float32(*v)
	}
	if f.Seed != nil {
		p.Seed, p.HasSeed = uint64(*f.Seed), true
	}
	if len(f.LogitBias) > 0 {
		p.LogitBias = make(map[int32]float32, len(f.LogitBias))
		vocab := m.Tokenizer.VocabSize()
		for k, v := range f.LogitBias {
			id, err := strconv.ParseInt(k, 10, 32)
			if err != nil || id < 0 || int(id) >= vocab {
				return r, badRequest("logit_bias", "logit_bias key %q is not a token id of this model (0..%d)", k, vocab-1)
			}
			if !(v >= -100 && v <= 100) {
				return r, badRequest("logit_bias", "logit_bias values must be in [-100, 100], got %v for %s", v, k)
			}
			p.LogitBias[int32(id)] = float32(v)
		}
	}
	if err := p.Validate(m.Tokenizer.VocabSize()); err != nil {
		return r, badRequest("", "%s", strings.TrimPrefix(err.Error(), sample.ErrInvalid.Error()+": "))
	}
	r.Sampling = p
	r.N = 1
	if f.N != nil {
		if *f.N < 1 || *f.N > m.MaxN {
			return r, badRequest("n", "n must be between 1 and %d, got %d", m.MaxN, *f.N)
		}
		r.N = *f.N
	}
	stop, e := parseStop(f.Stop)
	if e != nil {
		return r, e
	}
	r.Stop = stop
	r.IgnoreEOS = f.IgnoreEOS
	if f.StreamOptions != nil && !f.Stream {
		return r, badRequest("stream_options", "stream_options is only allowed with stream: true")
	}
	return r, nil
}

func (f *samplingFields) includeUsage() bool {
	return f.StreamOptions != nil && f.StreamOptions.IncludeUsage
}

// parseStop reads stop: a string or an array of strings.
func parseStop(raw json.RawMessage) ([]string, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, badRequest("stop", "stop must be a string or an array of strings")
	}
	if len(many) > 16 {
		return nil, badRequest("stop", "stop takes at most 16 strings, got %d", len(many))
	}
	out := many[:0]
	for _, s := range many {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// checkContext refuses a prompt whose length plus max_tokens is beyond the
// model's context.
func checkContext(m *ready, promptLen, maxTokens int, param string) *apiError {
	if promptLen+maxTokens > m.Context {
		return badRequest(param, "this model's maximum context length is %d tokens, but %d tokens were requested "+
			"(%d in the prompt and %d for the completion); shorten the prompt or lower %s",
			m.Context, promptLen+maxTokens, promptLen, maxTokens, param)
	}
	return nil
}

// submitError maps an error of Submit to its HTTP answer.
func submitError(err error) *apiError {
	switch {
	case errors.Is(err, batcher.ErrQueueFull):
		return queueFull()
	case errors.Is(err, batcher.ErrClosed):
		return unavailable("the server is shutting down")
	case errors.Is(err, batcher.ErrInvalid):
		return badRequest("", "%s", strings.TrimPrefix(err.Error(), batcher.ErrInvalid.Error()+": "))
	}
	return &apiError{Status: 500, Type: typeServer, Message: err.Error()}
}

// eventError maps a request's failure to what the client is told.
func eventError(err error) *apiError {
	if errors.Is(err, batcher.ErrClosed) {
		return unavailable("the server shut down before the request finished")
	}
	return &apiError{Status: 500, Type: typeServer, Code: "generation_failed", Message: err.Error()}
}

// job is a request's generation: one batcher request per prompt, each of n
// samples. Choice i*n+j is sample j of prompt i.
type job struct {
	s       *Server
	m       *ready
	ctx     context.Context
	cancel  context.CancelFunc
	n       int
	streams []*batcher.Stream
	events  chan tagged
}

type tagged struct {
	choice int
	ev     batcher.Event
}

// start submits one request per prompt; on failure nothing stays queued.
func (s *Server) start(m *ready, base batcher.Request, prompts [][]int32) (*job, *apiError) {
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{s: s, m: m, ctx: ctx, cancel: cancel, n: base.N}
	for _, p := range prompts {
		r := base
		r.Prompt = p
		st, err := m.Batcher.Submit(ctx, r)
		if err != nil {
			cancel()
			return nil, submitError(err)
		}
		j.streams = append(j.streams, st)
	}
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

// eachEvent passes the events of j to emit in order and returns their
// total usage. An event that carries an error is written as an error event
// instead and ends the stream: stop is then true, and no more may be
// written but for what err reports.
func (j *job) eachEvent(w sseWriter, emit func(t tagged) error) (u usage, stop bool, err error) {
	last := make([]time.Time, j.choices())
	for {
		t, ok := j.next(last)
		if !ok {
			return u, false, nil
		}
		if t.ev.Err != nil {
			return u, true, writeEvent(w, errorEvent(eventError(t.ev.Err)))
		}
		if t.ev.Usage != nil {
			u.add(t.ev.Usage)
		}
		if err := emit(t); err != nil {
			return u, false, err
		}
	}
}

// usage is OpenAI's token count of a response.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func (u *usage) add(b *batcher.Usage) {
	u.PromptTokens += b.PromptTokens
	u.CompletionTokens += b.CompletionTokens
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
}

// logprob is a log-probability for JSON, which has no −Inf (vLLM writes
// −9999 for banned tokens too).
func logprob(v float32) float64 {
	if math.IsInf(float64(v), -1) || math.IsNaN(float64(v)) || v < -9999 {
		return -9999
	}
	return float64(v)
}

// tokenText is how a token is named in logprobs: its text, or
// "bytes:\xNN…" when its bytes are not valid UTF-8 on their own (vLLM's
// convention).
func tokenText(m *ready, id int32) string {
	p := m.Tokenizer.Piece(id)
	if utf8.Valid(p) {
		return string(p)
	}
	var b strings.Builder
	b.WriteString("bytes:")
	for _, c := range p {
		fmt.Fprintf(&b, "\\x%02x", c)
	}
	return b.String()
}

// sseWriter writes server-sent events; its methods report a failed write,
// which means the client is gone.
type sseWriter interface {
	Write(p []byte) (int, error)
	Flush() error
}

func writeEvent(w sseWriter, v any) error {
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	if _, err := w.Write(append(append([]byte("data: "), b...), '\n', '\n')); err != nil {
		return err
	}
	return w.Flush()
}

// errorEvent is an error sent in place of a chunk once a stream has started.
func errorEvent(e *apiError) any {
	return struct {
		Error *apiError `json:"error"`
	}{e}
}
