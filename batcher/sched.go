package batcher

import (
	"slices"

	"github.com/godwit-ai/godwit/engine"
)

// scheduler decides each step: which sequences run and how many of their
// tokens (a decode's one, or a prompt's next chunk), which running sequences
// lose their KV blocks to make room (preemption: they go back to the front
// of the queue and are recomputed), and which waiting sequences start,
// taking their prompt's cached blocks. It is a deterministic function of its
// queues, the pool's blocks and the token budget: it runs no model and does
// no I/O, so that every decision can be tested without one.
//
// After a step has run, commit advances the sequences by what they computed
// and forks the samples of a prompt whose logits are ready; finish and drop
// take sequences out.
type scheduler struct {
	maxTokens int // the token budget of a step
	maxSeqs   int // the most sequences running at once
	pool      *engine.KVPool
	waiting   []*seq // front first
	running   []*seq // in admission order
	plan      plan   // the last step's, reused
}

// plan is one step's decisions.
type plan struct {
	work      []work // what runs, in order; running sequences first
	preempted []*seq // lost their blocks this step, now waiting again
	failed    []*seq // can never get a block: end them
}

// work is one sequence's part of a step: tokens [seq.done, seq.done+n).
type work struct {
	seq *seq
	n   int
	// logits: the step ends at the sequence's last token, so its next
	// token is sampled from the logits.
	logits bool
	// admitted: the sequence starts running with this step, cached of its
	// tokens taken from the prefix cache.
	admitted bool
	cached   int
	// forks are the samples split off from seq by commit, to be sampled
	// from the same logits.
	forks []*seq
}

// add queues s to wait, at the back.
func (sc *scheduler) add(s *seq) { sc.waiting = append(sc.waiting, s) }

// schedule makes the next step's plan. Running sequences come first, oldest
// first; when blocks run out they are taken from the most recently admitted
// sequence. Then waiting sequences start, in order, while blocks, the token
// budget and maxSeqs allow.
func (sc *scheduler) schedule() *plan {
	p := &sc.plan
	clear(p.work)
	p.work, p.preempted, p.failed = p.work[:0], p.preempted[:0], p.failed[:0]
	budget := sc.maxTokens
	for i := 0; i < len(sc.running) && budget > 0; i++ {
		s := sc.running[i]
		n := min(len(s.tokens)-s.done, budget)
		for s.kv.Reserve(s.done+n) != nil {
			victim := sc.running[len(sc.running)-1]
			sc.running = sc.running[:len(sc.running)-1]
			sc.preempt(victim)
			if victim == s {
				n = 0
				break
			}
		}
		if n == 0 {
			break
		}
		p.work = append(p.work, work{seq: s, n: n, logits: s.done+n == len(s.tokens)})
		budget -= n
	}
	for len(sc.waiting) > 0 && budget > 0 && len(sc.running) < sc.maxSeqs {
		s := sc.waiting[0]
		cached := 0
		if s.done == 0 && s.kv.Len() == 0 {
			cached = s.kv.MatchPrefix(s.tokens)
			s.done = cached
		}
		n := min(len(s.tokens)-s.done, budget)
		if s.kv.Reserve(s.done+n) != nil {
			// A chunk as long as the blocks it got, else it waits for
			// running sequences to finish, its cached blocks released.
			n = min(n, s.kv.Room()-s.done)
			if n <= 0 {
				s.kv.Free()
				s.done = 0
				break
			}
		}
		sc.waiting = sc.waiting[1:]
		sc.running = append(sc.running, s)
		p.work = append(p.work, work{seq: s, n: n, logits: s.done+n == len(s.tokens), admitted: true, cached: cached})
		budget -= n
	}
	if len(p.work) == 0 && len(sc.running) == 0 && len(sc.waiting) > 0 {
		// Nothing runs and the first waiting sequence cannot get a
		// block: the pool is held by nothing, so this cannot be, but a
		// loop that waited for it would never end.
		p.failed = append(p.failed, sc.waiting[0])
		sc.waiting[0].kv.Free()
		sc.waiting = sc.waiting[1:]
	}
	return p
}

// preempt frees s's blocks and puts it back at the front of the queue; it
// will recompute its prompt and what it generated (the prefix cache may
// still hold much of it).
func (sc *scheduler) preempt(s *seq) {
	s.kv.Free()
	s.done = 0
	sc.waiting = slices.Insert(sc.waiting, 0, s)
	sc.plan.preempted = append(sc.plan.preempted, s)
}

// commit records that p's work has run: each sequence's tokens are computed
// and its full blocks enter the prefix cache. A sequence whose prompt's
// logits are ready forks the rest of its request's samples, which share its
// blocks and start running.
func (sc *scheduler) commit(p *plan) {
	for i := range p.work {
		w := &p.work[i]
		s := w.seq
		s.done += w.n
		s.kv.Commit(s.tokens)
		if !w.logits || s.forks == 0 {
			continue
		}
		for j := 1; j <= s.forks; j++ {
			c := &seq{g: s.g, index: j, kv: s.kv.Fork(), tokens: slices.Clone(s.tokens), prompt: s.prompt, done: s.done}
			w.forks = append(w.forks, c)
		}
		s.forks = 0
		sc.running = append(sc.running, w.forks...)
	}
}

// finish takes s out of the running sequences and frees its blocks.
func (sc *scheduler) finish(s *seq) {
	s.kv.Free()
	sc.running = slices.DeleteFunc(sc.running, func(r *seq) bool { return r == s })
}

// drop takes out every sequence, running or waiting, for which gone says
// so, frees its blocks and returns them.
func (sc *scheduler) drop(gone func(*seq) bool, out []*seq) []*seq {
	keep := func(list []*seq) []*seq {
		kept := list[:0]
		for _, s := range list {
			if gone(s) {
				s.kv.Free()
				out = append(out, s)
				continue
			}
			kept = append(kept, s)
		}
		clear(list[len(kept):])
		return kept
	}
	sc.running = keep(sc.running)
	sc.waiting = keep(sc.waiting)
	return out
}

// idle reports whether nothing runs or waits.
func (sc *scheduler) idle() bool { return len(sc.running) == 0 && len(sc.waiting) == 0 }
