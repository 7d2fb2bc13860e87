package batcher

import (
	"slices"
	"sync"
	"time"

	"github.com/godwit-ai/godwit/engine/constrain"
	"github.com/godwit-ai/godwit/engine/sample"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// outputs is the output processor: it turns a sequence's logits into its
// next token and event — sampling, log-probabilities, detokenizing, stop
// strings — and decides when the sample ends.
type outputs struct {
	tok   *tokenizer.Tokenizer
	vocab int
	ctx   int                   // the model's context length
	top   []sample.TokenLogProb // scratch for the alternatives
	// trie is the vocabulary as constraints read it, built by the first
	// request with a Format to be submitted, on its caller's goroutine
	// (150 ms for 128k tokens), not in a step.
	trie *lazyVocab
}

// lazyVocab builds a tokenizer's constrain.Vocab once, on first use.
type lazyVocab struct {
	once sync.Once
	v    *constrain.Vocab
}

func (l *lazyVocab) get(tok *tokenizer.Tokenizer) *constrain.Vocab {
	l.once.Do(func() { l.v = constrain.NewVocab(tok) })
	return l.v
}

// init gives s its sampler, decoder and stop matcher as sample index of its
// request (the seed of sample i is the request's plus i). s.gen, the index
// of its next token in the seed's stream, is already set.
func (o *outputs) init(s *seq, index int) {
	p := s.g.req.Sampling
	if p.HasSeed {
		p.Seed += uint64(index)
	}
	sm, err := sample.New(p, o.vocab)
	if err != nil {
		panic(err) // validated in Submit
	}
	s.index, s.sampler, s.decoder = index, sm, o.tok.NewStreamDecoder()
	s.stop = stopMatcher{stops: s.g.req.Stop}
	if f := s.g.req.Format; f != nil {
		s.format = constrain.NewMatcher(f, o.trie.get(o.tok))
	}
	// A resumed sample's decoder, stop matcher and constraint take its
	// earlier tokens as they did when those were generated: their text
	// was sent then, but what they still hold (a partial character, the
	// start of a stop string) comes out with the tokens after.
	for _, id := range s.g.req.Resume {
		s.stop.add(s.decoder.Add(id))
		if s.format != nil {
			s.format.Advance(o.tok, id)
		}
	}
}

// errNoToken ends a sample with no token to draw: Validate refuses a bias
// that bans every token, so the model's logits were not finite.
var errNoToken = &Error{Kind: KindInternal, Msg: "no token has a finite logit after sampling filters and bias"}

// next samples s's next token from logits and returns its event: Finish is
// set when the sample ends (an end-of-generation token, a stop string, its
// max_tokens or the context); an error means it cannot go on. A token that
// does not end the sample is appended to s.tokens.
func (o *outputs) next(s *seq, logits []float32, now time.Time) (Event, error) {
	req := &s.g.req
	if s.format != nil {
		// Before any other sampling step; the samples of a prompt share
		// its first logits, and start in the same state, so the same mask.
		// The tokens left count this one; the context counts the prompt
		// and every generated token.
		s.format.Mask(logits, min(req.MaxTokens-s.gen, o.ctx-len(s.tokens)))
	}
	id := s.sampler.Sample(logits, s.tokens, s.gen)
	if id == sample.NoToken {
		return Event{}, errNoToken
	}
	if s.format != nil && !s.format.Advance(o.tok, id) {
		return Event{}, &Error{Kind: KindInternal, Msg: "the sampler drew a token the output's format does not allow"}
	}
	ev := Event{Index: s.index, Token: id, At: now}
	if req.Logprobs > 0 {
		if cap(o.top) < req.Logprobs {
			o.top = make([]sample.TokenLogProb, req.Logprobs)
		}
		ev.Logprob = s.sampler.LogProbs(logits, s.tokens, id, req.Logprobs, o.top[:req.Logprobs])
		ev.Top = slices.Clone(o.top[:min(req.Logprobs, o.vocab)])
	}
	s.gen++
	// A format is whole when it allows end-of-generation, which ends the
	// sample even with IgnoreEOS: nothing may follow.
	if (!req.IgnoreEOS || s.format != nil) && o.tok.IsEOG(id) {
		ev.Text = s.finalText()
		ev.Finish = FinishStop
		return ev, nil
	}
	text, stopped := s.stop.add(s.decoder.Add(id))
	ev.Text = text
	switch {
	case stopped:
		ev.Finish = FinishStop
	case s.gen >= req.MaxTokens || len(s.tokens)+1 >= o.ctx:
		// The context counts the prompt and every generated token.
		ev.Finish = FinishLength
		ev.Text += s.finalText()
	default:
		s.tokens = append(s.tokens, id)
	}
	return ev, nil
}

// finalText is what s's decoder and stop matcher still hold when it ends
// without a stop string.
func (s *seq) finalText() string {
	text, stopped := s.stop.add(s.decoder.Flush())
	if stopped {
		return text
	}
	return text + s.stop.flush()
}
