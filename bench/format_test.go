package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
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
	if cfg.From != 10 || cfg.Tokens != 24 || len(cfg.Prompt) > 16 {
		t.Fatalf("config %+v", cfg)
	}
	r, err := MeasureFormat(context.Background(), bt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.PlainTPS <= 0 || r.FormatTPS <= 0 || r.Ratio() <= 0 || r.PlainFirst <= 0 || r.Compile <= 0 || r.FormatFirst <= r.Compile {
		t.Errorf("result %+v", r)
	}
	if !strings.HasPrefix(strings.TrimSpace(r.Text), `{"customer"`) {
		t.Errorf("constrained text %q", r.Text)
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
	if !strings.Contains(table.String(), "| json t/s | free t/s | ratio | first +ms | compile ms |") ||
		!strings.Contains(table.String(), "| tg12 b2 |") || !strings.Contains(log.String(), "tg12 b2 json: warm-up") {
		t.Errorf("table:\n%s\nlog:\n%s", table.String(), log.String())
	}
}

// BenchmarkFormat measures issue 16's acceptance: decode tokens/s over
// tokens 10 to 100 of a JSON-schema-constrained output against the same
// requests free (same prompt, seeds and sampling), at batch 1 and 16,
// through the batcher, and the first token's extra latency, the schema's
// compile included (also reported alone). Each iteration compiles the
// schema afresh, so every automaton state and mask is built during the
// run, as on a server's first request with that schema. The model is
// $GODWIT_BENCH_MODEL, else a tiny random one (a smoke test); for the
// acceptance, a Llama-3.2-1B-shaped Q4_0 model from gen-model:
//
//	godwit gen-model --arch llama --dim 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192 \
//		--vocab-from ../shared/vocab/ggml-vocab-llama-bpe.gguf --type Q4_0 -o /tmp/l1b-q4_0.gguf
//	GODWIT_BENCH_MODEL=/tmp/l1b-q4_0.gguf go test ./bench -run '^$' -bench Format -benchtime 3x
func BenchmarkFormat(b *testing.B) {
	path := os.Getenv("GODWIT_BENCH_MODEL")
	if path == "" {
		path = shared.Path(b, "models/random/llama-Q4_0.gguf")
	}
	e, tok := formatEngine(b, path)
	schema := ordersSchema(b)
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			bt, cfg, err := formatBatcher(e, tok, schema, nil, n, 101)
			if err != nil {
				b.Fatal(err)
			}
			defer bt.Close()
			// The engine's first steps, and the batcher's vocabulary
			// trie, built on its first constrained request.
			if _, err := MeasureFormat(context.Background(), bt, cfg); err != nil {
				b.Fatal(err)
			}
			var sum FormatResult
			runs := 0
			for b.Loop() {
				r, err := MeasureFormat(context.Background(), bt, cfg)
				if err != nil {
					b.Fatal(err)
				}
				sum.PlainTPS += r.PlainTPS
				sum.FormatTPS += r.FormatTPS
				sum.PlainFirst += r.PlainFirst
				sum.FormatFirst += r.FormatFirst
				sum.Compile += r.Compile
				sum.Text = r.Text
				runs++
			}
			b.Logf("sample 0 of the last constrained run: %.300q", sum.Text)
			k := float64(runs)
			b.ReportMetric(sum.PlainTPS/k, "free-tok/s")
			b.ReportMetric(sum.FormatTPS/k, "json-tok/s")
			b.ReportMetric(sum.Ratio(), "ratio")
			b.ReportMetric(ms(sum.FirstExtra())/k, "first+ms")
			b.ReportMetric(ms(sum.Compile)/k, "compile-ms")
		})
	}
}
