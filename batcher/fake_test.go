package batcher

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// fakeRunner stands in for the engine: each sequence's cache grows by its
// tokens and every row asked for has its largest logit at token 3 ("▁a").
// gate, when set, holds each step until it receives; panicAt makes that
// step (counted from 1) panic.
type fakeRunner struct {
	vocab   int
	steps   atomic.Int64
	entered chan struct{}
	gate    chan struct{}
	panicAt int64
}

func (f *fakeRunner) Vocab() int   { return f.vocab }
func (f *fakeRunner) Context() int { return 256 }

func (f *fakeRunner) Step(in []engine.SeqInput) ([]float32, error) {
	n := f.steps.Add(1)
	select {
	case f.entered <- struct{}{}:
	default:
	}
	if f.gate != nil {
		<-f.gate
	}
	if n == f.panicAt {
		panic("injected fault")
	}
	var out []float32
	for _, s := range in {
		if err := s.KV.Extend(len(s.Tokens)); err != nil {
			return nil, err
		}
		if s.Logits {
			row := make([]float32, f.vocab)
			row[3] = 1
			out = append(out, row...)
		}
	}
	return out, nil
}

// fakeBatcher is a batcher on a fakeRunner, with a tokenizer of a handful
// of tokens and a pool of 16 blocks: no model, no engine.
func fakeBatcher(t *testing.T, f *fakeRunner, cfg Config) *Batcher {
	t.Helper()
	v := tokenizer.DefaultVocab("llama", "")
	v.Tokens = []string{"<unk>", "<s>", "</s>", "▁a", "b"}
	v.Types = []int32{tokenizer.TypeUnknown, tokenizer.TypeControl, tokenizer.TypeControl, tokenizer.TypeNormal, tokenizer.TypeNormal}
	tok, err := tokenizer.New(v)
	if err != nil {
		t.Fatal(err)
	}
	f.vocab = tok.VocabSize()
	pool, err := engine.NewKVPool(engine.KVPoolConfig{Layers: 1, Width: 1, F32: true, Bytes: engine.KVBytes(1, 1, 16*16, true)})
	if err != nil {
		t.Fatal(err)
	}
	b := New(f, tok, pool, cfg)
	t.Cleanup(b.Close)
	return b
}

// finish reads st to its end and returns its text and final error.
func finish(t *testing.T, st *Stream) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var text strings.Builder
	for {
		ev, ok := st.Next(ctx)
		if !ok {
			t.Fatal("the stream ended without a final event")
		}
		text.WriteString(ev.Text)
		if ev.Finished {
			return text.String(), ev.Err
		}
	}
}

// TestSchedQueueFull: with a request running and MaxQueue waiting, the next
// one is refused with KindQueueFull, and once the queue drains every
// accepted request completes.
func TestSchedQueueFull(t *testing.T) {
	f := &fakeRunner{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	b := fakeBatcher(t, f, Config{MaxQueue: 2, MaxSeqs: 1})
	release := sync.OnceFunc(func() { close(f.gate) })
	t.Cleanup(release) // before Close, which waits for the step
	req := Request{Prompt: []int32{1, 3}, MaxTokens: 2}
	var streams []*Stream
	st, err := b.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	streams = append(streams, st)
	<-f.entered // the first request runs, held in its step
	for range 2 {
		st, err := b.Submit(context.Background(), req)
		if err != nil {
			t.Fatalf("a request within MaxQueue was refused: %v", err)
		}
		streams = append(streams, st)
	}
	_, err = b.Submit(context.Background(), req)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindQueueFull || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("past MaxQueue: %v, want a KindQueueFull error", err)
	}
	release()
	for i, st := range streams {
		if text, err := finish(t, st); err != nil || text != " a a" {
			t.Errorf("request %d: %q, %v; want \" a a\"", i, text, err)
		}
	}
}

// TestStepPanic: a step that panics fails its requests with KindInternal,
// logs the stack once, and the batcher serves the next request.
func TestStepPanic(t *testing.T) {
	var log bytes.Buffer
	f := &fakeRunner{panicAt: 2}
	b := fakeBatcher(t, f, Config{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	st, err := b.Submit(context.Background(), Request{Prompt: []int32{1, 3}, MaxTokens: 4, N: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, err = finish(t, st)
	if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "injected fault") {
		t.Fatalf("the panicking step's request ended with %v, want a KindInternal error naming the panic", err)
	}
	st, err = b.Submit(context.Background(), Request{Prompt: []int32{1, 3}, MaxTokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	if text, err := finish(t, st); err != nil || text != " a a a" {
		t.Fatalf("the next request: %q, %v", text, err)
	}
	if n := strings.Count(log.String(), "injected fault"); n != 1 || !strings.Contains(log.String(), "goroutine ") {
		t.Errorf("the log names the panic %d times (want 1, with its stack):\n%s", n, log.String())
	}
	if s := b.Stats(); s.Running != 0 || s.KVUsage != 0 {
		t.Errorf("after the panic and the next request: %d running, KV usage %v", s.Running, s.KVUsage)
	}
}

// TestValidateKVRoom: one sample's prompt plus max_tokens must fit the
// whole pool (16 blocks of 16 here): exactly full is accepted, one more is
// refused naming max_tokens, and a prompt that fills the pool alone names
// the prompt. n does not change the bound: samples can take turns.
func TestValidateKVRoom(t *testing.T) {
	l := Limits{Vocab: 5, Context: 1024, MaxN: 16, MaxQueue: 256, BlockSize: 16, Blocks: 16, Capacity: 256}
	prompt := make([]int32, 6)
	for _, tc := range []struct {
		prompt, maxTokens, n int
		param                string // "" for accepted
	}{
		{6, 250, 1, ""},
		{6, 250, 4, ""},
		{6, 251, 1, "max_tokens"},
		{6, 1000, 1, "max_tokens"},
		{255, 1, 1, ""},
		{256, 1, 1, "prompt"},
	} {
		r := Request{Prompt: make([]int32, tc.prompt), MaxTokens: tc.maxTokens, N: tc.n}
		copy(r.Prompt, prompt)
		err := r.Validate(l)
		var e *Error
		switch {
		case tc.param == "" && err != nil:
			t.Errorf("prompt %d, max_tokens %d, n %d: %v, want accepted", tc.prompt, tc.maxTokens, tc.n, err)
		case tc.param != "" && (!errors.As(err, &e) || e.Kind != KindTooLong || e.Param != tc.param ||
			!strings.Contains(e.Msg, "256") || !strings.Contains(e.Msg, "--kv-cache-mem")):
			t.Errorf("prompt %d, max_tokens %d: %#v, want KindTooLong on %s naming the 256 positions and --kv-cache-mem", tc.prompt, tc.maxTokens, err, tc.param)
		}
	}
}

// TestValidateResume: resumed tokens need n = 1, must leave max_tokens
// something to generate, must be in the vocabulary, and with the prompt
// must fit the context.
func TestValidateResume(t *testing.T) {
	l := Limits{Vocab: 5, Context: 20, MaxN: 16, MaxQueue: 256, BlockSize: 16, Blocks: 16, Capacity: 256}
	for _, tc := range []struct {
		resume       []int32
		maxTokens, n int
		kind         Kind
		param        string // "" for accepted
	}{
		{[]int32{1, 2}, 5, 1, 0, ""},
		{[]int32{1, 2}, 5, 2, KindInvalid, "resume"},
		{[]int32{1, 2}, 2, 1, KindInvalid, "resume"},
		{[]int32{1, 5}, 5, 1, KindInvalid, "resume"},
		{make([]int32, 16), 17, 1, KindTooLong, "resume"},
	} {
		r := Request{Prompt: []int32{1, 2, 3, 4}, Resume: tc.resume, MaxTokens: tc.maxTokens, N: tc.n}
		err := r.Validate(l)
		var e *Error
		switch {
		case tc.param == "" && err != nil:
			t.Errorf("resume %v, max_tokens %d, n %d: %v, want accepted", tc.resume, tc.maxTokens, tc.n, err)
		case tc.param != "" && (!errors.As(err, &e) || e.Kind != tc.kind || e.Param != tc.param):
			t.Errorf("resume %v, max_tokens %d, n %d: %#v, want kind %v on %s", tc.resume, tc.maxTokens, tc.n, err, tc.kind, tc.param)
		}
	}
}

// TestFullPoolCompletes: a request whose prompt and max_tokens fill the
// pool (and the fake's context) exactly runs to its end, and so does the
// next one, with another prompt, while the first one's blocks all sit in
// the prefix cache: cached blocks give way.
func TestFullPoolCompletes(t *testing.T) {
	f := &fakeRunner{}
	b := fakeBatcher(t, f, Config{})
	for _, prompt := range [][]int32{{1, 3, 3, 3, 3, 3, 3, 3}, {1, 4, 4, 4, 4, 4, 4, 4}} {
		st, err := b.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 248, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		text, err := finish(t, st)
		if err != nil || text != strings.Repeat(" a", 248) {
			t.Fatalf("prompt %v: %d bytes of text, %v; want 248 tokens", prompt, len(text), err)
		}
	}
}

// TestSubmitAllAtomic: the queue counts sequences and admits whole
// requests. A request larger than the queue is refused as invalid (waiting
// cannot help), one that does not fit what is left gets ErrQueueFull, and
// no part of a refused request ever runs.
func TestSubmitAllAtomic(t *testing.T) {
	f := &fakeRunner{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	b := fakeBatcher(t, f, Config{MaxQueue: 4, MaxSeqs: 1})
	release := sync.OnceFunc(func() { close(f.gate) })
	t.Cleanup(release)
	req := Request{Prompt: []int32{1, 3}, MaxTokens: 2}
	reqs := func(k, n int) []Request {
		r := req
		r.N = n
		return slices.Repeat([]Request{r}, k)
	}
	var streams []*Stream
	st, err := b.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	streams = append(streams, st)
	<-f.entered // it runs, held in its step; the queue is empty

	for _, tc := range []struct {
		k, n  int
		param string
	}{{5, 1, "prompt"}, {3, 2, "prompt"}, {1, 5, "n"}} {
		_, err := b.SubmitAll(context.Background(), reqs(tc.k, tc.n))
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindInvalid || e.Param != tc.param || !strings.Contains(e.Msg, "--max-queue") {
			t.Errorf("%d prompts of n=%d into a queue of 4: %v, want KindInvalid on %s", tc.k, tc.n, err, tc.param)
		}
	}
	got, err := b.SubmitAll(context.Background(), reqs(1, 3))
	if err != nil {
		t.Fatalf("3 sequences into an empty queue of 4: %v", err)
	}
	streams = append(streams, got...)
	if _, err := b.SubmitAll(context.Background(), reqs(2, 1)); !errors.Is(err, ErrQueueFull) {
		t.Errorf("2 sequences with 1 place left: %v, want ErrQueueFull", err)
	}
	got, err = b.SubmitAll(context.Background(), reqs(1, 1))
	if err != nil {
		t.Fatalf("1 sequence with 1 place left: %v (a refused request kept its place)", err)
	}
	streams = append(streams, got...)
	release()
	for i, st := range streams {
		if _, err := finish(t, st); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	// 5 samples of 2 tokens: nothing of the refused requests ran.
	if s := b.Stats(); s.GenerationTokens != 10 {
		t.Errorf("%d tokens generated, want 10 (the accepted requests' only)", s.GenerationTokens)
	}
}
