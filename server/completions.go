package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	Model  string          `json:"model"`
	Prompt json.RawMessage `json:"prompt"`
	Echo   bool            `json:"echo"`
	// Logprobs asks for that many alternatives per token (0: the
	// token's own log-probability only).
	Logprobs *int `json:"logprobs"`
	samplingFields
}

// prompt is one prompt of a completion request: its ids and, for echo, its
// text.
type prompt struct {
	ids  []int32
	text string
}

// parsePrompts reads prompt: a string, an array of strings, an array of
// token ids, or an array of arrays of token ids.
func parsePrompts(m *ready, raw json.RawMessage) ([]prompt, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("prompt", "prompt is required")
	}
	encode := func(s string) prompt { return prompt{ids: m.Tokenizer.Encode(s, true, true), text: s} }
	ids := func(v []int32) prompt {
		return prompt{ids: v, text: m.Tokenizer.Detokenize(v, true, false)}
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []prompt{encode(one)}, nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil || len(list) == 0 {
		return nil, badRequest("prompt", "prompt must be a string, an array of strings, an array of token ids or an array of arrays of token ids, and not empty")
	}
	var tokens []int32
	if json.Unmarshal(raw, &tokens) == nil {
		return []prompt{ids(tokens)}, nil
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil {
		out := make([]prompt, len(strs))
		for i, s := range strs {
			out[i] = encode(s)
		}
		return out, nil
	}
	var lists [][]int32
	if json.Unmarshal(raw, &lists) == nil {
		out := make([]prompt, len(lists))
		for i, l := range lists {
			out[i] = ids(l)
		}
		return out, nil
	}
	return nil, badRequest("prompt", "prompt must be a string, an array of strings, an array of token ids or an array of arrays of token ids (not a mixture)")
}

type completionLogprobs struct {
	Tokens        []string          `json:"tokens"`
	TokenLogprobs []float64         `json:"token_logprobs"`
	TopLogprobs   []orderedLogprobs `json:"top_logprobs"`
	TextOffset    []int             `json:"text_offset"`
	m             *ready
	runes         int // characters of text so far, for TextOffset
}

// orderedLogprobs is a token → logprob object in rank order.
type orderedLogprobs []tokenLogprob

type tokenLogprob struct {
	token string
	lp    float64
}

func (o orderedLogprobs) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	seen := map[string]bool{}
	for _, t := range o {
		if seen[t.token] {
			continue
		}
		if len(seen) > 0 {
			b.WriteByte(',')
		}
		seen[t.token] = true
		k, _ := json.Marshal(t.token)
		v, _ := json.Marshal(t.lp)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

type completionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *completionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

type completionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

// completionChunk is a streamed completion; usage is null until the last
// chunk when include_usage is asked for, and absent otherwise.
type completionChunk struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   json.RawMessage    `json:"usage,omitempty"`
}

// add appends a generated token to the logprobs, its text starting at the
// current offset.
func (l *completionLogprobs) add(id int32, lp float32, top []tokenLogprob, withTop bool) {
	l.Tokens = append(l.Tokens, tokenText(l.m, id))
	l.TokenLogprobs = append(l.TokenLogprobs, logprob(lp))
	l.TextOffset = append(l.TextOffset, l.runes)
	if withTop {
		l.TopLogprobs = append(l.TopLogprobs, top)
	} else {
		l.TopLogprobs = append(l.TopLogprobs, orderedLogprobs{{tokenText(l.m, id), logprob(lp)}})
	}
}

func (s *Server) completions(ctx *fasthttp.RequestCtx, m *ready) *apiError {
	var req completionRequest
	if e := decode(ctx, &req); e != nil {
		return e
	}
	if e := s.checkModel(req.Model); e != nil {
		return e
	}
	base, e := req.request(m, "max_tokens")
	if e != nil {
		return e
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > 20 {
			return badRequest("logprobs", "logprobs must be between 0 and 20, got %d", *req.Logprobs)
		}
		if req.Echo {
			return badRequest("echo", "echo together with logprobs is not supported: the prompt's log-probabilities are not computed")
		}
		base.Logprobs = max(*req.Logprobs, 1)
	}
	prompts, e := parsePrompts(m, req.Prompt)
	if e != nil {
		return e
	}
	ids := make([][]int32, len(prompts))
	for i, p := range prompts {
		if e := checkContext(m, len(p.ids), base.MaxTokens, "max_tokens"); e != nil {
			return e
		}
		ids[i] = p.ids
	}
	j, e := s.start(m, base, ids)
	if e != nil {
		return e
	}
	id := "cmpl-" + randomHex(12)
	created := time.Now().Unix()
	withTop := req.Logprobs != nil && *req.Logprobs > 0
	newChoices := func() []completionChoice {
		out := make([]completionChoice, j.choices())
		for i := range out {
			out[i].Index = i
			if req.Logprobs != nil {
				out[i].Logprobs = &completionLogprobs{m: m}
			}
			if req.Echo {
				out[i].Text = prompts[i/j.n].text
				if out[i].Logprobs != nil {
					out[i].Logprobs.runes = utf8.RuneCountInString(out[i].Text)
				}
			}
		}
		return out
	}
	top := func(t tagged) []tokenLogprob {
		if !withTop {
			return nil
		}
		// The most likely first, then the sampled token when it is not
		// among them (as vLLM does).
		var out orderedLogprobs
		for _, x := range t.ev.Top {
			out = append(out, tokenLogprob{tokenText(m, x.ID), logprob(x.LogProb)})
		}
		return append(out, tokenLogprob{tokenText(m, t.ev.Token), logprob(t.ev.Logprob)})
	}

	if !req.Stream {
		defer j.cancel()
		choices := newChoices()
		var u usage
		last := make([]time.Time, j.choices())
		for {
			t, ok := j.next(last)
			if !ok {
				break
			}
			if t.ev.Err != nil {
				return eventError(t.ev.Err)
			}
			c := &choices[t.choice]
			if t.ev.Token >= 0 && c.Logprobs != nil {
				c.Logprobs.add(t.ev.Token, t.ev.Logprob, top(t), withTop)
			}
			c.Text += t.ev.Text
			if c.Logprobs != nil {
				c.Logprobs.runes += utf8.RuneCountInString(t.ev.Text)
			}
			if t.ev.Finish != "" {
				c.FinishReason = &t.ev.Finish
			}
			if t.ev.Usage != nil {
				u.add(t.ev.Usage)
			}
		}
		writeJSON(ctx, completionResponse{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelName, Choices: choices, Usage: &u})
		return nil
	}

	includeUsage := req.includeUsage()
	chunk := func(choices []completionChoice) completionChunk {
		c := completionChunk{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelName, Choices: choices}
		if includeUsage {
			c.Usage = json.RawMessage("null")
		}
		return c
	}
	s.stream(ctx, j, func(w *bufio.Writer) error {
		state := newChoices()
		if req.Echo {
			for i := range state {
				if err := writeEvent(w, chunk([]completionChoice{{Index: i, Text: state[i].Text}})); err != nil {
					return err
				}
			}
		}
		u, stop, err := j.eachEvent(w, func(t tagged) error {
			out := completionChoice{Index: t.choice, Text: t.ev.Text}
			if t.ev.Finish != "" {
				out.FinishReason = &t.ev.Finish
			}
			if lp := state[t.choice].Logprobs; lp != nil && t.ev.Token >= 0 {
				one := &completionLogprobs{m: m, runes: lp.runes}
				one.add(t.ev.Token, t.ev.Logprob, top(t), withTop)
				lp.runes += utf8.RuneCountInString(t.ev.Text)
				out.Logprobs = one
			}
			if out.Text == "" && out.FinishReason == nil && out.Logprobs == nil {
				return nil // text held back (a partial character or stop string)
			}
			return writeEvent(w, chunk([]completionChoice{out}))
		})
		if stop || err != nil {
			return err
		}
		if includeUsage {
			b, _ := json.Marshal(u)
			c := chunk([]completionChoice{})
			c.Usage = b
			if err := writeEvent(w, c); err != nil {
				return err
			}
		}
		return writeEvent(w, "[DONE]")
	})
	return nil
}

// stream answers with server-sent events written by write; a failed write
// (the client hung up) cancels the job, freeing its KV blocks by the next
// step.
func (s *Server) stream(ctx *fasthttp.RequestCtx, j *job, write func(w *bufio.Writer) error) {
	ctx.SetContentType("text/event-stream; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	rid := string(ctx.Response.Header.Peek("X-Request-Id"))
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.leave()
		defer j.cancel()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic in stream", "request_id", rid, "panic", p)
				_ = writeEvent(w, errorEvent(internalError(rid)))
			}
		}()
		if err := write(w); err != nil && !strings.Contains(err.Error(), "closed") {
			s.log.Debug("stream ended early", "request_id", rid, "error", err)
		}
	})
}
