package server

import (
	"encoding/json"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/godwit-ai/godwit/batcher"
)

// tokenizeRequest is the body of POST /tokenize: a prompt, or chat messages
// rendered with the chat template (vLLM's shape).
type tokenizeRequest struct {
	Model            string           `json:"model"`
	Prompt           *string          `json:"prompt"`
	Messages         []chatRequestMsg `json:"messages"`
	AddSpecialTokens *bool            `json:"add_special_tokens"`
}

func (s *Server) tokenize(ctx *fasthttp.RequestCtx, m *ready) *apiError {
	var req tokenizeRequest
	if e := s.decodeRequest(ctx, &req, &req.Model); e != nil {
		return e
	}
	var ids []int32
	switch {
	case req.Prompt != nil && req.Messages != nil:
		return badRequest("messages", "send either prompt or messages, not both")
	case req.Prompt != nil:
		add := req.AddSpecialTokens == nil || *req.AddSpecialTokens
		ids = m.Tokenizer.Encode(*req.Prompt, add, true)
	case req.Messages != nil:
		var e *apiError
		if ids, e = m.chatPrompt(req.Messages, nil, false); e != nil {
			return e
		}
	default:
		return badRequest("prompt", "prompt (or messages) is required")
	}
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyRaw(tokensJSON(ids, m.Context, m.Tokenizer.VocabSize()))
	return nil
}

// tokensJSON is /tokenize's answer, {"count","max_model_len","tokens"},
// written in one buffer of the size it needs: a long text's ids through
// encoding/json took four times their text in buffers.
func tokensJSON(ids []int32, context, vocab int) []byte {
	digits := len(strconv.Itoa(vocab))
	b := make([]byte, 0, 64+len(ids)*(digits+1))
	b = append(b, `{"count":`...)
	b = strconv.AppendInt(b, int64(len(ids)), 10)
	b = append(b, `,"max_model_len":`...)
	b = strconv.AppendInt(b, int64(context), 10)
	b = append(b, `,"tokens":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(id), 10)
	}
	return append(b, "]}"...)
}

type detokenizeRequest struct {
	Model  string          `json:"model"`
	Tokens json.RawMessage `json:"tokens"`
}

func (s *Server) detokenize(ctx *fasthttp.RequestCtx, m *ready) *apiError {
	var req detokenizeRequest
	if e := s.decodeRequest(ctx, &req, &req.Model); e != nil {
		return e
	}
	var ids []int32
	if err := json.Unmarshal(req.Tokens, &ids); err != nil || req.Tokens == nil {
		return badRequest("tokens", "tokens must be an array of token ids")
	}
	if err := batcher.CheckTokens("tokens", ids, m.Tokenizer.VocabSize()); err != nil {
		return generationError(err, nil)
	}
	writeJSON(ctx, struct {
		Prompt string `json:"prompt"`
	}{m.Tokenizer.Detokenize(ids, false, true)})
	return nil
}
