package sample

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalid matches every error Validate returns (errors.Is), so an API
// layer can map any of them to a client error without matching message text.
var ErrInvalid = errors.New("sample: invalid parameters")

// ParamError is a setting out of range. Param is the setting's name in the
// OpenAI API, so that a server can name the request field at fault.
type ParamError struct {
	Param string
	Msg   string // what is wrong, naming the setting
}

func (e *ParamError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *ParamError) Is(target error) bool { return target == ErrInvalid }

// Params are the sampling settings of one request. The zero value is greedy
// decoding (Temperature 0) with no bias and no penalties.
type Params struct {
	// Temperature divides the logits before the draw; 0 means greedy
	// (argmax, ties to the lowest id) and skips the random draw entirely.
	Temperature float32
	// TopK keeps only the K most likely tokens; 0 (or K >= vocab) is off.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// mass reaches TopP; 0 or 1 is off, otherwise it must lie in (0, 1).
	TopP float32
	// MinP drops tokens whose probability is below MinP times the largest
	// probability; 0 is off, otherwise it must lie in (0, 1].
	MinP float32
	// RepetitionPenalty is the CTRL / llama.cpp penalty for every token in
	// the window: positive logits are divided by it, the rest multiplied.
	// 0 or 1 is off; it must be positive.
	RepetitionPenalty float32
	// PresencePenalty is subtracted once from every token in the window
	// (OpenAI semantics; negative values encourage repetition).
	PresencePenalty float32
	// FrequencyPenalty is subtracted once per occurrence in the window.
	FrequencyPenalty float32
	// PenaltyLastN is how many of the most recent history tokens the
	// penalties look at; 0 means the whole history.
	PenaltyLastN int
	// LogitBias is added to the logits before anything else. A bias of
	// -Inf bans a token; +Inf is rejected because it would make the
	// distribution undefined (use a large finite value to force a token).
	LogitBias map[int32]float32
	// Seed makes the draws reproducible when HasSeed is set; otherwise the
	// sampler seeds itself from crypto/rand.
	Seed    uint64
	HasSeed bool
}

// Validate reports the first setting that is out of range for a vocabulary of
// vocab tokens, as a *ParamError (which matches ErrInvalid).
func (p Params) Validate(vocab int) error {
	bad := func(param, format string, args ...any) error {
		return &ParamError{Param: param, Msg: fmt.Sprintf(format, args...)}
	}
	finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
	switch {
	case vocab <= 0:
		return bad("", "vocabulary size %d must be positive", vocab)
	case !finite(p.Temperature) || p.Temperature < 0:
		return bad("temperature", "temperature must be finite and at least 0, got %v", p.Temperature)
	case p.TopK < 0:
		return bad("top_k", "top_k must be 0 (off) or positive, got %d", p.TopK)
	case !(p.TopP >= 0 && p.TopP <= 1): // also catches NaN
		return bad("top_p", "top_p must be in (0, 1], got %v", p.TopP)
	case !(p.MinP >= 0 && p.MinP <= 1):
		return bad("min_p", "min_p must be in [0, 1], got %v", p.MinP)
	case !finite(p.RepetitionPenalty) || p.RepetitionPenalty < 0:
		return bad("repetition_penalty", "repetition_penalty must be finite and above 0 (1 is off), got %v", p.RepetitionPenalty)
	case !finite(p.PresencePenalty):
		return bad("presence_penalty", "presence_penalty must be finite, got %v", p.PresencePenalty)
	case !finite(p.FrequencyPenalty):
		return bad("frequency_penalty", "frequency_penalty must be finite, got %v", p.FrequencyPenalty)
	case p.PenaltyLastN < 0:
		return bad("penalty_last_n", "penalty_last_n must be at least 0 (0 means the whole history), got %d", p.PenaltyLastN)
	}
	banned := 0
	for id, b := range p.LogitBias {
		switch {
		case id < 0 || int(id) >= vocab:
			return bad("logit_bias", "logit_bias names token id %d, outside the vocabulary (0..%d)", id, vocab-1)
		case math.IsNaN(float64(b)) || math.IsInf(float64(b), 1):
			return bad("logit_bias", "logit_bias for token %d is %v; use -Inf to ban it or a finite value", id, b)
		case math.IsInf(float64(b), -1):
			banned++
		}
	}
	if banned == vocab {
		return bad("logit_bias", "logit_bias bans every token; leave at least one allowed")
	}
	return nil
}

// repetitionOn reports whether the repetition penalty changes anything; 0 is
// accepted as "off" because it is the zero value of an unset JSON field.
func (p Params) repetitionOn() bool {
	return p.RepetitionPenalty != 0 && p.RepetitionPenalty != 1
}

// penaltiesOn reports whether any history-based penalty is active, so the
// common case skips scanning the history.
func (p Params) penaltiesOn() bool {
	return p.repetitionOn() || p.PresencePenalty != 0 || p.FrequencyPenalty != 0
}
