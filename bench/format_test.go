package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/engine/constrain"
	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// ordersSchema is the format tests' schema: a customer and at least six
// orders, with objects, bounded and free strings, an e-mail address,
// integers, numbers, booleans and arrays, long enough that a sample never
// ends before its hundredth token.
func ordersSchema(tb testing.TB) []byte {
	s, err := os.ReadFile("testdata/orders.schema.json")
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// formatEngine loads the model at path for the serving path on every CPU,
// closed when tb ends.
func formatEngine(tb testing.TB, path string) (*engine.Engine, *tokenizer.Tokenizer) {
	tb.Helper()
	m, err := models.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	tok, err := tokenizer.FromGGUF(m.File)
	if err != nil {
		tb.Fatal(err)
	}
	be := cpu.New(0)
	tb.Cleanup(be.Close)
	e, err := engine.New(m, be, kernels.OrderBatchInvariant)
	if err != nil {
		tb.Fatal(err)
	}
	return e, tok
}

// TestMeasureFormat: both runs of a batch time their tokens, the
// constrained one follows the schema and starts after its compile, the
// batcher is idle again afterwards, and a schema whose outputs end before
// the tokens timed is an error that says so.
func TestMeasureFormat(t *testing.T) {
	e, tok := formatEngine(t, shared.Path(t, "models/random/llama-Q4_0.gguf"))
	bt, cfg, err := formatBatcher(e, tok, ordersSchema(t), nil, 3, 24)
	if err != nil {
		t.Fatal(err)
	}
	defer bt.Close()
	if cfg.From != 10 || cfg.Tokens != 24 || len(cfg.Prompts) != 3 || len(cfg.Prompts[2]) > 16 || slices.Equal(cfg.Prompts[0], cfg.Prompts[1]) {
		t.Fatalf("config %+v", cfg)
	}
	r, err := MeasureFormat(context.Background(), bt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.PlainTPS <= 0 || r.FormatTPS <= 0 || r.Ratio() <= 0 || r.PlainFirst <= 0 || r.Compile <= 0 || r.FormatFirst <= r.Compile ||
		r.PlainFirstOut <= 0 || r.PlainFirstOut >= r.PlainFirst || r.FormatFirstOut <= 0 || r.FormatFirstOut >= r.FormatFirst {
		t.Errorf("result %+v", r)
	}
	if !strings.HasPrefix(strings.TrimSpace(r.Text), `{"customer"`) {
		t.Errorf("constrained text %q", r.Text)
	}
	cfg.Temperature = 0
	if g, err := MeasureFormat(context.Background(), bt, cfg); err != nil || !strings.HasPrefix(strings.TrimSpace(g.Text), `{"customer"`) {
		t.Errorf("greedy: %q, %v", g.Text, err)
	}
	if st := bt.Stats(); st.Running != 0 || st.Waiting != 0 {
		t.Errorf("after the runs: %d running, %d waiting", st.Running, st.Waiting)
	}
	cfg.Schema = []byte(`{"type":"boolean"}`)
	if _, err := MeasureFormat(context.Background(), bt, cfg); err == nil || !strings.Contains(err.Error(), "longer outputs") {
		t.Errorf("a boolean schema: %v", err)
	}
	cfg.Tokens = cfg.From + 1
	if _, err := MeasureFormat(context.Background(), bt, cfg); err == nil {
		t.Error("one token timed: no error")
	}
}

// TestRunLocalFormat: with a schema every generation test carries its
// format runs, and the table shows them.
func TestRunLocalFormat(t *testing.T) {
	e, tok := formatEngine(t, shared.Path(t, "models/random/llama-Q4_0.gguf"))
	var log bytes.Buffer
	results, err := RunLocal(context.Background(), e, LocalConfig{Gens: []int{12}, Batches: []int{1, 2}, Reps: 2,
		Format: ordersSchema(t), Tok: tok}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("results %+v", results)
	}
	for _, r := range results {
		f := r.Format
		if f == nil || len(f.Runs) != 2 || f.From != 5 || f.To != 12 || f.FormatTPS <= 0 || f.PlainTPS <= 0 || f.Ratio <= 0 || f.CompileMs <= 0 {
			t.Fatalf("%s: format %+v", r.Test, f)
		}
	}
	var table bytes.Buffer
	WriteTable(&table, System{}, results)
	if !strings.Contains(table.String(), "| json t/s | free t/s | ratio | first +ms | compile ms | out +ms |") ||
		!strings.Contains(table.String(), "| tg12 b2 |") || !strings.Contains(log.String(), "tg12 b2 json: warm-up") {
		t.Errorf("table:\n%s\nlog:\n%s", table.String(), log.String())
	}
}

// BenchmarkFormat measures issue 16's acceptance: decode tokens/s over
// tokens 10 to 100 of a JSON-schema-constrained output against the same
// requests free (same prompts, seeds and sampling), at batch 1 and 16,
// through the batcher, and the first token's extra latency, the schema's
// compile included (also reported alone). Each iteration compiles the
// schema afresh, so every automaton state and mask is built during the
// run, as on a server's first request with that schema. Sampling at
// temperature 1 draws from every finite logit, which the masks make few;
// greedy sampling costs the same either way and leaves the masks' cost
// alone. The model is $GODWIT_BENCH_MODEL, else a tiny random one (a
// smoke test); for the acceptance, a Llama-3.2-1B-shaped Q4_0 model from
// gen-model:
//
//	godwit gen-model --arch llama --dim 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192 \
//		--vocab-from ../shared/vocab/ggml-vocab-llama-bpe.gguf --type Q4_0 -o /tmp/l1b-q4_0.gguf
//	GODWIT_BENCH_MODEL=/tmp/l1b-q4_0.gguf go test ./bench -run '^$' -bench '^BenchmarkFormat$' -benchtime 3x
func BenchmarkFormat(b *testing.B) {
	path := os.Getenv("GODWIT_BENCH_MODEL")
	if path == "" {
		path = shared.Path(b, "models/random/llama-Q4_0.gguf")
	}
	e, tok := formatEngine(b, path)
	schema := ordersSchema(b)
	for _, run := range []struct {
		n    int
		temp float32
	}{{1, 1}, {1, 0}, {16, 1}, {16, 0}} {
		b.Run(fmt.Sprintf("batch=%d/temp=%g", run.n, run.temp), func(b *testing.B) {
			bt, cfg, err := formatBatcher(e, tok, schema, nil, run.n, 101)
			if err != nil {
				b.Fatal(err)
			}
			defer bt.Close()
			cfg.Temperature = run.temp
			// The engine's first steps, and the batcher's vocabulary
			// trie, built on its first constrained request.
			if _, err := MeasureFormat(context.Background(), bt, cfg); err != nil {
				b.Fatal(err)
			}
			var runs []FormatResult
			for b.Loop() {
				r, err := MeasureFormat(context.Background(), bt, cfg)
				if err != nil {
					b.Fatal(err)
				}
				runs = append(runs, r)
				b.Logf("json %.2f, free %.2f tok/s, first %+.1f ms (compile %.1f, out %+.1f)",
					r.FormatTPS, r.PlainTPS, ms(r.FirstExtra()), ms(r.Compile), ms(r.FirstOutExtra()))
			}
			b.Logf("sample 0 of the last constrained run: %.300q", runs[len(runs)-1].Text)
			// Medians, as bench local reports.
			st := formatStats(runs, cfg)
			b.ReportMetric(st.PlainTPS, "free-tok/s")
			b.ReportMetric(st.FormatTPS, "json-tok/s")
			b.ReportMetric(st.Ratio, "ratio")
			b.ReportMetric(st.FirstExtraMs, "first+ms")
			b.ReportMetric(st.CompileMs, "compile-ms")
			b.ReportMetric(st.FirstOutExtraMs, "out+ms")
		})
	}
}

// BenchmarkFormatFirst is the constraint's part of the first token's
// latency without the noise of a model run: compiling the schema, and the
// start state's mask (a walk of the vocabulary's trie) applied to the
// first logits of one sample, or of 16 that share it; and the vocabulary's
// trie, which a batcher builds once, on its first constrained request. The
// vocabulary is $GODWIT_BENCH_MODEL's, else llama-bpe's 128k tokens.
func BenchmarkFormatFirst(b *testing.B) {
	path := os.Getenv("GODWIT_BENCH_MODEL")
	if path == "" {
		path = shared.Path(b, "vocab/ggml-vocab-llama-bpe.gguf")
	}
	f, err := gguf.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("vocab", func(b *testing.B) {
		for b.Loop() {
			constrain.NewVocab(tok)
		}
	})
	v := constrain.NewVocab(tok)
	schema := ordersSchema(b)
	b.Run("compile", func(b *testing.B) {
		for b.Loop() {
			if _, err := constrain.CompileSchema(schema); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, n := range []int{1, 16} {
		logits := make([]float32, n*tok.VocabSize())
		b.Run(fmt.Sprintf("compile+mask/batch=%d", n), func(b *testing.B) {
			for b.Loop() {
				l, err := constrain.CompileSchema(schema)
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					constrain.NewMatcher(l, v).Mask(logits[i*tok.VocabSize():(i+1)*tok.VocabSize()], 2000)
				}
			}
		})
	}
}
