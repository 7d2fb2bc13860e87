package engine_test

import (
	"bytes"
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
)

// TestRefusesUnsupportedType relabels one matrix as Q3_K, a type the CPU
// backend does not multiply: loading must fail naming the tensor and type.
func TestRefusesUnsupportedType(t *testing.T) {
	f, err := gguf.Open(shared.Path(t, "models/random/llama-Q4_K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := gguf.NewWriter()
	for _, kv := range f.KV {
		w.Set(kv.Key, kv.Value)
	}
	for _, tn := range f.Tensors {
		typ, data := tn.Type, tn.Data
		if tn.Name == "blk.0.attn_q.weight" {
			typ = gguf.Q3_K
			data = make([]byte, typ.RowSize(int(tn.Shape[0]))*tn.Rows())
		}
		if err := w.AddTensor(tn.Name, typ, tn.Shape, data); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	g, err := gguf.Parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.FromFile(g)
	if err != nil {
		t.Fatal(err)
	}
	be := cpu.New(0)
	defer be.Close()
	_, err = engine.New(m, be, kernels.OrderLlama)
	if err == nil || !strings.Contains(err.Error(), `tensor "blk.0.attn_q.weight" has type Q3_K`) {
		t.Fatalf("got %v", err)
	}
}

// TestPromptBatchEqualsSteps: a prompt fed in one batch and fed token by
// token give the same final logits.
func TestPromptBatchEqualsSteps(t *testing.T) {
	m, e := open(t, "models/random/qwen2-F32.gguf", best, kernels.OrderLlama)
	prompt := []int32{1, 403, 407, 261, 378, 9, 77}
	batch, err := e.Forward(prompt, e.NewCache(0), false)
	if err != nil {
		t.Fatal(err)
	}
	batch = append([]float32(nil), batch...)
	kv := e.NewCache(0)
	var step []float32
	for i := range prompt {
		if step, err = e.Forward(prompt[i:i+1], kv, false); err != nil {
			t.Fatal(err)
		}
	}
	if d, i := maxDiff(step, batch); d > 1e-4 {
		t.Fatalf("logit %d differs by %g", i, d)
	}
	if kv.Len() != len(prompt) || len(step) != m.Vocab {
		t.Fatalf("cache holds %d positions, logits %d", kv.Len(), len(step))
	}
}

func TestForwardErrors(t *testing.T) {
	m, e := open(t, "models/stories260K.gguf", best, kernels.OrderLlama)
	if _, err := e.Forward([]int32{1, int32(m.Vocab)}, e.NewCache(0), false); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Errorf("token outside the vocabulary: %v", err)
	}
	if _, err := e.Forward(nil, e.NewCache(0), false); err == nil {
		t.Error("no tokens: no error")
	}
	kv := e.NewCache(4)
	if _, err := e.Forward([]int32{1, 2, 3, 4, 5}, kv, false); err == nil || !strings.Contains(err.Error(), "exceed") {
		t.Errorf("overfull cache: %v", err)
	}
	// A Step batches sequences of one storage only, and refuses others
	// before touching any cache.
	pool, err := engine.NewKVPool(engine.KVPoolConfig{Layers: len(m.Layers), Width: m.KVHeads * m.HeadDim, Bytes: 1 << 20, F32: true})
	if err != nil {
		t.Fatal(err)
	}
	s, flat := pool.NewSeq(), e.NewCache(0)
	if err := s.Reserve(1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Step([]engine.SeqInput{{KV: s, Tokens: []int32{1}}, {KV: flat, Tokens: []int32{1}}}); err == nil || !strings.Contains(err.Error(), "different KV caches") || s.Len()+flat.Len() != 0 {
		t.Errorf("sequences of two caches in one step: %v, lengths %d and %d", err, s.Len(), flat.Len())
	}
	if _, err := e.Generate(context.Background(), nil, 3, e.NewCache(0), engine.Greedy{}, func(int32) bool { return true }); err == nil {
		t.Error("empty prompt: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	ids, err := e.Generate(ctx, []int32{1}, 50, e.NewCache(0), engine.Greedy{}, func(int32) bool {
		if n++; n == 3 {
			cancel()
		}
		return true
	})
	if err != context.Canceled || len(ids) != 3 {
		t.Errorf("cancelled generation: %d ids, %v", len(ids), err)
	}
}

func TestFlatCacheTruncate(t *testing.T) {
	c := engine.NewFlatCache(2, 3, 10)
	if err := c.Extend(4); err != nil {
		t.Fatal(err)
	}
	c.Put(1, 3, []float32{1, 2, 3}, []float32{4, 5, 6})
	// One block: position 3 of block 0 is the fourth row.
	kv := c.Storage()
	if kv.Width != 3 || kv.BlockSize != 10 || !slices.Equal(c.Table(0), []int32{0}) || kv.Type != kernels.KVF32 {
		t.Fatalf("storage %+v, table %v", kv, c.Table(0))
	}
	if k, v := kv.K32[1][9:12], kv.V32[1][9:12]; !slices.Equal(k, []float32{1, 2, 3}) || !slices.Equal(v, []float32{4, 5, 6}) {
		t.Fatalf("stored %v %v", k, v)
	}
	c.Truncate(2)
	if c.Len() != 2 {
		t.Fatalf("len %d after truncate", c.Len())
	}
	if err := c.Extend(8); err != nil || c.Len() != 10 {
		t.Fatalf("extend to the maximum: %v", err)
	}
	if err := c.Extend(1); err == nil {
		t.Fatal("extend past the maximum: no error")
	}
}

// TestThreadsDoNotChangeResults: the backend splits products by weight rows
// and attention by heads, so any thread count gives the same logits.
func TestThreadsDoNotChangeResults(t *testing.T) {
	for _, file := range []string{"models/random/llama-Q4_K_M.gguf", "models/random/qwen3-Q8_0.gguf", "models/random/llama-F16.gguf"} {
		m, err := models.Load(shared.Path(t, file))
		if err != nil {
			t.Fatal(err)
		}
		var want []float32
		for _, threads := range []int{1, 2, 3} {
			b := cpu.New(threads)
			e, err := engine.New(m, b, kernels.OrderLlama)
			if err != nil {
				t.Fatal(err)
			}
			kv := e.NewCache(0)
			logits, err := e.Forward([]int32{1, 403, 407, 261, 378, 5, 6, 7, 8}, kv, true)
			if err != nil {
				t.Fatal(err)
			}
			got := append([]float32(nil), logits...)
			if logits, err = e.Forward([]int32{42}, kv, false); err != nil {
				t.Fatal(err)
			}
			got = append(got, logits...)
			b.Close()
			if want == nil {
				want = got
			} else if d, i := maxDiff(got, want); d != 0 {
				t.Errorf("%s: %d threads: logit %d differs by %g from 1 thread", file, threads, i, d)
			}
		}
		m.Close()
	}
}

// TestStepInvariant: Step gives a sequence the same logits, bit for bit,
// alone or batched with others, with its prompt whole or in chunks, and with
// an f32 or fp16 pool alike between runs of the same pool type.
func TestStepInvariant(t *testing.T) {
	for _, rel := range []string{"models/stories260K.gguf", "models/random/qwen3-Q8_0.gguf", "models/random/llama-Q4_K_M.gguf"} {
		m, e := open(t, rel, best, kernels.OrderBatchInvariant)
		c := m.Config
		for _, f32 := range []bool{true, false} {
			pool, err := engine.NewKVPool(engine.KVPoolConfig{Layers: len(m.Layers), Width: c.KVHeads * c.HeadDim,
				Bytes: 8 << 20, F32: f32, ToHalf: e.B.ToHalf})
			if err != nil {
				t.Fatal(err)
			}
			prompt := []int32{1, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220}
			other := []int32{1, 33, 34, 35, 36, 37, 38, 39, 40}
			// Alone, the whole prompt.
			a := pool.NewSeq()
			if err := a.Reserve(len(prompt)); err != nil {
				t.Fatal(err)
			}
			l, err := e.Step([]engine.SeqInput{{KV: a, Tokens: prompt, Logits: true}})
			if err != nil {
				t.Fatal(err)
			}
			want := append([]float32(nil), l...)
			a.Free()
			// In chunks of 5, each step shared with another sequence.
			s, o := pool.NewSeq(), pool.NewSeq()
			if err := s.Reserve(len(prompt)); err != nil {
				t.Fatal(err)
			}
			if err := o.Reserve(len(other) + 10); err != nil {
				t.Fatal(err)
			}
			var got []float32
			for i := 0; i < len(prompt); i += 5 {
				chunk := prompt[i:min(i+5, len(prompt))]
				last := i+5 >= len(prompt)
				in := []engine.SeqInput{{KV: o, Tokens: other[:2], Logits: true}, {KV: s, Tokens: chunk, Logits: last}}
				other = other[2:]
				l, err := e.Step(in)
				if err != nil {
					t.Fatal(err)
				}
				if last {
					got = l[c.Vocab : 2*c.Vocab]
				}
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Errorf("%s f32=%v: logit %d batched and chunked %g, alone %g", rel, f32, i, got[i], want[i])
					break
				}
			}
			s.Free()
			o.Free()
		}
	}
}

// TestForwardStepSameOrder: an engine's Forward and Step sum in the order it
// was built with, so a prompt gives the same logits, bit for bit, through
// either (an f32 pool, as the flat cache stores f32).
func TestForwardStepSameOrder(t *testing.T) {
	prompt := []int32{1, 50, 60, 70, 80, 90, 100, 110, 120}
	for _, o := range []kernels.Order{kernels.OrderLlama, kernels.OrderBatchInvariant} {
		m, e := open(t, "models/random/qwen3-Q8_0.gguf", best, o)
		c := m.Config
		pool, err := engine.NewKVPool(engine.KVPoolConfig{Layers: len(m.Layers), Width: c.KVHeads * c.HeadDim,
			Bytes: 8 << 20, F32: true})
		if err != nil {
			t.Fatal(err)
		}
		s := pool.NewSeq()
		if err := s.Reserve(len(prompt)); err != nil {
			t.Fatal(err)
		}
		l, err := e.Step([]engine.SeqInput{{KV: s, Tokens: prompt, Logits: true}})
		if err != nil {
			t.Fatal(err)
		}
		step := append([]float32(nil), l...)
		fwd, err := e.Forward(prompt, e.NewCache(0), false)
		if err != nil {
			t.Fatal(err)
		}
		for i := range fwd {
			if math.Float32bits(fwd[i]) != math.Float32bits(step[i]) {
				t.Errorf("order %v: logit %d is %g through Forward, %g through Step", o, i, fwd[i], step[i])
				break
			}
		}
	}
}

// TestStepAllocs: once warmed up, decode steps of four sequences allocate
// nothing.
func TestStepAllocs(t *testing.T) {
	m, e := open(t, "models/random/qwen3-Q8_0.gguf", best, kernels.OrderBatchInvariant)
	c := m.Config
	pool, err := engine.NewKVPool(engine.KVPoolConfig{Layers: len(m.Layers), Width: c.KVHeads * c.HeadDim,
		Bytes: 8 << 20, ToHalf: e.B.ToHalf})
	if err != nil {
		t.Fatal(err)
	}
	in := make([]engine.SeqInput, 4)
	tok := []int32{5}
	for i := range in {
		s := pool.NewSeq()
		if err := s.Reserve(64); err != nil {
			t.Fatal(err)
		}
		in[i] = engine.SeqInput{KV: s, Tokens: tok, Logits: true}
	}
	step := func() {
		if _, err := e.Step(in); err != nil {
			t.Fatal(err)
		}
	}
	// Buffers that follow the context double as it grows: 33 positions
	// leave room for 64, past the 54 the measured steps reach.
	for range 32 {
		step()
	}
	if a := testing.AllocsPerRun(20, step); a != 0 {
		t.Errorf("%v allocations per step", a)
	}
}

// TestStepOutputRows: Step returns one row of logits per input that asks
// for them, in order, and none when no input asks, on a fresh engine and
// after steps that did or did not ask; each row is the one the sequence
// gets alone.
func TestStepOutputRows(t *testing.T) {
	m, e := open(t, "models/stories260K.gguf", cpu.Variants()[0], kernels.OrderBatchInvariant)
	c := m.Config
	pool, err := engine.NewKVPool(engine.KVPoolConfig{Layers: len(m.Layers), Width: c.KVHeads * c.HeadDim,
		Bytes: 8 << 20, ToHalf: e.B.ToHalf})
	if err != nil {
		t.Fatal(err)
	}
	a := []int32{1, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140}
	b := []int32{1, 33, 34, 35, 36, 37, 38}
	forward := func(all bool) []float32 {
		l, err := e.Forward(a[:4], e.NewCache(0), all)
		if err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), l...)
	}
	forwardAll, forwardLast := forward(true), forward(false)
	if len(forwardAll) != 4*c.Vocab || len(forwardLast) != c.Vocab {
		t.Fatalf("forward: %d logits for all rows, %d for the last", len(forwardAll), len(forwardLast))
	}
	seq := func(n int) *engine.Seq {
		s := pool.NewSeq()
		if err := s.Reserve(n); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// alone is the logits after tokens, run as one Step on a new sequence.
	alone := func(tokens []int32) []float32 {
		s := seq(len(tokens))
		defer s.Free()
		l, err := e.Step([]engine.SeqInput{{KV: s, Tokens: tokens, Logits: true}})
		if err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), l...)
	}
	wantA5, wantA11, wantB7, wantA10 := alone(a[:5]), alone(a), alone(b), alone(a[:10])

	// A fresh engine, since the reference steps above asked for logits.
	e, err = engine.New(m, cpu.New(0), e.Order())
	if err != nil {
		t.Fatal(err)
	}
	sa, sb := seq(len(a)), seq(len(b))
	steps := []struct {
		in   []engine.SeqInput
		want [][]float32
	}{
		{[]engine.SeqInput{{KV: sa, Tokens: a[:3]}}, nil},
		{[]engine.SeqInput{{KV: sa, Tokens: a[3:5], Logits: true}, {KV: sb, Tokens: b[:4]}}, [][]float32{wantA5}},
		{[]engine.SeqInput{{KV: sb, Tokens: b[4:6]}, {KV: sa, Tokens: a[5:9]}}, nil},
		{[]engine.SeqInput{{KV: sb, Tokens: b[6:], Logits: true}, {KV: sa, Tokens: a[9:10], Logits: true}}, [][]float32{wantB7, wantA10}},
		{[]engine.SeqInput{{KV: sa, Tokens: a[10:], Logits: true}}, [][]float32{wantA11}},
	}
	for i, st := range steps {
		got, err := e.Step(st.in)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(st.want)*c.Vocab {
			t.Fatalf("step %d: %d logits, want %d rows of %d", i, len(got), len(st.want), c.Vocab)
		}
		for r, want := range st.want {
			if d, j := maxDiff(got[r*c.Vocab:(r+1)*c.Vocab], want); d != 0 {
				t.Errorf("step %d row %d: logit %d differs by %g from the sequence alone", i, r, j, d)
			}
		}
	}
	if sa.Len() != len(a) || sb.Len() != len(b) {
		t.Errorf("caches hold %d and %d positions, want %d and %d", sa.Len(), sb.Len(), len(a), len(b))
	}
	// Forward keeps its rows after Steps: all of them, or the last.
	for _, all := range []bool{true, false} {
		got, err := e.Forward(a[:4], e.NewCache(0), all)
		if err != nil {
			t.Fatal(err)
		}
		want := forwardAll
		if !all {
			want = forwardLast
		}
		if len(got) != len(want) {
			t.Fatalf("forward all=%v: %d logits, want %d", all, len(got), len(want))
		}
		if d, j := maxDiff(got, want); d != 0 {
			t.Errorf("forward all=%v after steps: logit %d differs by %g from a fresh engine's", all, j, d)
		}
	}
}
