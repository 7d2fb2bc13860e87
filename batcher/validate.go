package batcher

import (
	"errors"
	"fmt"

	"github.com/godwit-ai/godwit/engine/sample"
)

// Defaults and fixed limits, in one place for the batcher, the server and
// the command's flags.
const (
	DefaultMaxBatchTokens = 512
	DefaultMaxSeqs        = 64
	DefaultMaxQueue       = 256
	DefaultMaxN           = 16
	// MaxLogprobs is the most alternatives a token's logprobs may list
	// (OpenAI's limit).
	MaxLogprobs = 20
	// MaxPenalty bounds presence_penalty and frequency_penalty either
	// way, and MaxLogitBias a logit_bias value (OpenAI's limits).
	MaxPenalty   = 2
	MaxLogitBias = 100
)

// Limits are what a request is checked against: the model's and the KV
// pool's sizes and the batcher's configuration.
type Limits struct {
	Vocab     int // token ids are in [0, Vocab)
	Context   int // the model's context length
	MaxN      int // the most samples of one prompt
	BlockSize int // KV positions per block
	Blocks    int // KV blocks in the pool
}

// Validate reports the first thing wrong with r under l as an *Error that
// names the field at fault (OpenAI's name for it). A zero N counts as 1.
func (r *Request) Validate(l Limits) error {
	n := r.N
	if n == 0 {
		n = 1
	}
	switch {
	case len(r.Prompt) == 0:
		return invalid("prompt", "the prompt is empty")
	case r.MaxTokens < 1:
		return invalid("max_tokens", "max_tokens must be at least 1, got %d", r.MaxTokens)
	case n < 1 || n > l.MaxN:
		return invalid("n", "n must be between 1 and %d, got %d", l.MaxN, n)
	case r.Logprobs < 0 || r.Logprobs > MaxLogprobs:
		return invalid("logprobs", "logprobs must be between 0 and %d, got %d", MaxLogprobs, r.Logprobs)
	case len(r.Prompt) >= l.Context:
		return &Error{Kind: KindTooLong, Param: "prompt", Msg: fmt.Sprintf("the prompt has %d tokens, and the model's context is %d; shorten the prompt", len(r.Prompt), l.Context)}
	}
	if err := CheckTokens("prompt", r.Prompt, l.Vocab); err != nil {
		return err
	}
	for _, pen := range []struct {
		param string
		v     float32
	}{{"presence_penalty", r.Sampling.PresencePenalty}, {"frequency_penalty", r.Sampling.FrequencyPenalty}} {
		if !(pen.v >= -MaxPenalty && pen.v <= MaxPenalty) {
			return invalid(pen.param, "%s must be in [-%d, %d], got %v", pen.param, MaxPenalty, MaxPenalty, pen.v)
		}
	}
	for id, v := range r.Sampling.LogitBias {
		if !(v >= -MaxLogitBias && v <= MaxLogitBias) {
			return invalid("logit_bias", "logit_bias values must be in [-%d, %d], got %v for token %d", MaxLogitBias, MaxLogitBias, v, id)
		}
	}
	if err := r.Sampling.Validate(l.Vocab); err != nil {
		e := &Error{Kind: KindInvalid, Msg: err.Error(), Err: err}
		if pe := (*sample.ParamError)(nil); errors.As(err, &pe) {
			e.Param = pe.Param
		}
		return e
	}
	// Sequences need a block per BlockSize positions; a request that
	// cannot fit the whole pool alone could never finish.
	if need := (len(r.Prompt) + 1 + l.BlockSize - 1) / l.BlockSize; need > l.Blocks {
		return &Error{Kind: KindTooLong, Param: "prompt", Msg: fmt.Sprintf("the prompt needs %d KV blocks and the pool has %d; raise --kv-cache-mem", need, l.Blocks)}
	}
	return nil
}

// CheckTokens reports the first of ids outside a vocabulary of vocab tokens
// as a KindInvalid *Error naming param.
func CheckTokens(param string, ids []int32, vocab int) error {
	for _, id := range ids {
		if id < 0 || int(id) >= vocab {
			return invalid(param, "%s holds token id %d, outside the vocabulary (0..%d)", param, id, vocab-1)
		}
	}
	return nil
}
