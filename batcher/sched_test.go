package batcher

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/engine"
)

// schedRig drives a scheduler with no model: a real KV pool of tiny rows
// keeps the block accounting and the prefix cache, "running" a step extends
// each sequence's cache by its tokens, and each sequence whose logits a step
// gives appends token 1000+i for its i-th generated token, ending after
// maxTokens.
type schedRig struct {
	t     *testing.T
	pool  *engine.KVPool
	sc    scheduler
	names map[*seq]string
}

func newSchedRig(t *testing.T, blocks, budget, maxSeqs int) *schedRig {
	t.Helper()
	pool, err := engine.NewKVPool(engine.KVPoolConfig{Layers: 1, Width: 1, F32: true,
		Bytes: engine.KVBytes(1, 1, 16*blocks, true)})
	if err != nil {
		t.Fatal(err)
	}
	if pool.Blocks() != blocks {
		t.Fatalf("pool of %d blocks, want %d", pool.Blocks(), blocks)
	}
	return &schedRig{t: t, pool: pool, names: map[*seq]string{},
		sc: scheduler{maxTokens: budget, maxSeqs: maxSeqs, pool: pool}}
}

// submit queues a request named name of prompt, n samples of maxTokens.
func (r *schedRig) submit(name string, prompt []int32, n, maxTokens int) *seq {
	g := &group{req: Request{Prompt: prompt, N: n, MaxTokens: maxTokens}, left: n}
	s := &seq{g: g, kv: r.pool.NewSeq(), tokens: slices.Clone(prompt), prompt: len(prompt), forks: n - 1}
	r.names[s] = name
	r.sc.add(s)
	return s
}

// step plans and "runs" one step and describes it: the work ("A:5", with
// "+16" for tokens an admitted sequence took from the prefix cache), then
// "preempt X", "fail X", "fork X.1" and "done X" parts as they happened.
func (r *schedRig) step() string {
	r.t.Helper()
	p := r.sc.schedule()
	var work []string
	for _, w := range p.work {
		d := fmt.Sprintf("%s:%d", r.names[w.seq], w.n)
		if w.cached > 0 {
			d += fmt.Sprintf("+%d", w.cached)
		}
		work = append(work, d)
		if err := w.seq.kv.Extend(w.n); err != nil {
			r.t.Fatalf("the plan gave %s %d tokens without the blocks: %v", r.names[w.seq], w.n, err)
		}
	}
	parts := []string{strings.Join(work, " ")}
	add := func(what string, ss []*seq) {
		if len(ss) == 0 {
			return
		}
		var names []string
		for _, s := range ss {
			names = append(names, r.names[s])
		}
		parts = append(parts, what+" "+strings.Join(names, ","))
	}
	add("preempt", p.preempted)
	add("fail", p.failed)
	r.sc.commit(p)
	var forks, done []*seq
	for _, w := range p.work {
		for _, c := range w.forks {
			r.names[c] = fmt.Sprintf("%s.%d", r.names[w.seq], c.index)
		}
		forks = append(forks, w.forks...)
		if !w.logits {
			continue
		}
		for _, s := range append([]*seq{w.seq}, w.forks...) {
			s.gen++
			if s.gen >= s.g.req.MaxTokens {
				r.sc.finish(s)
				done = append(done, s)
				continue
			}
			s.tokens = append(s.tokens, int32(1000+s.gen))
		}
	}
	add("fork", forks)
	add("done", done)
	return strings.Join(parts, " | ")
}

// run steps until the scheduler is idle (at most 100 steps) and returns
// the steps' descriptions; then every block must be free again.
func (r *schedRig) run() []string {
	r.t.Helper()
	var steps []string
	for i := 0; !r.sc.idle(); i++ {
		if i == 100 {
			r.t.Fatalf("not idle after 100 steps: %q", steps)
		}
		steps = append(steps, r.step())
	}
	if free := r.pool.FreeBlocks(); free != r.pool.Blocks() {
		r.t.Errorf("idle with %d of %d blocks free", free, r.pool.Blocks())
	}
	return steps
}

// tokens returns n prompt tokens starting at from (distinct prompts take
// distinct ranges).
func tokens(from, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(from + i)
	}
	return out
}

// repeat is n copies of step.
func repeat(step string, n int) []string { return slices.Repeat([]string{step}, n) }

func TestSched(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		blocks, budget, maxSeqs int
		// setup queues the requests and may run steps of its own,
		// returning their descriptions.
		setup func(r *schedRig) []string
		want  []string
	}{{
		name: "a prompt then decodes", blocks: 4, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string { r.submit("A", tokens(1, 5), 1, 3); return nil },
		want:  []string{"A:5", "A:1", "A:1 | done A"},
	}, {
		name: "chunked prefill under the token budget", blocks: 4, budget: 8, maxSeqs: 8,
		setup: func(r *schedRig) []string { r.submit("A", tokens(1, 20), 1, 2); return nil },
		want:  []string{"A:8", "A:8", "A:4", "A:1 | done A"},
	}, {
		name: "decodes first, then a prompt chunk in what the budget leaves", blocks: 8, budget: 8, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 4), 1, 4)
			r.submit("B", tokens(100, 20), 1, 1)
			return nil
		},
		want: []string{"A:4 B:4", "A:1 B:7", "A:1 B:7", "A:1 B:2 | done A,B"},
	}, {
		name: "several prompts in one step", blocks: 8, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 3), 1, 1)
			r.submit("B", tokens(100, 4), 1, 1)
			r.submit("C", tokens(200, 5), 1, 1)
			return nil
		},
		want: []string{"A:3 B:4 C:5 | done A,B,C"},
	}, {
		name: "max running sequences holds the rest in the queue", blocks: 8, budget: 64, maxSeqs: 2,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 3), 1, 2)
			r.submit("B", tokens(100, 3), 1, 1)
			r.submit("C", tokens(200, 3), 1, 1)
			return nil
		},
		want: []string{"A:3 B:3 | done B", "A:1 C:3 | done A,C"},
	}, {
		name: "waiting requests start in arrival order", blocks: 8, budget: 4, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 4), 1, 1)
			r.submit("B", tokens(100, 2), 1, 1)
			r.submit("C", tokens(200, 2), 1, 1)
			return nil
		},
		want: []string{"A:4 | done A", "B:2 C:2 | done B,C"},
	}, {
		name: "a running prompt takes the budget before a new one", blocks: 8, budget: 6, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 10), 1, 1)
			r.submit("B", tokens(100, 3), 1, 1)
			return nil
		},
		want: []string{"A:6", "A:4 B:2 | done A", "B:1 | done B"},
	}, {
		name: "prefix hit: a repeated prompt takes the cached blocks", blocks: 8, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 40), 1, 1)
			steps := []string{r.step()}
			r.submit("B", tokens(1, 40), 1, 1)
			return steps
		},
		want: []string{"A:40 | done A", "B:8+32 | done B"},
	}, {
		name: "prefix hit of whole blocks only", blocks: 8, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 40), 1, 1)
			steps := []string{r.step()}
			r.submit("B", append(tokens(1, 20), tokens(500, 20)...), 1, 1)
			return steps
		},
		want: []string{"A:40 | done A", "B:24+16 | done B"},
	}, {
		name: "a prompt of whole blocks leaves its last token to compute", blocks: 8, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 32), 1, 1)
			steps := []string{r.step()}
			r.submit("B", tokens(1, 32), 1, 1)
			return steps
		},
		want: []string{"A:32 | done A", "B:16+16 | done B"},
	}, {
		name: "no prefix hit for another prompt", blocks: 8, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 40), 1, 1)
			steps := []string{r.step()}
			r.submit("B", tokens(2, 40), 1, 1)
			return steps
		},
		want: []string{"A:40 | done A", "B:40 | done B"},
	}, {
		name: "a prefix still being computed is not a hit", blocks: 8, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 40), 1, 2)
			r.submit("B", tokens(1, 40), 1, 1)
			return nil
		},
		// B starts in A's step: A's blocks enter the cache only once
		// computed, so B computes its whole prompt (24 tokens, then 16).
		want: []string{"A:40 B:24", "A:1 B:16 | done A,B"},
	}, {
		name: "preemption takes the newest running sequence", blocks: 3, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 16), 1, 3)
			r.submit("B", tokens(100, 16), 1, 3)
			r.submit("C", tokens(200, 15), 1, 3)
			return nil
		},
		// A needs a second block at its first decode: C, the newest, gives
		// up its block; then B needs one and is itself the newest. When A
		// is done, B comes back first, taking its full block from the
		// prefix cache, and C recomputes its prompt and its one token.
		// C needs a second block at its decode and gives way to B again.
		want: []string{"A:16 B:16 C:15", "A:1 | preempt C,B", "A:1 | done A", "B:1+16 C:16",
			"B:1 | preempt C | done B", "C:1+16 | done C"},
	}, {
		name: "a preempted sequence goes before older waiting ones", blocks: 2, budget: 64, maxSeqs: 2,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 16), 1, 2)
			r.submit("B", tokens(100, 15), 1, 2)
			r.submit("C", tokens(200, 3), 1, 1)
			return nil
		},
		want: []string{"A:16 B:15", "A:1 | preempt B | done A", "B:16 C:3 | done B,C"},
	}, {
		name: "preempted work is recomputed with what it generated", blocks: 2, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 16), 1, 2)
			r.submit("B", tokens(100, 10), 1, 3)
			return nil
		},
		// B loses its block with one token generated, cannot come back in
		// the same step (A holds both blocks), and recomputes 10+1 tokens.
		want: []string{"A:16 B:10", "A:1 | preempt B | done A", "B:11", "B:1 | done B"},
	}, {
		// Validate refuses such a request (prompt plus max_tokens beyond
		// the pool); the scheduler still ends it rather than loop.
		name: "a sequence that outgrows the pool alone is preempted by itself and fails", blocks: 1, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string { r.submit("A", tokens(1, 15), 1, 4); return nil },
		want:  []string{"A:15", "A:1", " | preempt A | fail A"},
	}, {
		name: "prompt plus max_tokens as large as the pool completes", blocks: 1, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string { r.submit("A", tokens(1, 13), 1, 3); return nil },
		want:  []string{"A:13", "A:1", "A:1 | done A"},
	}, {
		name: "samples that fit the pool alone but not together take turns", blocks: 2, budget: 64, maxSeqs: 8,
		// Each sample needs both blocks by its end (16 + 16 = 32), so the
		// second is preempted and runs once the first is done, its
		// prompt's block from the prefix cache.
		setup: func(r *schedRig) []string { r.submit("A", tokens(1, 16), 2, 16); return nil },
		want: slices.Concat([]string{"A:16 | fork A.1", "A:1 | preempt A.1"}, repeat("A:1", 13), []string{"A:1 | done A", "A.1:1+16"},
			repeat("A.1:1", 13), []string{"A.1:1 | done A.1"}),
	}, {
		name: "n samples fork once the prompt's logits are ready", blocks: 8, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string { r.submit("A", tokens(1, 5), 3, 2); return nil },
		want:  []string{"A:5 | fork A.1,A.2", "A:1 A.1:1 A.2:1 | done A,A.1,A.2"},
	}, {
		name: "forks wait for the prompt's last chunk", blocks: 8, budget: 8, maxSeqs: 8,
		setup: func(r *schedRig) []string { r.submit("A", tokens(1, 12), 2, 2); return nil },
		want:  []string{"A:8", "A:4 | fork A.1", "A:1 A.1:1 | done A,A.1"},
	}, {
		name: "forks of max_tokens 1 all end with the prompt", blocks: 8, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string { r.submit("A", tokens(1, 20), 4, 1); return nil },
		want:  []string{"A:20 | fork A.1,A.2,A.3 | done A,A.1,A.2,A.3"},
	}, {
		name: "forks share the prompt's blocks", blocks: 3, budget: 64, maxSeqs: 8,
		setup: func(r *schedRig) []string { r.submit("A", tokens(1, 16), 2, 2); return nil },
		// The 16-token prompt fills one block that both samples share; each
		// then takes a block of its own: 3 in all.
		want: []string{"A:16 | fork A.1", "A:1 A.1:1 | done A,A.1"},
	}, {
		name: "budget spent on decodes admits nothing new", blocks: 8, budget: 2, maxSeqs: 8,
		setup: func(r *schedRig) []string {
			r.submit("A", tokens(1, 1), 1, 3)
			r.submit("B", tokens(100, 1), 1, 3)
			steps := []string{r.step()}
			r.submit("C", tokens(200, 1), 1, 1)
			return steps
		},
		want: []string{"A:1 B:1", "A:1 B:1", "A:1 B:1 | done A,B", "C:1 | done C"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSchedRig(t, tc.blocks, tc.budget, tc.maxSeqs)
			got := tc.setup(r)
			got = append(got, r.run()...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("steps:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

// TestSchedCancel drops sequences as the batcher does for requests whose
// context ended: mid-prefill, waiting, and one whose going lets a waiting
// one start.
func TestSchedCancel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxSeqs int
		before  int // steps before the drop
		drop    string
		want    []string // the steps after it
	}{
		{"mid-prefill", 8, 1, "A", []string{"B:3 | done B"}},
		{"while waiting", 1, 1, "B", []string{"A:8", "A:8", "A:8", "A:8", "A:1 | done A"}},
		{"a running one lets a waiting one start", 1, 2, "A", []string{"B:3 | done B"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSchedRig(t, 8, 8, tc.maxSeqs)
			r.submit("A", tokens(1, 40), 1, 2)
			r.submit("B", tokens(100, 3), 1, 1)
			for range tc.before {
				r.step()
			}
			dropped := r.sc.drop(func(s *seq) bool { return r.names[s] == tc.drop }, nil)
			if len(dropped) != 1 || r.names[dropped[0]] != tc.drop || dropped[0].kv.Blocks() != 0 {
				t.Fatalf("dropped %d sequences, want %s with its blocks freed", len(dropped), tc.drop)
			}
			if got := r.run(); !slices.Equal(got, tc.want) {
				t.Errorf("steps after the drop:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}
