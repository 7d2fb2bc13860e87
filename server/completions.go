package server

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/godwit-ai/godwit/batcher"
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
// token ids, or an array of arrays of token ids. Before any is tokenized,
// more than maxPrompts prompts are refused, and so is a string too long
// for the context whatever its tokens.
func parsePrompts(m *ready, raw json.RawMessage, maxPrompts int) ([]prompt, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("prompt", "prompt is required")
	}
	encode := func(s string) (prompt, *apiError) {
		if e := m.checkTextLength("prompt", len(s)); e != nil {
			return prompt{}, e
		}
		return prompt{ids: m.Tokenizer.Encode(s, true, true), text: s}, nil
	}
	ids := func(v []int32) prompt {
		return prompt{ids: v, text: m.Tokenizer.Detokenize(v, true, false)}
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		p, e := encode(one)
		return []prompt{p}, e
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil || len(list) == 0 {
		return nil, badRequest("prompt", "prompt must be a string, an array of strings, an array of token ids or an array of arrays of token ids, and not empty")
	}
	var tokens []int32
	if json.Unmarshal(raw, &tokens) == nil {
		return []prompt{ids(tokens)}, nil
	}
	if len(list) > maxPrompts {
		return nil, badRequest("prompt", "the request has %d prompts, and at most %d fit the server's queue at once with this n (--max-queue); send fewer prompts per request",
			len(list), maxPrompts)
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil {
		out := make([]prompt, len(strs))
		for i, s := range strs {
			var e *apiError
			if out[i], e = encode(s); e != nil {
				return nil, e
			}
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
	if e := s.decodeRequest(ctx, &req, &req.Model); e != nil {
		return e
	}
	s.logInert(ctx, req.names())
	base, e := req.request(&s.langs)
	if e != nil {
		return e
	}
	if req.Logprobs != nil {
		if req.Echo {
			return badRequest("echo", "echo together with logprobs is not supported: the prompt's log-probabilities are not computed")
		}
		base.Logprobs = *req.Logprobs
		if base.Logprobs == 0 {
			base.Logprobs = 1 // the sampled token's own
		}
	}
	lim := m.Batcher.Limits()
	if base.N > lim.MaxQueue {
		return badRequest("n", "n is %d, and the server queues at most %d sequences (--max-queue); lower n", base.N, lim.MaxQueue)
	}
	prompts, e := parsePrompts(m, req.Prompt, lim.MaxQueue/max(base.N, 1))
	if e != nil {
		return e
	}
	reqs := make([]batcher.Request, len(prompts))
	for i, p := range prompts {
		reqs[i] = base
		reqs[i].Prompt = p.ids
		if req.MaxTokens == nil {
			reqs[i].MaxTokens = m.fitMaxTokens(len(p.ids), defaultMaxTokens)
		}
		if e := checkContext(m, len(p.ids), reqs[i].MaxTokens, "max_tokens"); e != nil {
			return e
		}
	}
	withTop := req.Logprobs != nil && *req.Logprobs > 0
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
	// The text a choice starts with: its prompt when echoed.
	echo := func(i int) string {
		if !req.Echo {
			return ""
		}
		return prompts[i/base.N].text
	}
	// Characters streamed so far per choice, for text_offset.
	runes := make([]int, len(prompts)*base.N)
	for i := range runes {
		runes[i] = utf8.RuneCountInString(echo(i))
	}
	g := generation{reqs: reqs, stream: req.Stream, includeUsage: req.includeUsage()}
	return generate(s, ctx, m, g, shape[completionChoice, completionChoice]{
		idPrefix: "cmpl-", object: "text_completion", chunkObject: "text_completion",
		choice: func(i int) completionChoice {
			c := completionChoice{Index: i, Text: echo(i)}
			if req.Logprobs != nil {
				c.Logprobs = &completionLogprobs{m: m, runes: runes[i]}
			}
			return c
		},
		add: func(c *completionChoice, t tagged) {
			if t.ev.Token >= 0 && c.Logprobs != nil {
				c.Logprobs.add(t.ev.Token, t.ev.Logprob, top(t), withTop)
			}
			c.Text += t.ev.Text
			if c.Logprobs != nil {
				c.Logprobs.runes += utf8.RuneCountInString(t.ev.Text)
			}
			if f := finish(t); f != nil {
				c.FinishReason = f
			}
		},
		opening: func(i int) (completionChoice, bool) {
			return completionChoice{Index: i, Text: echo(i)}, req.Echo
		},
		delta: func(t tagged) (completionChoice, bool) {
			c := completionChoice{Index: t.choice, Text: t.ev.Text, FinishReason: finish(t)}
			if req.Logprobs != nil && t.ev.Token >= 0 {
				c.Logprobs = &completionLogprobs{m: m, runes: runes[t.choice]}
				c.Logprobs.add(t.ev.Token, t.ev.Logprob, top(t), withTop)
			}
			runes[t.choice] += utf8.RuneCountInString(t.ev.Text)
			return c, c.Text != "" || c.FinishReason != nil || c.Logprobs != nil
		},
	})
}
