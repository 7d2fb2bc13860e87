package server

import (
	"bytes"
	"encoding/json"

	"github.com/valyala/fasthttp"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/internal/toolcall"
)

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	Model               string           `json:"model"`
	Messages            []chatRequestMsg `json:"messages"`
	MaxCompletionTokens *int             `json:"max_completion_tokens"`
	Logprobs            bool             `json:"logprobs"`
	TopLogprobs         *int             `json:"top_logprobs"`
	Tools               []chatTool       `json:"tools"`
	// Without tools these change nothing: parallel_tool_calls, and a
	// tool_choice of "none" or "auto".
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	samplingFields
}

type chatRequestMsg struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  []chatToolCall  `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
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
		out[i] = chatMessage{Role: m.Role, Name: m.Name, ToolCallID: m.ToolCallID}
		if len(m.ToolCalls) > 0 {
			if m.Role != "assistant" {
				return nil, badRequest("messages", "messages[%d] (%s) has tool_calls; only an assistant's message may", i, m.Role)
			}
			calls, e := messageCalls(i, m.ToolCalls)
			if e != nil {
				return nil, e
			}
			out[i].ToolCalls = calls
		}
		raw := bytes.TrimSpace(m.Content)
		if len(raw) == 0 || string(raw) == "null" {
			// Only an assistant's turn may be empty (it may be all tool
			// calls); any other message without content is a client's bug.
			if m.Role != "assistant" {
				return nil, badRequest("messages", "messages[%d] (%s) has no content; give it a string or an array of text parts", i, m.Role)
			}
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

// chatPrompt is the token ids of messages rendered with the chat template.
// With bounded, a rendering too long for the context is refused before it
// is tokenized.
func (m *ready) chatPrompt(messages []chatRequestMsg, tools []any, bounded bool) ([]int32, *apiError) {
	msgs, e := parseMessages(messages)
	if e != nil {
		return nil, e
	}
	text, err := m.chat.render(msgs, tools)
	if err != nil {
		return nil, badRequest("messages", "%v", err)
	}
	if bounded {
		if e := m.checkTextLength("messages", len(text)); e != nil {
			return nil, e
		}
	}
	return m.chat.tokens(text), nil
}

type chatMsg struct {
	Role      string         `json:"role"`
	Content   *string        `json:"content"` // null when there are tool calls and no text
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
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

type chatDelta struct {
	Role      string              `json:"role,omitempty"`
	Content   *string             `json:"content,omitempty"`
	ToolCalls []chatToolCallDelta `json:"tool_calls,omitempty"`
}

type chatChunkChoice struct {
	Index        int           `json:"index"`
	Delta        chatDelta     `json:"delta"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
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
	if e := s.decodeRequest(ctx, &req, &req.Model); e != nil {
		return e
	}
	plan, e := s.planTools(m, req.Tools, req.ToolChoice, req.ParallelToolCalls)
	if e != nil {
		return e
	}
	inert := req.names()
	if plan == nil || len(req.Tools) == 1 {
		if req.ParallelToolCalls != nil {
			inert = append(inert, "parallel_tool_calls")
		}
	}
	if tc := bytes.TrimSpace(req.ToolChoice); plan == nil && len(tc) > 0 && string(tc) != "null" {
		inert = append(inert, "tool_choice")
	}
	s.logInert(ctx, inert)
	// The batcher names logprobs and max_tokens; chat's fields may differ.
	param, fields := "max_tokens", map[string]string{"logprobs": "top_logprobs"}
	if req.MaxCompletionTokens != nil {
		if req.MaxTokens != nil && *req.MaxTokens != *req.MaxCompletionTokens {
			return badRequest("max_completion_tokens", "max_tokens and max_completion_tokens differ; send one")
		}
		req.MaxTokens, param = req.MaxCompletionTokens, "max_completion_tokens"
		fields["max_tokens"] = param
	}
	base, e := req.request(&s.langs)
	if e != nil {
		return e
	}
	if req.TopLogprobs != nil && !req.Logprobs {
		return badRequest("top_logprobs", "top_logprobs needs logprobs: true")
	}
	nTop := 0
	if req.Logprobs {
		base.Logprobs = 1 // the sampled token's own, even with no alternatives
		if req.TopLogprobs != nil && *req.TopLogprobs != 0 {
			nTop = *req.TopLogprobs
			base.Logprobs = nTop
		}
	}
	var tools []any
	if plan != nil {
		tools = plan.tools
		switch {
		case plan.only != nil && base.Format != nil:
			return badRequest("tool_choice", "tool_choice %s and an output format both constrain the output; send one", req.ToolChoice)
		case plan.only != nil:
			base.Format = plan.only
		case base.Format != nil:
			plan.parse = false // the format shapes the content
		}
		if !plan.parse {
			plan = nil
		}
	}
	ids, e := m.chatPrompt(req.Messages, tools, true)
	if e != nil {
		return e
	}
	if req.MaxTokens == nil {
		// Chat has no default length in OpenAI's API: the rest of the
		// context, or of the KV cache when that is smaller.
		base.MaxTokens = m.fitMaxTokens(len(ids), m.Context)
	}
	if e := checkContext(m, len(ids), base.MaxTokens, param); e != nil {
		return e
	}
	base.Prompt = ids
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
	var tc *toolChoices
	if plan != nil {
		tc = &toolChoices{plan: plan}
		if in := inboundOf(ctx); in != nil && len(in.body.Resume) > 0 {
			// A resumed stream's parser reads what was sent before, so
			// that the calls go on where they were.
			tc.events(0, m.Tokenizer.Detokenize(in.body.Resume, false, false), false)
		}
	}
	g := generation{reqs: []batcher.Request{base}, stream: req.Stream, includeUsage: req.includeUsage()}
	return generate(s, ctx, m, g, shape[chatChoice, chatChunkChoice]{
		idPrefix: "chatcmpl-", object: "chat.completion", chunkObject: "chat.completion.chunk", fields: fields,
		choice: func(i int) chatChoice {
			c := chatChoice{Index: i, Message: chatMsg{Role: "assistant", Content: new(string)}}
			if req.Logprobs {
				c.Logprobs = &chatLogprobs{Content: []chatLogprob{}}
			}
			return c
		},
		add: func(c *chatChoice, t tagged) {
			if lp := logprobs(t); lp != nil {
				c.Logprobs.Content = append(c.Logprobs.Content, lp.Content...)
			}
			f := finish(t)
			if tc == nil {
				*c.Message.Content += t.ev.Text
				if f != nil {
					c.FinishReason = f
				}
				return
			}
			for _, e := range tc.events(t.choice, t.ev.Text, f != nil) {
				switch e.Kind {
				case toolcall.Content:
					*c.Message.Content += e.Text
				case toolcall.CallStart:
					c.Message.ToolCalls = append(c.Message.ToolCalls, chatToolCall{ID: e.ID, Type: "function", Function: chatToolFunction{Name: e.Name}})
				case toolcall.CallArgs:
					c.Message.ToolCalls[e.Index].Function.Arguments += e.Text
				}
			}
			if f != nil {
				c.FinishReason = tc.finish(t.choice, f)
				if len(c.Message.ToolCalls) > 0 && *c.Message.Content == "" {
					c.Message.Content = nil
				}
			}
		},
		opening: func(i int) (chatChunkChoice, bool) {
			empty := ""
			return chatChunkChoice{Index: i, Delta: chatDelta{Role: "assistant", Content: &empty}}, true
		},
		delta: func(t tagged) (chatChunkChoice, bool) {
			c := chatChunkChoice{Index: t.choice, Logprobs: logprobs(t), FinishReason: finish(t)}
			text := t.ev.Text
			if tc != nil {
				text = ""
				for _, e := range tc.events(t.choice, t.ev.Text, c.FinishReason != nil) {
					switch e.Kind {
					case toolcall.Content:
						text += e.Text
					case toolcall.CallStart:
						c.Delta.ToolCalls = append(c.Delta.ToolCalls, chatToolCallDelta{Index: e.Index, ID: e.ID, Type: "function", Function: chatFunctionDelta{Name: e.Name}})
					case toolcall.CallArgs:
						c.Delta.ToolCalls = append(c.Delta.ToolCalls, chatToolCallDelta{Index: e.Index, Function: chatFunctionDelta{Arguments: e.Text}})
					}
				}
				c.FinishReason = tc.finish(t.choice, c.FinishReason)
			}
			if text != "" {
				c.Delta.Content = &text
			}
			return c, c.Delta.Content != nil || c.Delta.ToolCalls != nil || c.FinishReason != nil || c.Logprobs != nil
		},
	})
}
