package batcher_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/engine/sample"
	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// rig is a model loaded for the tests, with engines made on demand.
type rig struct {
	m   *models.Model
	tok *tokenizer.Tokenizer
}

func load(t *testing.T, rel string) *rig {
	t.Helper()
	m, err := models.Load(shared.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tok, err := tokenizer.FromGGUF(m.File)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{m: m, tok: tok}
}

// start returns a batcher on a fresh engine with a pool of the given number
// of 16-position blocks, closed when the test ends.
func (r *rig) start(t *testing.T, blocks int, cfg batcher.Config) (*batcher.Batcher, *engine.KVPool) {
	t.Helper()
	b := cpu.New(2)
	t.Cleanup(b.Close)
	e, err := engine.New(r.m, b, kernels.OrderBatchInvariant)
	if err != nil {
		t.Fatal(err)
	}
	// The model's own pool: a sliding-window model's layer groups.
	pool, err := e.NewKVPool(e.KVBytes(16*blocks, false), false)
	if err != nil {
		t.Fatal(err)
	}
	bt := batcher.New(e, r.tok, pool, cfg)
	t.Cleanup(bt.Close)
	return bt, pool
}

// result is what one request produced.
type result struct {
	ids    [][]int32
	lps    [][]float32 // the tokens' log-probabilities, when asked for
	text   []string
	pieces [][]string // each token's event's text
	finish []string
	usage  *batcher.Usage
	err    error
}

func collect(st *batcher.Stream, n int) result {
	res := result{ids: make([][]int32, n), lps: make([][]float32, n), text: make([]string, n), pieces: make([][]string, n), finish: make([]string, n)}
	for {
		ev, ok := st.Next(context.Background())
		if !ok {
			return res
		}
		if ev.Err != nil {
			res.err = ev.Err
		}
		if ev.Token >= 0 {
			res.ids[ev.Index] = append(res.ids[ev.Index], ev.Token)
			res.lps[ev.Index] = append(res.lps[ev.Index], ev.Logprob)
			res.pieces[ev.Index] = append(res.pieces[ev.Index], ev.Text)
		}
		res.text[ev.Index] += ev.Text
		if ev.Finish != "" {
			res.finish[ev.Index] = ev.Finish
		}
		if ev.Usage != nil {
			res.usage = ev.Usage
		}
	}
}

func run(t *testing.T, b *batcher.Batcher, r batcher.Request) result {
	t.Helper()
	st, err := b.Submit(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return collect(st, max(r.N, 1))
}

// prompts returns n prompts of different lengths (1 to 60 tokens) of
// random ids after BOS.
func prompts(r *rig, n int, seed uint64) [][]int32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([][]int32, n)
	for i := range out {
		p := []int32{r.tok.BOS()}
		for range rng.IntN(60) {
			p = append(p, int32(3+rng.IntN(r.m.Vocab-3)))
		}
		out[i] = p
	}
	return out
}

// alone generates each request by itself, one after another, as the
// reference.
func alone(t *testing.T, r *rig, reqs []batcher.Request) []result {
	b, _ := r.start(t, 512, batcher.Config{})
	out := make([]result, len(reqs))
	for i, q := range reqs {
		out[i] = run(t, b, q)
		if out[i].err != nil {
			t.Fatal(out[i].err)
		}
	}
	return out
}

// together submits the requests to b from goroutines with staggered
// arrivals and returns their results.
func together(t *testing.T, b *batcher.Batcher, reqs []batcher.Request, seed uint64) []result {
	rng := rand.New(rand.NewPCG(seed, 2))
	delays := make([]time.Duration, len(reqs))
	for i := range delays {
		delays[i] = time.Duration(rng.IntN(30)) * time.Millisecond
	}
	out := make([]result, len(reqs))
	var wg sync.WaitGroup
	for i, q := range reqs {
		wg.Go(func() {
			time.Sleep(delays[i])
			st, err := b.Submit(context.Background(), q)
			if err != nil {
				out[i].err = err
				return
			}
			out[i] = collect(st, max(q.N, 1))
		})
	}
	wg.Wait()
	return out
}

func greedyReqs(ps [][]int32, maxTokens int) []batcher.Request {
	reqs := make([]batcher.Request, len(ps))
	for i, p := range ps {
		reqs[i] = batcher.Request{Prompt: p, MaxTokens: maxTokens + i%5, IgnoreEOS: true, Logprobs: 1}
	}
	return reqs
}

func same(t *testing.T, what string, got, want []result) {
	t.Helper()
	for i := range want {
		if got[i].err != nil {
			t.Errorf("%s: request %d: %v", what, i, got[i].err)
			continue
		}
		for j := range want[i].ids {
			if !slices.Equal(got[i].ids[j], want[i].ids[j]) {
				t.Errorf("%s: request %d sample %d: %v, alone %v", what, i, j, got[i].ids[j], want[i].ids[j])
			}
			// The log-probabilities come from the logits: equal bits
			// show the logits were the same, not just their argmax.
			if !slices.Equal(got[i].lps[j], want[i].lps[j]) {
				t.Errorf("%s: request %d sample %d: log-probabilities %v, alone %v", what, i, j, got[i].lps[j], want[i].lps[j])
			}
		}
	}
}

// TestBatchedEqualsAlone: greedy generation of 1 to 32 concurrent requests
// with different prompt lengths and arrival times gives, token for token,
// what each gives alone; on stories260K, on a random qwen3 of another shape,
// on a random phi3 (fused weights, LongRoPE), and on random gemma2 and gemma3
// (sliding windows of 8 positions, which prompts of up to 61 tokens and 12
// more generated cross).
func TestBatchedEqualsAlone(t *testing.T) {
	for _, model := range []string{"models/stories260K.gguf", "models/random/qwen3-Q8_0.gguf", "models/random-families/phi3-Q8_0.gguf",
		"models/random-families/gemma2-Q8_0.gguf", "models/random-families/gemma3-Q8_0.gguf"} {
		t.Run(model, func(t *testing.T) {
			r := load(t, model)
			reqs := greedyReqs(prompts(r, 32, 7), 12)
			want := alone(t, r, reqs)
			for _, n := range []int{1, 2, 5, 13, 32} {
				// A small token budget splits prompts into chunks.
				b, pool := r.start(t, 512, batcher.Config{MaxBatchTokens: 24})
				got := together(t, b, reqs[:n], uint64(n))
				same(t, fmt.Sprintf("%d requests", n), got, want[:n])
				if u := pool.Usage(); u != 0 {
					t.Errorf("%d requests: %.2f of the pool still held", n, u)
				}
			}
		})
	}
}

// TestPreemption: with a pool too small for all requests at once, the most
// recent are preempted and recomputed, and every request still gets its
// output alone.
func TestPreemption(t *testing.T) {
	r := load(t, "models/stories260K.gguf")
	reqs := greedyReqs(prompts(r, 12, 8), 40)
	want := alone(t, r, reqs)
	b, pool := r.start(t, 14, batcher.Config{})
	got := together(t, b, reqs, 3)
	same(t, "small pool", got, want)
	if s := b.Stats(); s.Preemptions == 0 {
		t.Errorf("no preemption with %d blocks: %+v", pool.Blocks(), s)
	}
	if u := pool.Usage(); u != 0 {
		t.Errorf("%.2f of the pool still held", u)
	}
}

// TestSeededStreamAnywhere: a seeded sampled sample draws token i from
// (seed, i) alone (issue 14), so it is the same alone, beside other
// requests, after preemption and recomputation, and resumed on another
// batcher from its first 15 tokens.
func TestSeededStreamAnywhere(t *testing.T) {
	r := load(t, "models/stories260K.gguf")
	ps := prompts(r, 12, 9)
	reqs := make([]batcher.Request, len(ps))
	for i, p := range ps {
		// Request 0 is the one followed throughout; the rest are
		// sampled too, with seeds of their own, so each of them checks
		// the same whenever it is the one preempted.
		reqs[i] = batcher.Request{Prompt: p, MaxTokens: 40, IgnoreEOS: true, Logprobs: 1,
			Sampling: sample.Params{Temperature: 0.8, Seed: 7 + uint64(i)*100, HasSeed: true}}
	}
	want := alone(t, r, reqs)

	b, _ := r.start(t, 512, batcher.Config{MaxBatchTokens: 24})
	same(t, "beside others", together(t, b, reqs, 4), want)

	b, pool := r.start(t, 14, batcher.Config{})
	same(t, "small pool", together(t, b, reqs, 5), want)
	if s := b.Stats(); s.Preemptions == 0 {
		t.Errorf("no preemption with %d blocks: %+v", pool.Blocks(), s)
	}

	const sent = 15
	full := want[0]
	if len(full.ids[0]) != 40 {
		t.Fatalf("the reference generated %d tokens, want 40", len(full.ids[0]))
	}
	if slices.Equal(full.ids[0][sent:], slices.Repeat(full.ids[0][sent:sent+1], 40-sent)) {
		t.Fatalf("the reference repeats one token: %v", full.ids[0])
	}
	q := reqs[0]
	q.Resume = full.ids[0][:sent]
	b, pool = r.start(t, 64, batcher.Config{})
	got := run(t, b, q)
	if got.err != nil {
		t.Fatal(got.err)
	}
	if !slices.Equal(got.ids[0], full.ids[0][sent:]) || !slices.Equal(got.lps[0], full.lps[0][sent:]) {
		t.Errorf("resumed after %d tokens: %v (log-probabilities %v), uninterrupted %v (%v)", sent, got.ids[0], got.lps[0], full.ids[0][sent:], full.lps[0][sent:])
	}
	if before := strings.Join(full.pieces[0][:sent], ""); before+got.text[0] != full.text[0] {
		t.Errorf("text sent before %q and resumed %q, uninterrupted %q", before, got.text[0], full.text[0])
	}
	if got.finish[0] != batcher.FinishLength || got.usage.CompletionTokens != 40-sent {
		t.Errorf("resumed: finish %q, usage %+v; want length and %d completion tokens", got.finish[0], got.usage, 40-sent)
	}
	if u := pool.Usage(); u != 0 {
		t.Errorf("%.2f of the pool still held", u)
	}
}

// TestPrefixCache: a request sharing an earlier one's prompt prefix gets
// the output it gets alone, and the counters show its whole blocks found in
// the cache, not recomputed; on stories260K, and on a random gemma3 whose
// sliding layers (window 8) released the first block, and find the second,
// which holds the window, in the cache.
func TestPrefixCache(t *testing.T) {
	for _, model := range []string{"models/stories260K.gguf", "models/random-families/gemma3-Q8_0.gguf"} {
		t.Run(model, func(t *testing.T) {
			r := load(t, model)
			p := prompts(r, 1, 9)[0]
			for len(p) < 50 {
				p = append(p, p[1:]...)
			}
			first := batcher.Request{Prompt: p[:50], MaxTokens: 8, IgnoreEOS: true}
			second := batcher.Request{Prompt: append(slices.Clone(p[:40]), 77, 78, 79), MaxTokens: 8, IgnoreEOS: true}
			want := alone(t, r, []batcher.Request{second})
			b, _ := r.start(t, 64, batcher.Config{})
			run(t, b, first)
			before := b.Stats()
			got := run(t, b, second)
			after := b.Stats()
			same(t, "prefix", []result{got}, want)
			hits := after.PrefixHits - before.PrefixHits
			if hits != 32 || got.usage.CachedTokens != 32 {
				t.Errorf("prefix hits %d, cached tokens %d; want the two whole blocks of the shared 40 tokens, 32", hits, got.usage.CachedTokens)
			}
			if computed := after.PromptTokens - before.PromptTokens; computed != int64(len(second.Prompt)-32) {
				t.Errorf("%d prompt tokens computed, want %d", computed, len(second.Prompt)-32)
			}
		})
	}
}

// TestSamplesShareThePrompt: n samples of one prompt each equal a request
// alone with that sample's seed, and all blocks return.
func TestSamplesShareThePrompt(t *testing.T) {
	r := load(t, "models/stories260K.gguf")
	p := prompts(r, 1, 10)[0]
	sp := sample.Params{Temperature: 0.9, Seed: 42, HasSeed: true}
	b, pool := r.start(t, 64, batcher.Config{})
	got := run(t, b, batcher.Request{Prompt: p, MaxTokens: 20, N: 4, Sampling: sp, IgnoreEOS: true})
	for i := range 4 {
		one := sp
		one.Seed += uint64(i)
		want := run(t, b, batcher.Request{Prompt: p, MaxTokens: 20, Sampling: one, IgnoreEOS: true})
		if !slices.Equal(got.ids[i], want.ids[0]) {
			t.Errorf("sample %d: %v, alone %v", i, got.ids[i], want.ids[0])
		}
	}
	if got.usage.CompletionTokens != 80 {
		t.Errorf("usage %+v", got.usage)
	}
	if u := pool.Usage(); u != 0 {
		t.Errorf("%.2f of the pool still held", u)
	}
}

// TestCancelReturnsBlocks: requests cancelled at random points, while
// waiting or generating, end with the context's error and leave every block
// free.
func TestCancelReturnsBlocks(t *testing.T) {
	r := load(t, "models/stories260K.gguf")
	b, pool := r.start(t, 40, batcher.Config{MaxBatchTokens: 32})
	rng := rand.New(rand.NewPCG(11, 12))
	for round := range 20 {
		reqs := greedyReqs(prompts(r, 8, uint64(round)), 30)
		var wg sync.WaitGroup
		for i, q := range reqs {
			ctx, cancel := context.WithCancel(context.Background())
			after := time.Duration(rng.IntN(20)) * time.Millisecond
			wg.Go(func() {
				defer cancel()
				st, err := b.Submit(ctx, q)
				if err != nil {
					t.Errorf("round %d request %d: %v", round, i, err)
					return
				}
				time.AfterFunc(after, cancel)
				res := collect(st, 1)
				if res.err != nil && !errors.Is(res.err, context.Canceled) {
					t.Errorf("round %d request %d: %v", round, i, res.err)
				}
			})
		}
		wg.Wait()
		waitIdle(t, b)
		if u := pool.Usage(); u != 0 {
			t.Fatalf("round %d: %.2f of the pool still held after cancelling", round, u)
		}
	}
}

// waitIdle waits for the batcher to have nothing running or waiting.
func waitIdle(t *testing.T, b *batcher.Batcher) {
	t.Helper()
	for range 500 {
		if s := b.Stats(); s.Running == 0 && s.Waiting == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("still busy: %+v", b.Stats())
}

// TestStopConditions: stop strings end a sample without their text, also
// across tokens; max tokens and end-of-generation end it too.
func TestStopConditions(t *testing.T) {
	r := load(t, "models/stories260K.gguf")
	b, _ := r.start(t, 64, batcher.Config{})
	prompt := append([]int32{r.tok.BOS()}, r.tok.Encode("Once upon a time", false, false)...)
	full := run(t, b, batcher.Request{Prompt: prompt, MaxTokens: 40})
	text := full.text[0]
	if full.finish[0] == "" || len(text) < 20 {
		t.Fatalf("unstopped generation %q (%s)", text, full.finish[0])
	}
	// A stop string from the middle of the text, spanning tokens.
	stop := text[10:16]
	got := run(t, b, batcher.Request{Prompt: prompt, MaxTokens: 40, Stop: []string{"zzz", stop}})
	if want := text[:10]; got.text[0] != want || got.finish[0] != batcher.FinishStop {
		t.Errorf("stop %q: %q (%s), want %q", stop, got.text[0], got.finish[0], want)
	}
	got = run(t, b, batcher.Request{Prompt: prompt, MaxTokens: 3})
	if len(got.ids[0]) != 3 || got.finish[0] != batcher.FinishLength || got.usage.CompletionTokens != 3 {
		t.Errorf("max tokens 3: %v %s %+v", got.ids[0], got.finish[0], got.usage)
	}
}

// TestQueueFull: submissions beyond the waiting queue fail at once with
// ErrQueueFull.
func TestQueueFull(t *testing.T) {
	r := load(t, "models/stories260K.gguf")
	b, _ := r.start(t, 64, batcher.Config{MaxQueue: 2, MaxSeqs: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	full := 0
	for range 20 {
		_, err := b.Submit(ctx, batcher.Request{Prompt: []int32{1, 5, 6}, MaxTokens: 200, IgnoreEOS: true})
		if errors.Is(err, batcher.ErrQueueFull) {
			full++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if full == 0 {
		t.Errorf("20 submissions into a queue of 2 never failed")
	}
	if _, err := b.Submit(ctx, batcher.Request{Prompt: nil, MaxTokens: 1}); !errors.Is(err, batcher.ErrInvalid) {
		t.Errorf("empty prompt: %v", err)
	}
}
