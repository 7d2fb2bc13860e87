package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"time"

	"github.com/valyala/fasthttp"
)

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	Model               string           `json:"model"`
	Messages            []chatRequestMsg `json:"messages"`
	MaxCompletionTokens *int             `json:"max_completion_tokens"`
	Logprobs            bool             `json:"logprobs"`
	TopLogprobs         *int             `json:"top_logprobs"`
	samplingFields
}

type chatRequestMsg struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name"`
}

type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// parseMessages checks the messages and joins each one's text parts.
func parseMessages(in []chatRequestMsg) ([]chatMessage, *apiError) {
	if len(in) == 0 {
		return nil, badRequest("messages", "messages must hold at least one message")
	}
	out := make([]chatMessage, len(in))
	for i, m := range in {
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool":
		default:
			return nil, badRequest("messages", "messages[%d].role %q is not one of system, developer, user, assistant, tool", i, m.Role)
		}
		out[i] = chatMessage{Role: m.Role, Name: m.Name}
		raw := bytes.TrimSpace(m.Content)
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		if json.Unmarshal(raw, &out[i].Content) == nil {
			continue
		}
		var parts []contentPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return nil, badRequest("messages", "messages[%d].content must be a string or an array of text parts", i)
		}
		var b bytes.Buffer
		for _, p := range parts {
			if p.Type != "text" {
				return nil, badRequest("messages", "messages[%d].content has a part of type %q; only text is supported", i, p.Type)
			}
			b.WriteString(p.Text)
		}
		out[i].Content = b.String()
	}
	return out, nil
}

type chatMsg struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatLogprob struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

type chatLogprobs struct {
	Content []chatLogprob `json:"content"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      chatMsg       `json:"message"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   usage        `json:"usage"`
}

type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chatChunkChoice struct {
	Index        int           `json:"index"`
	Delta        chatDelta     `json:"delta"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

type chatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
	Usage   json.RawMessage   `json:"usage,omitempty"`
}

func byteList(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}

func (s *Server) chatCompletions(ctx *fasthttp.RequestCtx, m *ready) *apiError {
	var req chatRequest
	if e := decode(ctx, &req); e != nil {
		return e
	}
	if e := s.checkModel(req.Model); e != nil {
		return e
	}
	param := "max_tokens"
	if req.MaxCompletionTokens != nil {
		if req.MaxTokens != nil && *req.MaxTokens != *req.MaxCompletionTokens {
			return badRequest("max_completion_tokens", "max_tokens and max_completion_tokens differ; send one")
		}
		req.MaxTokens, param = req.MaxCompletionTokens, "max_completion_tokens"
	}
	base, e := req.request(m, param)
	if e != nil {
		return e
	}
	if req.MaxTokens == nil {
		// Chat has no default length in OpenAI's API: the rest of the
		// context, worked out once the prompt's length is known.
		base.MaxTokens = 0
	}
	if req.TopLogprobs != nil {
		if !req.Logprobs {
			return badRequest("top_logprobs", "top_logprobs needs logprobs: true")
		}
		if *req.TopLogprobs < 0 || *req.TopLogprobs > 20 {
			return badRequest("top_logprobs", "top_logprobs must be between 0 and 20, got %d", *req.TopLogprobs)
		}
	}
	nTop := 0
	if req.Logprobs {
		if req.TopLogprobs != nil {
			nTop = *req.TopLogprobs
		}
		base.Logprobs = max(nTop, 1)
	}
	msgs, e := parseMessages(req.Messages)
	if e != nil {
		return e
	}
	text, err := m.chat.render(msgs)
	if err != nil {
		return badRequest("messages", "%v", err)
	}
	ids := m.chat.tokens(text)
	if base.MaxTokens == 0 {
		base.MaxTokens = max(m.Context-len(ids), 1)
	}
	if e := checkContext(m, len(ids), base.MaxTokens, param); e != nil {
		return e
	}
	j, e := s.start(m, base, [][]int32{ids})
	if e != nil {
		return e
	}
	id := "chatcmpl-" + randomHex(12)
	created := time.Now().Unix()
	logprobs := func(t tagged) *chatLogprobs {
		if !req.Logprobs || t.ev.Token < 0 {
			return nil
		}
		tok := tokenText(m, t.ev.Token)
		lp := chatLogprob{Token: tok, Logprob: logprob(t.ev.Logprob), Bytes: byteList(string(m.Tokenizer.Piece(t.ev.Token))), TopLogprobs: []chatTopLogprob{}}
		for _, x := range t.ev.Top[:min(nTop, len(t.ev.Top))] {
			lp.TopLogprobs = append(lp.TopLogprobs, chatTopLogprob{Token: tokenText(m, x.ID), Logprob: logprob(x.LogProb), Bytes: byteList(string(m.Tokenizer.Piece(x.ID)))})
		}
		return &chatLogprobs{Content: []chatLogprob{lp}}
	}

	if !req.Stream {
		defer j.cancel()
		choices := make([]chatChoice, j.choices())
		for i := range choices {
			choices[i] = chatChoice{Index: i, Message: chatMsg{Role: "assistant"}}
			if req.Logprobs {
				choices[i].Logprobs = &chatLogprobs{Content: []chatLogprob{}}
			}
		}
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
			c.Message.Content += t.ev.Text
			if lp := logprobs(t); lp != nil {
				c.Logprobs.Content = append(c.Logprobs.Content, lp.Content...)
			}
			if t.ev.Finish != "" {
				c.FinishReason = &t.ev.Finish
			}
			if t.ev.Usage != nil {
				u.add(t.ev.Usage)
			}
		}
		writeJSON(ctx, chatResponse{ID: id, Object: "chat.completion", Created: created, Model: s.cfg.ModelName, Choices: choices, Usage: u})
		return nil
	}

	includeUsage := req.includeUsage()
	chunk := func(c chatChunkChoice) chatChunk {
		out := chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelName, Choices: []chatChunkChoice{c}}
		if includeUsage {
			out.Usage = json.RawMessage("null")
		}
		return out
	}
	s.stream(ctx, j, func(w *bufio.Writer) error {
		empty := ""
		for i := range j.choices() {
			if err := writeEvent(w, chunk(chatChunkChoice{Index: i, Delta: chatDelta{Role: "assistant", Content: &empty}})); err != nil {
				return err
			}
		}
		u, stop, err := j.eachEvent(w, func(t tagged) error {
			c := chatChunkChoice{Index: t.choice, Logprobs: logprobs(t)}
			if t.ev.Text != "" {
				text := t.ev.Text
				c.Delta.Content = &text
			}
			if t.ev.Finish != "" {
				c.FinishReason = &t.ev.Finish
			}
			if c.Delta.Content == nil && c.FinishReason == nil && c.Logprobs == nil {
				return nil
			}
			return writeEvent(w, chunk(c))
		})
		if stop || err != nil {
			return err
		}
		if includeUsage {
			b, _ := json.Marshal(u)
			out := chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelName, Choices: []chatChunkChoice{}, Usage: b}
			if err := writeEvent(w, out); err != nil {
				return err
			}
		}
		return writeEvent(w, "[DONE]")
	})
	return nil
}
