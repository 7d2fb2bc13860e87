package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/engine/constrain"
	"github.com/godwit-ai/godwit/engine/sample"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// FormatPrompts are the format tests' prompts, one per request: an
// instruction with the request's number in front, so that the samples of
// greedy runs differ, cut to a KV block (16 tokens) so that the prefix
// cache, which keeps whole blocks only, never serves the constrained run
// a prompt the free run computed: both first tokens include the prefill.
func FormatPrompts(tok *tokenizer.Tokenizer, n int) [][]int32 {
	ps := make([][]int32, n)
	for i := range ps {
		p := tok.Encode(fmt.Sprintf("%d. Write the customer and their orders as JSON.", i+1), true, false)
		ps[i] = p[:min(len(p), 16)]
	}
	return ps
}

// FormatConfig is one measurement of what constrained decoding costs (issue
// 16): Batch requests decode together through a batcher, once free and once
// held to Schema, with the same prompt and seeds.
type FormatConfig struct {
	Schema  []byte    // the JSON schema of the constrained run
	Prompts [][]int32 // request i's prompt is Prompts[i]
	Batch   int       // requests submitted together
	// Tokens is how many tokens each sample generates before the run is
	// cancelled; tokens From to Tokens-1 are timed (the earlier ones
	// hold the prompt's prefill and the first masks, which the first
	// token's latency reports).
	Tokens, From int
	// Request i samples at Temperature (0: greedy) with seed Seed+i, in
	// both runs.
	Temperature float32
	Seed        uint64
}

// FormatResult is one FormatConfig's measurement.
type FormatResult struct {
	// Decode tokens/s of all samples together over the timed tokens,
	// free (Plain) and constrained (Format).
	PlainTPS  float64 `json:"plain_tps"`
	FormatTPS float64 `json:"format_tps"`
	// Submission to the first token as the client receives it, the mean
	// over the samples; the constrained run's starts before the schema
	// is compiled.
	PlainFirst  time.Duration `json:"plain_first_ns"`
	FormatFirst time.Duration `json:"format_first_ns"`
	// Of that, the part after the first step's forward pass (sampling,
	// masks, detokenizing, the stream), the mean over the samples: the
	// forward pass is the same work in both runs, and its time varies
	// far more from run to run than the masks take.
	PlainFirstOut  time.Duration `json:"plain_first_out_ns"`
	FormatFirstOut time.Duration `json:"format_first_out_ns"`
	Compile        time.Duration `json:"compile_ns"`
	// Text is the constrained run's first sample as far as it went.
	Text string `json:"-"`
}

// Ratio is constrained over free decode tokens/s.
func (r FormatResult) Ratio() float64 { return r.FormatTPS / r.PlainTPS }

// FirstExtra is what the constraint adds to the first token's latency, as
// the client sees it: the compile and the first masks.
func (r FormatResult) FirstExtra() time.Duration { return r.FormatFirst - r.PlainFirst }

// FirstOutExtra is what the constraint adds to the first token after its
// forward pass: the first masks, less what sampling saves on the tokens
// they refuse. Compile plus FirstOutExtra estimates FirstExtra without the
// forward pass's variance.
func (r FormatResult) FirstOutExtra() time.Duration { return r.FormatFirstOut - r.PlainFirstOut }

// MeasureFormat runs cfg on b, free and then constrained by a freshly
// compiled schema (a server compiles a schema once, on its first request:
// this times that first request). b must be otherwise idle.
func MeasureFormat(ctx context.Context, b *batcher.Batcher, cfg FormatConfig) (FormatResult, error) {
	var r FormatResult
	if cfg.Batch < 1 || len(cfg.Prompts) != cfg.Batch || cfg.From < 0 || cfg.Tokens < cfg.From+2 {
		return r, fmt.Errorf("format test: batch %d, %d prompts, tokens %d from %d: want a batch of at least 1, a prompt per request and two tokens timed",
			cfg.Batch, len(cfg.Prompts), cfg.Tokens, cfg.From)
	}
	free, err := decodeFormat(ctx, b, cfg, nil, time.Now())
	if err != nil {
		return r, fmt.Errorf("unconstrained: %w", err)
	}
	start := time.Now()
	l, err := constrain.CompileSchema(cfg.Schema)
	if err != nil {
		return r, err
	}
	r.Compile = time.Since(start)
	held, err := decodeFormat(ctx, b, cfg, l, start)
	if err != nil {
		return r, fmt.Errorf("constrained: %w", err)
	}
	r.PlainTPS, r.PlainFirst, r.PlainFirstOut = free.tps, free.first, free.firstOut
	r.FormatTPS, r.FormatFirst, r.FormatFirstOut, r.Text = held.tps, held.first, held.firstOut, held.text
	return r, nil
}

// formatRun is one run's measurement: the aggregate tokens/s over tokens
// cfg.From to cfg.Tokens-1 (by the events' step times), the mean time from
// start to each sample's first event as received, and of it from that
// event's step time on, and the first sample's text.
type formatRun struct {
	tps             float64
	first, firstOut time.Duration
	text            string
}

// decodeFormat submits cfg's requests held to l (nil: free), reads each
// sample's first cfg.Tokens tokens, then cancels them and waits for their
// streams to end.
func decodeFormat(ctx context.Context, b *batcher.Batcher, cfg FormatConfig, l *constrain.Language, start time.Time) (formatRun, error) {
	lim := b.Limits()
	reqs := make([]batcher.Request, cfg.Batch)
	for i, p := range cfg.Prompts {
		reqs[i] = batcher.Request{
			Prompt: p,
			// As much as the context allows, as a request without
			// max_tokens gets: a tight max_tokens would make the masks
			// close the output early, and timing that is another test.
			MaxTokens: min(lim.Context-1, lim.Room()) - len(p),
			Sampling:  sample.Params{Temperature: cfg.Temperature, Seed: cfg.Seed + uint64(i), HasSeed: true},
			IgnoreEOS: true,
			Format:    l,
		}
		if reqs[i].MaxTokens < cfg.Tokens {
			return formatRun{}, fmt.Errorf("%d tokens after a prompt of %d do not fit the context (%d) or the KV cache (%d positions)",
				cfg.Tokens, len(p), lim.Context, lim.Room())
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams, err := b.SubmitAll(ctx, reqs)
	if err != nil {
		return formatRun{}, err
	}
	// One reader per request, so that each sees its events when they are
	// sent: the first one's arrival is the client's time to first token.
	type sampleTimes struct {
		first, firstAt time.Time
		winStart, last time.Time
		text           []byte
		err            error
	}
	got := make([]sampleTimes, len(streams))
	var read, drained sync.WaitGroup
	read.Add(len(streams))
	drained.Add(len(streams))
	for i, st := range streams {
		go func() {
			defer drained.Done()
			s := &got[i]
			n := 0
			for n < cfg.Tokens {
				ev, ok := st.Next(context.Background())
				switch {
				case !ok:
					s.err = fmt.Errorf("sample %d: the stream ended after %d tokens", i, n)
				case ev.Err != nil:
					s.err = fmt.Errorf("sample %d after %d tokens: %w", i, n, ev.Err)
				case ev.Token < 0:
					continue
				}
				if s.err != nil {
					break
				}
				if n == 0 {
					s.first, s.firstAt = time.Now(), ev.At
				}
				if i == 0 {
					s.text = append(s.text, ev.Text...)
				}
				switch n {
				case cfg.From:
					s.winStart = ev.At
				case cfg.Tokens - 1:
					s.last = ev.At
				}
				n++
				if ev.Finish != "" && n < cfg.Tokens {
					s.err = fmt.Errorf("sample %d ended (%s) after %d tokens, before the %d timed: the schema must ask for longer outputs", i, ev.Finish, n, cfg.Tokens)
					break
				}
			}
			read.Done()
			// Cancelled once every sample has its tokens: read on
			// until the stream ends, so that the batcher is idle again
			// when the run returns.
			for {
				if _, ok := st.Next(context.Background()); !ok {
					return
				}
			}
		}()
	}
	read.Wait()
	cancel()
	drained.Wait()
	var r formatRun
	var from, to time.Time
	for i, s := range got {
		if s.err != nil {
			return formatRun{}, s.err
		}
		r.first += s.first.Sub(start)
		r.firstOut += s.first.Sub(s.firstAt)
		if i == 0 || s.winStart.Before(from) {
			from = s.winStart
		}
		if s.last.After(to) {
			to = s.last
		}
	}
	r.first /= time.Duration(len(got))
	r.firstOut /= time.Duration(len(got))
	r.tps = float64(cfg.Batch*(cfg.Tokens-1-cfg.From)) / to.Sub(from).Seconds()
	r.text = string(got[0].text)
	return r, nil
}
