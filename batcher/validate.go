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
	MaxQueue  int // the most sequences waiting
	BlockSize int // KV positions per block
	Blocks    int // KV blocks in the pool
	// Capacity is the most positions one sequence may hold: the whole
	// pool (engine.KVPool.Capacity).
	Capacity int
}

// Room is the most positions one sequence may hold.
func (l Limits) Room() int { return l.Capacity }

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
	case len(r.Resume) > 0 && n != 1:
		return invalid("resume", "resume continues one sample; n must be 1, got %d", n)
	case len(r.Resume) >= r.MaxTokens:
		return invalid("resume", "resume holds %d tokens, and max_tokens %d leaves none to generate", len(r.Resume), r.MaxTokens)
	case len(r.Prompt) >= l.Context:
		return &Error{Kind: KindTooLong, Param: "prompt", Msg: fmt.Sprintf("the prompt has %d tokens, and the model's context is %d; shorten the prompt", len(r.Prompt), l.Context)}
	}
	if err := CheckTokens("prompt", r.Prompt, l.Vocab); err != nil {
		return err
	}
	if err := CheckTokens("resume", r.Resume, l.Vocab); err != nil {
		return err
	}
	if len(r.Prompt)+len(r.Resume) >= l.Context {
		return &Error{Kind: KindTooLong, Param: "resume", Msg: fmt.Sprintf("the prompt's %d tokens and resume's %d fill the model's context of %d", len(r.Prompt), len(r.Resume), l.Context)}
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
	// Each sample needs KV positions for its prompt and what it generates
	// (all but the last token, which is sampled and never fed back; one
	// more is counted, so that prompt plus max_tokens is the bound a
	// client can read). The bound is per sample: the forks of n > 1
	// share the prompt's blocks, and when blocks run short the scheduler
	// preempts all but one, so a request runs whenever one sample fits
	// the pool alone, and one that does not could never finish.
	if room := l.Room(); len(r.Prompt) >= room {
		return &Error{Kind: KindTooLong, Param: "prompt", Msg: fmt.Sprintf("the prompt has %d tokens, and the KV cache holds %d (%d blocks of %d); shorten the prompt or raise --kv-cache-mem",
			len(r.Prompt), room, l.Blocks, l.BlockSize)}
	} else if r.MaxTokens > room-len(r.Prompt) {
		return &Error{Kind: KindTooLong, Param: "max_tokens", Msg: fmt.Sprintf("the prompt's %d tokens and max_tokens %d need %d positions, and the KV cache holds %d (%d blocks of %d); lower max_tokens to at most %d or raise --kv-cache-mem",
			len(r.Prompt), r.MaxTokens, uint64(len(r.Prompt))+uint64(r.MaxTokens), room, l.Blocks, l.BlockSize, room-len(r.Prompt))}
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
