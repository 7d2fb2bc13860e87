package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

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
	Stream            bool               `json:"stream"`
	StreamOptions     *streamOptions     `json:"stream_options"`
	formatFields
	inert
}

// inert are the fields OpenAI's and vLLM's clients send that do not change
// the output: accepted, and logged at debug level.
type inert struct {
	User        *string         `json:"user"`
	Store       *bool           `json:"store"`
	Metadata    json.RawMessage `json:"metadata"`
	ServiceTier *string         `json:"service_tier"`
}

// logInert notes at debug level the fields a request set that change
// nothing.
func (s *Server) logInert(ctx *fasthttp.RequestCtx, names []string) {
	if len(names) > 0 {
		s.log.Debug("accepted fields that do not change the output", "request_id", string(ctx.Response.Header.Peek("X-Request-Id")), "fields", names)
	}
}

// names lists the inert fields the request sets.
func (f *inert) names() []string {
	var out []string
	for _, v := range []struct {
		name string
		set  bool
	}{{"user", f.User != nil}, {"store", f.Store != nil}, {"metadata", f.Metadata != nil}, {"service_tier", f.ServiceTier != nil}} {
		if v.set {
			out = append(out, v.name)
		}
	}
	return out
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// defaultMaxTokens is OpenAI's default for max_tokens on completions.
const defaultMaxTokens = 16

// request turns f into a batcher request (without its prompt). Ranges are
// checked once, by the batcher's Request.Validate when the request is
// submitted; here only what the JSON says is read.
func (f *samplingFields) request(langs *languages) (batcher.Request, *apiError) {
	r := batcher.Request{MaxTokens: defaultMaxTokens, N: 1, IgnoreEOS: f.IgnoreEOS}
	// The batcher and the sampler read 0 as "unset" (Go's zero value) for
	// these, where the API has 0 out of range: an explicit 0 is refused
	// here, the rest of their ranges there. n below 1 is refused here
	// whole, since the endpoints size their choices by it before submitting.
	switch {
	case f.N != nil && *f.N < 1:
		return r, badRequest("n", "n must be at least 1, got %d", *f.N)
	case f.TopP != nil && *f.TopP == 0:
		return r, badRequest("top_p", "top_p must be in (0, 1], got 0; send 1 to turn it off")
	case f.RepetitionPenalty != nil && *f.RepetitionPenalty == 0:
		return r, badRequest("repetition_penalty", "repetition_penalty must be above 0 (1 is off), got 0")
	case f.StreamOptions != nil && !f.Stream:
		return r, badRequest("stream_options", "stream_options is only allowed with stream: true")
	}
	if f.MaxTokens != nil {
		r.MaxTokens = *f.MaxTokens
	}
	if f.N != nil {
		r.N = *f.N
	}
	p := sample.Params{Temperature: 1, TopP: 1}
	for _, v := range []struct {
		src *float64
		dst *float32
	}{
		{f.Temperature, &p.Temperature}, {f.TopP, &p.TopP}, {f.MinP, &p.MinP}, {f.RepetitionPenalty, &p.RepetitionPenalty},
		{f.PresencePenalty, &p.PresencePenalty}, {f.FrequencyPenalty, &p.FrequencyPenalty},
	} {
		if v.src != nil {
			*v.dst = float32(*v.src)
		}
	}
	if f.TopK != nil {
		p.TopK = *f.TopK
		if p.TopK == -1 { // vLLM's "off"; the sampler's is 0
			p.TopK = 0
		}
	}
	if f.Seed != nil {
		p.Seed, p.HasSeed = uint64(*f.Seed), true
	}
	if len(f.LogitBias) > 0 {
		p.LogitBias = make(map[int32]float32, len(f.LogitBias))
		for k, v := range f.LogitBias {
			id, err := strconv.ParseInt(k, 10, 32)
			if err != nil {
				return r, badRequest("logit_bias", "logit_bias keys must be token ids (integers), got %q", k)
			}
			p.LogitBias[int32(id)] = float32(v)
		}
	}
	r.Sampling = p
	spec, e := f.spec()
	if e != nil {
		return r, e
	}
	if spec != nil {
		if r.Format, e = langs.language(spec); e != nil {
			return r, e
		}
	}
	stop, e := parseStop(f.Stop)
	if e != nil {
		return r, e
	}
	r.Stop = stop
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
// It compares without adding, so that no max_tokens overflows past the check.
func checkContext(m *ready, promptLen, maxTokens int, param string) *apiError {
	if maxTokens > m.Context-promptLen {
		return badRequest(param, "this model's maximum context length is %d tokens, but %d tokens were requested "+
			"(%d in the prompt and %d for the completion); shorten the prompt or lower %s",
			m.Context, uint64(promptLen)+uint64(maxTokens), promptLen, maxTokens, param)
	}
	return nil
}

// checkTextLength refuses a text of n bytes whose tokens cannot fit the
// context, before the work of tokenizing it: no token stands for more than
// so many bytes.
func (m *ready) checkTextLength(param string, n int) *apiError {
	if least := m.Tokenizer.MinTokens(n); least >= m.Context {
		return badRequest(param, "the prompt is %d bytes, at least %d tokens, and this model's maximum context length is %d tokens; shorten the prompt",
			n, least, m.Context)
	}
	return nil
}

// fitMaxTokens is the max_tokens of a request that names none: def, or less
// when the model's context or the KV cache leaves less room after the
// prompt (at least 1, so that a prompt that fills them is refused for its
// own length).
func (m *ready) fitMaxTokens(promptLen, def int) int {
	room := min(m.Context, m.Batcher.Limits().Room()) - promptLen
	return max(min(def, room), 1)
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
