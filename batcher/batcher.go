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
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/engine/constrain"
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
	// MaxQueue is the most sequences waiting (a request of n samples
	// counts n); Submit fails beyond it with ErrQueueFull, and a request
	// larger than the whole queue with KindInvalid (default 256).
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
	// Resume continues a sample interrupted part-way (issue 14, on this
	// node or another): it holds the tokens the sample already generated
	// and sent, and generation goes on with token len(Resume) of the
	// seed's stream, so that with the same Sampling (seed included) the
	// tokens are those the uninterrupted sample would have generated. The
	// events carry only the tokens after Resume, and no text those
	// completed; Usage counts only the new ones. Resumed tokens count
	// toward MaxTokens; N must be 1. Resume must not hold a token that
	// would have ended the sample (a stop string, or end-of-generation
	// without IgnoreEOS).
	Resume []int32
	// Format is the language the samples' output is held to (issue 16);
	// nil holds it to nothing. Every sample, resumed ones included,
	// follows it from its start.
	Format *constrain.Language
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
	// Wait estimates how long a request submitted now waits for its
	// first token; IdleTTFT is the recent time to first token of requests
	// that found the batcher idle (0 until one has), and WaitPerSeq what
	// each sequence running or queued adds to it.
	Wait, IdleTTFT, WaitPerSeq time.Duration
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
//
// Each step is three pieces with plain data between them: the scheduler
// (sched.go) makes a plan, the runner executes its forward pass, and the
// output processor (output.go) turns the logits into tokens and events.
type Batcher struct {
	run   Runner
	out   outputs
	sched scheduler
	cfg   Config
	lim   Limits

	mu     sync.Mutex
	queue  []*group // submitted, not yet taken by the loop
	closed bool
	wake   chan struct{}
	done   chan struct{}
	stats  Stats // the gauges, as publish last set them
	// The wait estimate's inputs as publish last set them; Stats
	// estimates with the queue as it is when called.
	pubWait   waitEstimate
	pubOldest time.Time
	load      int // sequences running or waiting, as publish last counted
	waiting   int // sequences in queue and in the loop's own waiting list

	// Counters the loop bumps and Stats reads, without the lock.
	steps, preemptions, promptTokens, genTokens atomic.Int64

	// Owned by the loop.
	inputs  []engine.SeqInput
	ending  []ending // the step's requests' last events
	dropped []*seq
	wait    waitEstimate
}

// New starts a batcher on r (the engine), decoding text with tok and keeping
// KV blocks in pool.
func New(r Runner, tok *tokenizer.Tokenizer, pool *engine.KVPool, cfg Config) *Batcher {
	cfg = cfg.withDefaults()
	b := &Batcher{run: r, cfg: cfg,
		out:   outputs{tok: tok, vocab: r.Vocab(), ctx: r.Context(), trie: &lazyVocab{}},
		sched: scheduler{maxTokens: cfg.MaxBatchTokens, maxSeqs: cfg.MaxSeqs, pool: pool},
		lim: Limits{Vocab: r.Vocab(), Context: r.Context(), MaxN: cfg.MaxN, MaxQueue: cfg.MaxQueue,
			BlockSize: pool.BlockSize(), Blocks: pool.Blocks(), Capacity: pool.Capacity()},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.stats.KVBlocks = pool.Blocks()
	go b.loop()
	return b
}

// checkFormat refuses a resumed sample whose earlier tokens its format
// would not have allowed: the constraint could not go on from them. It
// builds the constraints' vocabulary on the first request with a format.
func (b *Batcher) checkFormat(r *Request) error {
	if r.Format == nil {
		return nil
	}
	v := b.out.trie.get(b.out.tok) // here rather than in a step
	if len(r.Resume) == 0 {
		return nil
	}
	m := constrain.NewMatcher(r.Format, v)
	for _, id := range r.Resume {
		if b.out.tok.IsControl(id) {
			return invalid("resume", "resume holds the control token %d, which the request's format never allows", id)
		}
		if !m.Advance(b.out.tok, id) {
			return invalid("resume", "the resumed tokens are not the start of an output in the request's format")
		}
	}
	return nil
}

// group is one request: its samples share the prompt.
type group struct {
	req      Request
	ctx      context.Context
	stream   *Stream
	arrived  time.Time
	started  time.Time
	first    time.Time
	load     int // sequences running or waiting when it arrived
	cached   int
	left     int // samples not finished
	genTotal int
	err      error
}

// seq is one sample being generated.
type seq struct {
	g      *group
	index  int
	kv     *engine.Seq
	tokens []int32 // prompt then generated
	prompt int     // len of the request's prompt
	gen    int     // tokens generated
	done   int     // tokens whose KV is computed
	// forks is how many more samples to fork off once the prompt's
	// logits are ready (the first sample of a group carries them).
	forks int

	// The output processor's.
	sampler *sample.Sampler
	decoder *tokenizer.StreamDecoder
	stop    stopMatcher
	format  *constrain.Matcher // nil: no constraint
}

// Submit queues r and returns the stream of its events. ctx cancels it: the
// request leaves the batch and frees its blocks by the next step. Its
// errors are *Error values.
func (b *Batcher) Submit(ctx context.Context, r Request) (*Stream, error) {
	st, err := b.SubmitAll(ctx, []Request{r})
	if err != nil {
		return nil, err
	}
	return st[0], nil
}

// SubmitAll queues rs as one: either all of them or, on an error, none, so
// that no part of a refused request runs. The queue counts sequences (a
// request's N): rs needing more than MaxQueue could never be queued and
// fail with KindInvalid; rs that would overfill the queue as it is now
// fail with ErrQueueFull, which waiting may cure.
func (b *Batcher) SubmitAll(ctx context.Context, rs []Request) ([]*Stream, error) {
	seqs := 0
	for i := range rs {
		if err := rs[i].Validate(b.lim); err != nil {
			return nil, err
		}
		if err := b.checkFormat(&rs[i]); err != nil {
			return nil, err
		}
		seqs += max(rs[i].N, 1)
	}
	if seqs > b.lim.MaxQueue {
		param := "prompt"
		if len(rs) == 1 {
			param = "n"
		}
		return nil, invalid(param, "the request needs %d sequences (%d prompts of n=%d), and the server queues at most %d (--max-queue); send fewer prompts or a smaller n per request",
			seqs, len(rs), max(rs[0].N, 1), b.lim.MaxQueue)
	}
	now := time.Now()
	groups := make([]*group, len(rs))
	streams := make([]*Stream, len(rs))
	b.mu.Lock()
	defer b.mu.Unlock()
	load := b.load + b.waiting
	for i, r := range rs {
		r.N = max(r.N, 1)
		groups[i] = &group{req: r, ctx: ctx, stream: newStream(), arrived: now, left: r.N, load: load}
		streams[i] = groups[i].stream
	}
	switch {
	case b.closed:
		return nil, ErrClosed
	case b.waiting+seqs > b.lim.MaxQueue:
		return nil, ErrQueueFull
	}
	b.queue = append(b.queue, groups...)
	b.waiting += seqs
	b.stats.Waiting += len(groups) // the gauge counts them while a step runs
	b.signal()
	return streams, nil
}

func (b *Batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Limits are what requests are checked against.
func (b *Batcher) Limits() Limits { return b.lim }

// Stats returns the current gauges and counters.
func (b *Batcher) Stats() Stats {
	b.mu.Lock()
	s := b.stats
	var queued time.Duration
	if !b.pubOldest.IsZero() {
		queued = time.Since(b.pubOldest)
	}
	s.Wait = b.pubWait.estimate(b.load+b.waiting, queued)
	s.IdleTTFT, s.WaitPerSeq = b.pubWait.idle, b.pubWait.marginal()
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
			s := &seq{g: g, kv: b.sched.pool.NewSeq(), tokens: slices.Concat(g.req.Prompt, g.req.Resume), prompt: len(g.req.Prompt), gen: len(g.req.Resume), forks: g.req.N - 1}
			b.out.init(s, 0)
			b.sched.add(s)
		}
		b.queue = b.queue[:0]
		b.mu.Unlock()
		if closed {
			for _, s := range b.sched.drop(func(*seq) bool { return true }, nil) {
				b.fail(s, ErrClosed)
			}
			return
		}
		b.dropped = b.sched.drop(func(s *seq) bool { return s.g.ctx.Err() != nil }, b.dropped[:0])
		for _, s := range b.dropped {
			b.fail(s, &Error{Kind: KindCancelled, Msg: "the request was cancelled", Err: s.g.ctx.Err()})
		}
		if b.sched.idle() {
			b.publish()
			<-b.wake
			continue
		}
		b.step()
		// The goroutines that write this step's tokens to clients are
		// runnable on this P, and the kernel pool's workers hold the
		// others while they spin through the next step: without a yield
		// they run only when the scheduler preempts one, 10 to 20 ms
		// later, and tokens leave in bursts.
		runtime.Gosched()
	}
}

// publish updates the gauges others read.
func (b *Batcher) publish() {
	pool := b.sched.pool
	ps := pool.Stats()
	b.mu.Lock()
	b.stats.Running, b.stats.Waiting = len(b.sched.running), len(b.sched.waiting)+len(b.queue)
	b.waiting = 0
	for _, s := range b.sched.waiting {
		b.waiting += 1 + s.forks
	}
	for _, g := range b.queue {
		b.waiting += g.req.N
	}
	b.stats.KVUsage = pool.Usage()
	b.stats.PrefixQueries, b.stats.PrefixHits = ps.PrefixQueries, ps.PrefixHits
	var oldest time.Time
	for _, s := range b.sched.waiting {
		if g := s.g; g.started.IsZero() && (oldest.IsZero() || g.arrived.Before(oldest)) {
			oldest = g.arrived
		}
	}
	if len(b.queue) > 0 && (oldest.IsZero() || b.queue[0].arrived.Before(oldest)) {
		oldest = b.queue[0].arrived
	}
	b.pubWait, b.pubOldest, b.load = b.wait, oldest, len(b.sched.running)
	b.mu.Unlock()
}

// fail ends s, already out of the scheduler's queues, with err; the
// request's stream ends once all its samples have.
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

// step plans, runs and processes one forward pass. A panic in it (in a
// kernel, say) fails the step's requests with KindInternal, with the stack
// logged once, and the loop goes on serving the others.
func (b *Batcher) step() {
	var p *plan
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		b.cfg.Logger.Error("a step panicked; its requests fail", "panic", r, "stack", string(debug.Stack()))
		if p != nil {
			b.failWork(p, &Error{Kind: KindInternal, Msg: fmt.Sprintf("generation failed: %v", r)})
		}
	}()
	p = b.sched.schedule()
	// The gauges count what the step runs and what waits behind it
	// (Submit's queue limit reads them).
	b.publish()
	for _, s := range p.preempted {
		b.preemptions.Add(1)
		b.cfg.Logger.Debug("preempted a sequence", "tokens", len(s.tokens), "free_blocks", b.sched.pool.FreeBlocks())
	}
	for _, s := range p.failed {
		b.fail(s, &Error{Kind: KindInternal, Msg: "no KV block free with nothing running"})
	}
	if len(p.work) == 0 {
		return
	}
	start := time.Now()
	for _, w := range p.work {
		if g := w.seq.g; w.admitted && g.started.IsZero() {
			g.started, g.cached = start, w.cached
		}
	}
	logits, err := b.execute(p)
	if err != nil {
		b.failWork(p, &Error{Kind: KindInternal, Msg: "generation failed: " + err.Error(), Err: err})
		return
	}
	b.steps.Add(1)
	b.sched.commit(p)
	now := time.Now()
	b.wait.stepTook(now.Sub(start))
	row := 0
	for i := range p.work {
		w := &p.work[i]
		if w.seq.gen == 0 {
			b.promptTokens.Add(int64(w.n))
		}
		if !w.logits {
			continue
		}
		l := logits[row*b.out.vocab : (row+1)*b.out.vocab]
		row++
		for j, c := range w.forks {
			b.out.init(c, j+1)
		}
		b.emit(w.seq, l, now)
		for _, c := range w.forks {
			b.emit(c, l, now)
		}
	}
	// A client that reads the metrics once its request is done must find
	// it gone from them.
	b.publish()
	b.flushEndings()
}

// execute is the model runner's part of a step: it hands the plan's work to
// the runner as engine inputs and returns their logits.
func (b *Batcher) execute(p *plan) ([]float32, error) {
	clear(b.inputs)
	b.inputs = b.inputs[:0]
	for _, w := range p.work {
		s := w.seq
		b.inputs = append(b.inputs, engine.SeqInput{KV: s.kv, Tokens: s.tokens[s.done : s.done+w.n], Logits: w.logits})
	}
	return b.run.Step(b.inputs)
}

// failWork fails every sequence of p still running, and sends the endings
// already decided.
func (b *Batcher) failWork(p *plan, err *Error) {
	for i := range p.work {
		for _, s := range append([]*seq{p.work[i].seq}, p.work[i].forks...) {
			if slices.Contains(b.sched.running, s) {
				b.sched.finish(s)
				b.fail(s, err)
			}
		}
	}
	b.flushEndings()
}

func (b *Batcher) flushEndings() {
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

// emit samples s's next token from logits and streams its event; a sample
// that ends leaves the scheduler.
func (b *Batcher) emit(s *seq, logits []float32, now time.Time) {
	g := s.g
	if g.first.IsZero() {
		g.first = now
		b.wait.firstToken(now.Sub(g.arrived), g.load)
	}
	ev, err := b.out.next(s, logits, now)
	if err != nil {
		b.sched.finish(s)
		b.fail(s, err)
		return
	}
	g.genTotal++
	b.genTokens.Add(1)
	if ev.Finish == "" {
		g.stream.push(ev)
		return
	}
	b.sched.finish(s)
	g.left--
	if g.left > 0 {
		g.stream.push(ev)
		return
	}
	ev.Finished = true
	ev.Usage = &Usage{PromptTokens: s.prompt, CompletionTokens: g.genTotal, CachedTokens: g.cached}
	ev.Timing = &Timing{Queue: g.started.Sub(g.arrived), FirstToken: g.first.Sub(g.arrived), Total: now.Sub(g.arrived)}
	// Sent once the gauges no longer count the request (see step).
	b.ending = append(b.ending, ending{g.stream, ev})
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
