// Package batcher schedules many generation requests onto one engine with
// continuous batching (Orca, vLLM): each step admits waiting sequences while
// KV blocks and a token budget allow, splits long prompts into chunks mixed
// with the running sequences' decodes, preempts the most recently admitted
// sequence when blocks run out (it is recomputed later and loses nothing),
// and streams every request's tokens, text and finish back as events.
//
// One goroutine owns the engine and runs the steps; Submit and the streams
// are safe for concurrent use.
package batcher

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/engine/sample"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// Config tunes a Batcher; the zero value takes the defaults named.
type Config struct {
	// MaxBatchTokens is the token budget of a step: decodes take one
	// each, prompt chunks the rest (default 512).
	MaxBatchTokens int
	// MaxSeqs is the most sequences running at once (default 64).
	MaxSeqs int
	// MaxQueue is the most requests waiting; Submit fails beyond it with
	// ErrQueueFull (default 256).
	MaxQueue int
	// MaxN is the most samples one request may ask for (default 16).
	MaxN int
	// Logger receives scheduling events (preemptions); nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.MaxBatchTokens <= 0 {
		c.MaxBatchTokens = DefaultMaxBatchTokens
	}
	if c.MaxSeqs <= 0 {
		c.MaxSeqs = DefaultMaxSeqs
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.MaxN <= 0 {
		c.MaxN = DefaultMaxN
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Request is one generation request.
type Request struct {
	// Prompt is the token ids to continue (at least one).
	Prompt []int32
	// MaxTokens is the most tokens generated per sample (at least 1).
	MaxTokens int
	// Sampling are the sampling parameters; with a seed, sample i of n
	// draws from seed+i.
	Sampling sample.Params
	// Stop are strings that end a sample when its text produces one; the
	// stop string itself is not emitted.
	Stop []string
	// IgnoreEOS keeps generating past end-of-generation tokens.
	IgnoreEOS bool
	// N is the number of samples of the prompt (default 1); they share
	// the prompt's KV blocks.
	N int
	// Logprobs, when above 0, asks for each token's log-probability and
	// the Logprobs most likely alternatives.
	Logprobs int
}

// Finish reasons.
const (
	FinishStop   = "stop"   // an end-of-generation token or a stop string
	FinishLength = "length" // MaxTokens or the model's context
)

// Event is one step of a request's output. Events of its samples arrive in
// order per sample; the last event of a sample has Finish set (or Err).
type Event struct {
	Index    int     // which sample
	Token    int32   // the token generated; -1 on a final event that carries none
	Text     string  // the text it completes (may be empty, or held back for stop strings)
	Logprob  float32 // its log-probability, when Logprobs was asked for
	Top      []sample.TokenLogProb
	Finish   string // on the sample's last event
	Err      error  // the request failed or was cancelled; the stream ends
	At       time.Time
	Usage    *Usage  // on the request's very last event
	Timing   *Timing // likewise
	Finished bool    // this is the request's very last event
}

// Usage counts a request's tokens.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	CachedTokens     int // prompt tokens found in the prefix cache
}

// Timing is a request's latency breakdown.
type Timing struct {
	Queue      time.Duration // submission to first scheduled
	FirstToken time.Duration // submission to the first token
	Total      time.Duration // submission to the end
}

// Stats are the batcher's gauges and counters.
type Stats struct {
	Running, Waiting int
	KVUsage          float64 // fraction of KV blocks held
	KVBlocks         int
	PrefixQueries    int64 // prompt tokens looked up in the prefix cache
	PrefixHits       int64
	Preemptions      int64
	PromptTokens     int64 // prompt tokens computed
	GenerationTokens int64
	Steps            int64
}

// Runner executes the forward pass of a step: *engine.Engine, or a fake in
// tests.
type Runner interface {
	// Step appends each input's tokens to its cache and returns Vocab
	// logits for every input that asks for them, in order.
	Step(in []engine.SeqInput) ([]float32, error)
	Vocab() int   // logits per row
	Context() int // the model's context length
}

// Batcher runs requests on an engine. Create it with New; Close stops it.
type Batcher struct {
	e    Runner
	tok  *tokenizer.Tokenizer
	pool *engine.KVPool
	cfg  Config
	ctx  int // the model's context length

	mu      sync.Mutex
	queue   []*group // submitted, not yet taken by the loop
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	stats   Stats // the gauges, as publish last set them
	waiting int   // queue plus the loop's own waiting sequences

	// Counters the loop bumps and Stats reads, without the lock.
	steps, preemptions, promptTokens, genTokens atomic.Int64

	// Owned by the loop.
	wait    []*seq // waiting sequences, front first
	running []*seq // in admission order
	inputs  []engine.SeqInput
	stepped []*seq
	ending  []ending // the step's requests' last events
	top     []sample.TokenLogProb
}

// New starts a batcher on e (the engine), decoding text with tok and keeping
// KV blocks in pool.
func New(e Runner, tok *tokenizer.Tokenizer, pool *engine.KVPool, cfg Config) *Batcher {
	b := &Batcher{e: e, tok: tok, pool: pool, cfg: cfg.withDefaults(), ctx: e.Context(),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.stats.KVBlocks = pool.Blocks()
	go b.loop()
	return b
}

// group is one request: its samples share the prompt.
type group struct {
	req      Request
	ctx      context.Context
	stream   *Stream
	arrived  time.Time
	started  time.Time
	first    time.Time
	cached   int
	left     int // samples not finished
	genTotal int
	err      error
}

// seq is one sample being generated.
type seq struct {
	g       *group
	index   int
	kv      *engine.Seq
	tokens  []int32 // prompt then generated
	prompt  int     // len of the request's prompt
	gen     int     // tokens generated
	done    int     // tokens whose KV is computed
	sampler *sample.Sampler
	decoder *tokenizer.StreamDecoder
	stop    stopMatcher
	// forks is how many more samples to fork off once the prompt's
	// logits are ready (the first sample of a group carries them).
	forks int
}

// Submit queues r and returns the stream of its events. ctx cancels it: the
// request leaves the batch and frees its blocks by the next step.
func (b *Batcher) Submit(ctx context.Context, r Request) (*Stream, error) {
	if err := r.Validate(b.limits()); err != nil {
		return nil, err
	}
	if r.N == 0 {
		r.N = 1
	}
	g := &group{req: r, ctx: ctx, stream: newStream(), arrived: time.Now(), left: r.N}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return nil, ErrClosed
	case b.waiting >= b.cfg.MaxQueue:
		return nil, ErrQueueFull
	}
	b.queue = append(b.queue, g)
	b.waiting++
	b.signal()
	return g.stream, nil
}

func (b *Batcher) limits() Limits {
	return Limits{Vocab: b.e.Vocab(), Context: b.ctx, MaxN: b.cfg.MaxN, BlockSize: b.pool.BlockSize(), Blocks: b.pool.Blocks()}
}

func (b *Batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Stats returns the current gauges and counters.
func (b *Batcher) Stats() Stats {
	b.mu.Lock()
	s := b.stats
	b.mu.Unlock()
	s.Steps, s.Preemptions = b.steps.Load(), b.preemptions.Load()
	s.PromptTokens, s.GenerationTokens = b.promptTokens.Load(), b.genTokens.Load()
	return s
}

// Close stops the batcher: requests still waiting or running end with
// ErrClosed. It returns when the loop has stopped.
func (b *Batcher) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		b.signal()
	}
	b.mu.Unlock()
	<-b.done
}

func (b *Batcher) loop() {
	defer close(b.done)
	for {
		b.mu.Lock()
		closed := b.closed
		for _, g := range b.queue {
			b.wait = append(b.wait, b.newSeq(g))
		}
		b.queue = b.queue[:0]
		b.mu.Unlock()
		if closed {
			for _, s := range append(b.running, b.wait...) {
				b.fail(s, ErrClosed)
			}
			return
		}
		b.dropCancelled()
		if len(b.running) == 0 && len(b.wait) == 0 {
			b.publish()
			<-b.wake
			continue
		}
		b.step()
		b.publish()
		// The goroutines that write this step's tokens to clients are
		// runnable on this P, and the kernel pool's workers hold the
		// others while they spin through the next step: without a yield
		// they run only when the scheduler preempts one, 10 to 20 ms
		// later, and tokens leave in bursts.
		runtime.Gosched()
	}
}

func (b *Batcher) newSeq(g *group) *seq {
	s := &seq{g: g, kv: b.pool.NewSeq(), tokens: slices.Clone(g.req.Prompt), prompt: len(g.req.Prompt), forks: g.req.N - 1}
	s.init(b, 0)
	return s
}

// init gives s its sampler, decoder and stop matcher as sample index.
func (s *seq) init(b *Batcher, index int) {
	p := s.g.req.Sampling
	if p.HasSeed {
		p.Seed += uint64(index)
	}
	sm, err := sample.New(p, b.e.Vocab())
	if err != nil {
		panic(err) // validated in Submit
	}
	s.index, s.sampler, s.decoder = index, sm, b.tok.NewStreamDecoder()
	s.stop = stopMatcher{stops: s.g.req.Stop}
}

// publish updates the gauges others read.
func (b *Batcher) publish() {
	ps := b.pool.Stats()
	b.mu.Lock()
	b.stats.Running, b.stats.Waiting = len(b.running), len(b.wait)+len(b.queue)
	b.waiting = b.stats.Waiting
	b.stats.KVUsage = b.pool.Usage()
	b.stats.PrefixQueries, b.stats.PrefixHits = ps.PrefixQueries, ps.PrefixHits
	b.mu.Unlock()
}

// dropCancelled ends the sequences whose request context is done.
func (b *Batcher) dropCancelled() {
	keep := func(list []*seq) []*seq {
		out := list[:0]
		for _, s := range list {
			if err := s.g.ctx.Err(); err != nil {
				b.fail(s, err)
				continue
			}
			out = append(out, s)
		}
		return out
	}
	b.running = keep(b.running)
	b.wait = keep(b.wait)
}

// fail ends s with err, freeing its blocks; the request's stream ends once
// all its samples have.
func (b *Batcher) fail(s *seq, err error) {
	s.kv.Free()
	g := s.g
	if g.err == nil {
		g.err = err
	}
	// Samples not yet forked end with the first.
	g.left -= 1 + s.forks
	s.forks = 0
	if g.left == 0 {
		g.stream.push(Event{Index: s.index, Token: -1, Err: g.err, At: time.Now(), Finished: true})
	}
}

// step schedules and runs one forward pass.
func (b *Batcher) step() {
	budget := b.cfg.MaxBatchTokens
	b.inputs, b.stepped = b.inputs[:0], b.stepped[:0]
	// Running sequences first, oldest first: a decode takes one token, a
	// prompt being prefilled a chunk. Blocks that run out are taken from
	// the most recently admitted sequence, which goes back to the front
	// of the queue.
	for i := 0; i < len(b.running) && budget > 0; i++ {
		s := b.running[i]
		n := min(len(s.tokens)-s.done, budget)
		for {
			err := s.kv.Reserve(s.done + n)
			if err == nil {
				break
			}
			victim := b.running[len(b.running)-1]
			b.preempt(victim)
			b.running = b.running[:len(b.running)-1]
			if victim == s {
				n = 0
				break
			}
		}
		if n == 0 {
			break
		}
		b.schedule(s, n)
		budget -= n
	}
	// Then waiting sequences, in order, while blocks and budget allow.
	for len(b.wait) > 0 && budget > 0 && len(b.running) < b.cfg.MaxSeqs {
		s := b.wait[0]
		if s.done == 0 && s.kv.Len() == 0 {
			cached := s.kv.MatchPrefix(s.tokens)
			s.done = cached
			if s.gen == 0 && s.g.started.IsZero() {
				s.g.cached = cached
			}
		}
		n := min(len(s.tokens)-s.done, budget)
		if err := s.kv.Reserve(s.done + n); err != nil {
			// A chunk as long as the blocks it got, else it waits for
			// running sequences to finish, its cached blocks released.
			n = min(n, s.kv.Blocks()*b.pool.BlockSize()-s.done)
			if n <= 0 {
				s.kv.Free()
				s.done = 0
				break
			}
		}
		b.wait = b.wait[1:]
		b.running = append(b.running, s)
		if s.g.started.IsZero() {
			s.g.started = time.Now()
		}
		b.schedule(s, n)
		budget -= n
	}
	if len(b.inputs) == 0 {
		if len(b.running) == 0 && len(b.wait) > 0 {
			// Nothing runs and the first waiting request cannot get a
			// block: the pool is held by nothing, so this cannot be.
			b.fail(b.wait[0], errors.New("batcher: no KV block free with nothing running"))
			b.wait = b.wait[1:]
		}
		return
	}
	logits, err := b.e.Step(b.inputs)
	if err != nil {
		for _, s := range b.stepped {
			b.fail(s, err)
		}
		b.running = slices.DeleteFunc(b.running, func(s *seq) bool { return slices.Contains(b.stepped, s) })
		return
	}
	b.steps.Add(1)
	vocab := b.e.Vocab()
	row := 0
	var finished []*seq
	for i, s := range b.stepped {
		n := len(b.inputs[i].Tokens)
		if s.gen == 0 {
			b.promptTokens.Add(int64(n))
		}
		s.done += n
		s.kv.Commit(s.tokens)
		if !b.inputs[i].Logits {
			continue
		}
		l := logits[row*vocab : (row+1)*vocab]
		row++
		children := b.forkAll(s)
		for _, c := range append([]*seq{s}, children...) {
			if b.emit(c, l) {
				finished = append(finished, c)
			}
		}
		b.running = append(b.running, children...)
	}
	if len(finished) > 0 {
		b.running = slices.DeleteFunc(b.running, func(s *seq) bool { return slices.Contains(finished, s) })
	}
	// A client that reads the metrics once its request is done must find
	// it gone from them.
	b.publish()
	for _, e := range b.ending {
		e.stream.push(e.ev)
	}
	clear(b.ending)
	b.ending = b.ending[:0]
}

// ending is a request's last event, held until the step's end.
type ending struct {
	stream *Stream
	ev     Event
}

// schedule adds n of s's tokens to the step.
func (b *Batcher) schedule(s *seq, n int) {
	b.inputs = append(b.inputs, engine.SeqInput{KV: s.kv, Tokens: s.tokens[s.done : s.done+n], Logits: s.done+n == len(s.tokens)})
	b.stepped = append(b.stepped, s)
}

// preempt frees s's blocks and puts it back at the front of the queue; it
// will recompute its prompt and what it generated (the prefix cache may
// still hold much of it).
func (b *Batcher) preempt(s *seq) {
	s.kv.Free()
	s.done = 0
	b.wait = append([]*seq{s}, b.wait...)
	b.preemptions.Add(1)
	b.cfg.Logger.Debug("preempted a sequence", "tokens", len(s.tokens), "free_blocks", b.pool.FreeBlocks())
}

// forkAll splits off the samples of s's request still to come, sharing
// its prompt's blocks.
func (b *Batcher) forkAll(s *seq) []*seq {
	if s.forks == 0 {
		return nil
	}
	var out []*seq
	for i := 1; i <= s.forks; i++ {
		c := &seq{g: s.g, kv: s.kv.Fork(), tokens: slices.Clone(s.tokens), prompt: s.prompt, done: s.done}
		c.init(b, i)
		out = append(out, c)
	}
	s.forks = 0
	return out
}

// emit samples s's next token from logits and streams it; it reports
// whether s finished.
func (b *Batcher) emit(s *seq, logits []float32) bool {
	g := s.g
	id := s.sampler.Sample(logits, s.tokens)
	now := time.Now()
	if g.first.IsZero() {
		g.first = now
	}
	ev := Event{Index: s.index, Token: id, At: now}
	if g.req.Logprobs > 0 {
		if cap(b.top) < g.req.Logprobs {
			b.top = make([]sample.TokenLogProb, g.req.Logprobs)
		}
		ev.Logprob = s.sampler.LogProbs(logits, s.tokens, id, g.req.Logprobs, b.top[:g.req.Logprobs])
		ev.Top = slices.Clone(b.top[:min(g.req.Logprobs, b.e.Vocab())])
	}
	if id == sample.NoToken {
		b.fail(s, errors.New("batcher: no token has a finite logit after sampling filters and bias"))
		return true
	}
	s.gen++
	g.genTotal++
	b.genTokens.Add(1)
	switch {
	case !g.req.IgnoreEOS && b.tok.IsEOG(id):
		ev.Text = s.finalText()
		ev.Finish = FinishStop
	default:
		text, stopped := s.stop.add(s.decoder.Add(id))
		ev.Text = text
		switch {
		case stopped:
			ev.Finish = FinishStop
		case s.gen >= g.req.MaxTokens || len(s.tokens)+1 >= b.ctx:
			// The context counts the prompt and every generated token.
			ev.Finish = FinishLength
			ev.Text += s.finalText()
		}
	}
	if ev.Finish == "" {
		s.tokens = append(s.tokens, id)
		g.stream.push(ev)
		return false
	}
	s.kv.Free()
	g.left--
	if g.left == 0 {
		ev.Finished = true
		ev.Usage = &Usage{PromptTokens: s.prompt, CompletionTokens: g.genTotal, CachedTokens: g.cached}
		ev.Timing = &Timing{Queue: g.started.Sub(g.arrived), FirstToken: g.first.Sub(g.arrived), Total: now.Sub(g.arrived)}
		// Sent once the gauges no longer count the request (see step).
		b.ending = append(b.ending, ending{g.stream, ev})
		return true
	}
	g.stream.push(ev)
	return true
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

// Stream delivers one request's events in order. Next blocks for the next
// one.
type Stream struct {
	mu     sync.Mutex
	events []Event
	ready  chan struct{}
	ended  bool
}

func newStream() *Stream { return &Stream{ready: make(chan struct{}, 1)} }

func (st *Stream) push(ev Event) {
	st.mu.Lock()
	st.events = append(st.events, ev)
	st.mu.Unlock()
	select {
	case st.ready <- struct{}{}:
	default:
	}
}

// Next returns the next event, waiting for it, and false once the final
// event has been returned (or ctx is done while waiting).
func (st *Stream) Next(ctx context.Context) (Event, bool) {
	for {
		st.mu.Lock()
		if st.ended {
			st.mu.Unlock()
			return Event{}, false
		}
		if len(st.events) > 0 {
			ev := st.events[0]
			st.events = st.events[1:]
			st.ended = ev.Finished
			st.mu.Unlock()
			return ev, true
		}
		st.mu.Unlock()
		select {
		case <-st.ready:
		case <-ctx.Done():
			return Event{}, false
		}
	}
}
