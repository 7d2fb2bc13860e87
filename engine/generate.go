package engine

import (
	"context"
	"fmt"
)

// Sampler picks generated token i (0 for the first) from a row of logits;
// history holds every token of the sequence so far (prompt and generated).
type Sampler interface {
	Sample(logits []float32, history []int32, i int) int32
}

// Greedy picks the most likely token, the lowest id on ties.
type Greedy struct{}

func (Greedy) Sample(logits []float32, _ []int32, _ int) int32 {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return int32(best)
}

// Generate feeds prompt into an empty cache, then samples up to maxTokens
// tokens, passing each to emit. Generation ends early when emit returns false
// or ctx is done. It returns the generated ids.
func (e *Engine) Generate(ctx context.Context, prompt []int32, maxTokens int, kv KVCache, s Sampler, emit func(id int32) bool) ([]int32, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt (a model needs at least one token, usually BOS)")
	}
	if kv.Len() != 0 {
		return nil, fmt.Errorf("generate: the cache already holds %d positions", kv.Len())
	}
	history := make([]int32, 0, len(prompt)+maxTokens)
	history = append(history, prompt...)
	next := prompt
	for len(history)-len(prompt) < maxTokens {
		if err := ctx.Err(); err != nil {
			return history[len(prompt):], err
		}
		logits, err := e.Forward(next, kv, false)
		if err != nil {
			return history[len(prompt):], err
		}
		id := s.Sample(logits, history, len(history)-len(prompt))
		if id < 0 {
			return history[len(prompt):], fmt.Errorf("generate: no token has a finite logit after sampling filters and bias")
		}
		history = append(history, id)
		if !emit(id) {
			break
		}
		next = history[len(history)-1:]
	}
	return history[len(prompt):], nil
}
