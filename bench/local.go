// Package bench measures godwit: `bench local` times the engine in-process
// (prompt processing and token generation, like llama.cpp's llama-bench).
package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/cpuid/v2"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// LocalConfig is what `godwit bench local` runs: every prompt length and
// every generation length, each Reps times after one warm-up run.
//
// How depends on the engine's order. With kernels.OrderBatchInvariant the
// tests take the serving path: engine.Step on sequences of a paged KV pool,
// a prompt in one step, then one token per step. With kernels.OrderLlama
// they take engine.Forward on a flat cache, as llama-bench runs llama.cpp.
type LocalConfig struct {
	Prompts []int // prompt-processing tests: tokens in one batch (pp512)
	Gens    []int // generation tests: tokens decoded one at a time (tg128)
	// Batches, when set, runs each generation test with that many
	// sequences decoding together (engine.Step on a paged KV pool), and
	// reports their aggregate tokens/s ("tg128 b16").
	Batches []int
	// Pool, when set, gives the KV pool of the tests that run on one
	// (batched, or in the batch-invariant order); nil sizes one to fit
	// each test.
	Pool *engine.KVPool
	Reps int
	// Format, when set, is a JSON schema: each generation test is run
	// again through a batcher, free and held to it (MeasureFormat, with
	// FormatPrompts, sampling at temperature 1; Tok decodes), and its
	// Result carries the comparison.
	Format []byte
	Tok    *tokenizer.Tokenizer
}

// Result is one test's measurements.
type Result struct {
	Test     string    `json:"test"` // "pp512" or "tg128"
	Tokens   int       `json:"tokens"`
	Samples  []float64 `json:"samples_tps"` // tokens per second, one per repetition
	Median   float64   `json:"median_tps"`
	Min      float64   `json:"min_tps"`
	Max      float64   `json:"max_tps"`
	Duration []float64 `json:"samples_seconds"`
	// DecodeGBps is, for a generation test, the weights it read per second
	// at the median: DecodeBytes a step times steps per second.
	DecodeGBps float64 `json:"decode_weights_gbps,omitempty"`
	// BandwidthShare is DecodeGBps over System.ReadGBps (SetShares).
	BandwidthShare float64 `json:"read_bandwidth_share,omitempty"`
	// Format is the constrained comparison of a generation test.
	Format *FormatStats `json:"json_schema,omitempty"`
}

// FormatStats are a generation test's format runs: medians over the
// repetitions of each measure, and every run.
type FormatStats struct {
	// The tokens timed: From to To-1 of each sample.
	From         int     `json:"timed_from"`
	To           int     `json:"timed_to"`
	PlainTPS     float64 `json:"plain_tps"`
	FormatTPS    float64 `json:"format_tps"`
	Ratio        float64 `json:"ratio"`
	FirstExtraMs float64 `json:"first_extra_ms"`
	CompileMs    float64 `json:"compile_ms"`
	// FormatResult.FirstOutExtra's median.
	FirstOutExtraMs float64        `json:"first_out_extra_ms"`
	Runs            []FormatResult `json:"runs"`
}

// System describes the machine and model a run measured.
type System struct {
	CPU        string   `json:"cpu"`
	Cores      int      `json:"logical_cores"`
	Features   []string `json:"cpu_features"`
	Backend    string   `json:"backend"`
	Order      string   `json:"order"` // the engine's kernels.Order
	Threads    int      `json:"threads"`
	GoVersion  string   `json:"go_version"`
	Model      string   `json:"model"`
	ModelType  string   `json:"model_type"`
	ModelBytes int64    `json:"model_bytes"`
	Params     int64    `json:"params"`
	// DecodeBytes is the weight bytes a decode step reads (DecodeBytes).
	DecodeBytes int64 `json:"decode_weight_bytes"`
	// ReadGBps is the threads' read bandwidth over those bytes
	// (ReadBandwidth); 0 when not measured.
	ReadGBps float64 `json:"read_bandwidth_gbps,omitempty"`
}

// Report is the whole run, as written by --json.
type Report struct {
	System  System   `json:"system"`
	Results []Result `json:"results"`
}

// Describe fills System for a loaded model run in order o.
func Describe(path string, m *models.Model, backend string, threads int, o kernels.Order) System {
	s := System{
		Order:     o.String(),
		Threads:   threads,
		CPU:       cpuid.CPU.BrandName,
		Cores:     runtime.NumCPU(),
		Backend:   backend,
		GoVersion: runtime.Version(),
		Model:     path,
		ModelType: ModelType(m.File),
	}
	for _, f := range []cpuid.FeatureID{cpuid.SSE4, cpuid.AVX, cpuid.F16C, cpuid.FMA3, cpuid.AVX2, cpuid.AVX512F,
		cpuid.AVX512BW, cpuid.AVX512VL, cpuid.AVX512VNNI, cpuid.AVXVNNI, cpuid.AVX512BF16, cpuid.ASIMD, cpuid.ASIMDDP} {
		if cpuid.CPU.Supports(f) {
			s.Features = append(s.Features, f.String())
		}
	}
	for _, t := range m.File.Tensors {
		s.ModelBytes += int64(len(t.Data))
		s.Params += int64(t.Elements())
	}
	s.DecodeBytes = DecodeBytes(m)
	return s
}

// fileTypes names llama.cpp's general.file_type values.
var fileTypes = map[int64]string{0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
	10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
	18: "Q6_K", 32: "BF16"}

// ModelType names the file's quantization: general.file_type when known,
// else the type holding the most bytes.
func ModelType(f *gguf.File) string {
	if ft, ok := f.Int("general.file_type"); ok {
		if name, ok := fileTypes[ft]; ok {
			return name
		}
	}
	bytes := map[gguf.Type]int{}
	for _, t := range f.Tensors {
		bytes[t.Type] += len(t.Data)
	}
	var best gguf.Type
	for t, n := range bytes {
		if n > bytes[best] {
			best = t
		}
	}
	return best.String()
}

// RunLocal runs every test of cfg on e and reports progress to log.
func RunLocal(ctx context.Context, e *engine.Engine, cfg LocalConfig, log io.Writer) ([]Result, error) {
	if cfg.Reps < 1 {
		return nil, fmt.Errorf("reps must be at least 1, got %d", cfg.Reps)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := e.Vocab()
	tokens := func(n int) []int32 {
		t := make([]int32, n)
		for i := range t {
			t[i] = int32(rng.IntN(vocab))
		}
		return t
	}
	var results []Result
	weights := float64(DecodeBytes(e.Model))
	// run times a test of n tokens; steps, for a generation test, is the
	// decode steps it takes.
	run := func(test string, n, steps int, once func() error) error {
		fmt.Fprintf(log, "%s: warm-up", test)
		if err := once(); err != nil {
			return fmt.Errorf("%s: %w", test, err)
		}
		r := Result{Test: test, Tokens: n}
		for i := 0; i < cfg.Reps; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			start := time.Now()
			if err := once(); err != nil {
				return fmt.Errorf("%s: %w", test, err)
			}
			secs := time.Since(start).Seconds()
			r.Duration = append(r.Duration, secs)
			r.Samples = append(r.Samples, float64(n)/secs)
			fmt.Fprintf(log, " %.1f", float64(n)/secs)
		}
		fmt.Fprintln(log, " t/s")
		sorted := slices.Sorted(slices.Values(r.Samples))
		r.Min, r.Max, r.Median = sorted[0], sorted[len(sorted)-1], median(sorted)
		r.DecodeGBps = weights * r.Median * float64(steps) / float64(n) / 1e9
		results = append(results, r)
		return nil
	}
	// withFormat adds the format runs to the generation test just run.
	withFormat := func(test string, b, g int) error {
		if cfg.Format == nil {
			return nil
		}
		st, err := runFormat(ctx, e, cfg, test, b, g, log)
		results[len(results)-1].Format = st
		return err
	}
	serving := e.Order() == kernels.OrderBatchInvariant
	for _, p := range cfg.Prompts {
		if p < 1 || p > e.Context() {
			return nil, fmt.Errorf("prompt length %d is outside 1..%d (the model's context)", p, e.Context())
		}
		prompt := tokens(p)
		once := func() error {
			_, err := e.Forward(prompt, e.NewCache(p), false)
			return err
		}
		if serving {
			pool, err := poolFor(e, cfg.Pool, 1, p)
			if err != nil {
				return results, err
			}
			once = func() error { return decode(e, pool, [][]int32{prompt}, p) }
		}
		if err := run(fmt.Sprintf("pp%d", p), p, 0, once); err != nil {
			return results, err
		}
	}
	for _, g := range cfg.Gens {
		if g < 1 || g > e.Context() {
			return nil, fmt.Errorf("generation length %d is outside 1..%d (the model's context)", g, e.Context())
		}
		for _, b := range cfg.Batches {
			if b < 1 {
				return nil, fmt.Errorf("batch size %d must be at least 1", b)
			}
			gen := make([][]int32, b)
			for i := range gen {
				gen[i] = tokens(g)
			}
			pool, err := poolFor(e, cfg.Pool, b, g)
			if err != nil {
				return results, err
			}
			test := fmt.Sprintf("tg%d b%d", g, b)
			if err := run(test, g*b, g, func() error { return decode(e, pool, gen, 1) }); err != nil {
				return results, err
			}
			if err := withFormat(test, b, g); err != nil {
				return results, err
			}
		}
		if len(cfg.Batches) > 0 {
			continue
		}
		gen := tokens(g)
		// Like llama-bench's tg test: g single-token steps from an empty context.
		once := func() error {
			kv := e.NewCache(g)
			for i := range gen {
				if _, err := e.Forward(gen[i:i+1], kv, false); err != nil {
					return err
				}
			}
			return nil
		}
		if serving {
			pool, err := poolFor(e, cfg.Pool, 1, g)
			if err != nil {
				return results, err
			}
			once = func() error { return decode(e, pool, [][]int32{gen}, 1) }
		}
		test := fmt.Sprintf("tg%d", g)
		if err := run(test, g, g, once); err != nil {
			return results, err
		}
		if err := withFormat(test, 1, g); err != nil {
			return results, err
		}
	}
	return results, nil
}

// formatBatcher returns the format runs of b sequences of g tokens held to
// schema, sampled at temperature 1, and a batcher on e to run them, its KV
// blocks from pool or, when it is nil, a pool of its own. Close the
// batcher when done.
func formatBatcher(e *engine.Engine, tok *tokenizer.Tokenizer, schema []byte, pool *engine.KVPool, b, g int) (*batcher.Batcher, FormatConfig, error) {
	fc := FormatConfig{Schema: schema, Prompts: FormatPrompts(tok, b), Batch: b, Tokens: g,
		// From token 10, as the acceptance of issue 16 times, or
		// halfway in a shorter test.
		From: min(10, (g-1)/2), Temperature: 1, Seed: 1}
	prompt := 0
	for _, p := range fc.Prompts {
		prompt = max(prompt, len(p))
	}
	if pool == nil {
		// A block more per sequence for the steps that run between the
		// last token timed and the cancel reaching the batcher, and room
		// for a whole context: MeasureFormat's requests ask for as many
		// tokens as it allows.
		var err error
		pool, err = e.NewKVPool(e.KVBytes(max(b*(prompt+g+16), e.Context()), false), false)
		if err != nil {
			return nil, fc, err
		}
	}
	// Every request admitted at once, prompts in one step.
	bt := batcher.New(e, tok, pool, batcher.Config{MaxSeqs: b, MaxQueue: b,
		MaxBatchTokens: max(batcher.DefaultMaxBatchTokens, b*prompt)})
	return bt, fc, nil
}

// runFormat times the format runs of a generation test of b sequences of g
// tokens: a warm-up, then reps of MeasureFormat on a batcher of its own.
func runFormat(ctx context.Context, e *engine.Engine, cfg LocalConfig, test string, b, g int, log io.Writer) (*FormatStats, error) {
	bt, fc, err := formatBatcher(e, cfg.Tok, cfg.Format, cfg.Pool, b, g)
	if err != nil {
		return nil, err
	}
	defer bt.Close()
	fmt.Fprintf(log, "%s json: warm-up", test)
	// The warm-up also builds the batcher's vocabulary trie, once per
	// batcher (a server's first constrained request pays it alone).
	if _, err := MeasureFormat(ctx, bt, fc); err != nil {
		return nil, fmt.Errorf("%s json: %w", test, err)
	}
	var runs []FormatResult
	for range cfg.Reps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := MeasureFormat(ctx, bt, fc)
		if err != nil {
			return nil, fmt.Errorf("%s json: %w", test, err)
		}
		runs = append(runs, r)
		fmt.Fprintf(log, " %.1f/%.1f", r.FormatTPS, r.PlainTPS)
	}
	fmt.Fprintln(log, " t/s (json/free)")
	return formatStats(runs, fc), nil
}

// formatStats summarizes runs of fc by their medians, which a run slowed
// by other work on the machine moves least.
func formatStats(runs []FormatResult, fc FormatConfig) *FormatStats {
	medianOf := func(f func(FormatResult) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return median(v)
	}
	return &FormatStats{From: fc.From, To: fc.Tokens, Runs: runs,
		PlainTPS:        medianOf(func(r FormatResult) float64 { return r.PlainTPS }),
		FormatTPS:       medianOf(func(r FormatResult) float64 { return r.FormatTPS }),
		Ratio:           medianOf(FormatResult.Ratio),
		FirstExtraMs:    medianOf(func(r FormatResult) float64 { return ms(r.FirstExtra()) }),
		CompileMs:       medianOf(func(r FormatResult) float64 { return ms(r.Compile) }),
		FirstOutExtraMs: medianOf(func(r FormatResult) float64 { return ms(r.FirstOutExtra()) }),
	}
}

// poolFor returns pool, or when it is nil a KV pool sized for seqs sequences
// of n positions.
func poolFor(e *engine.Engine, pool *engine.KVPool, seqs, n int) (*engine.KVPool, error) {
	if pool != nil {
		return pool, nil
	}
	blocks := seqs * ((n + 15) / 16)
	return e.NewKVPool(e.KVBytes(16*blocks, false), false)
}

// decode runs the sequences gen together through engine.Step from empty
// caches, as a batch of running requests does, with their KV blocks from
// pool: chunk tokens of each per step (1 to generate; a whole prompt to
// process it in one step).
func decode(e *engine.Engine, pool *engine.KVPool, gen [][]int32, chunk int) error {
	g := len(gen[0])
	in := make([]engine.SeqInput, len(gen))
	defer func() {
		for _, s := range in {
			if s.KV != nil {
				s.KV.(*engine.Seq).Free()
			}
		}
	}()
	for i := range in {
		s := pool.NewSeq()
		in[i] = engine.SeqInput{KV: s, Logits: true}
		if err := s.Reserve(g); err != nil {
			return fmt.Errorf("%d sequences of %d tokens do not fit the KV cache (%d blocks of %d); raise --kv-cache-mem",
				len(gen), g, pool.Blocks(), pool.BlockSize())
		}
	}
	for t := 0; t < g; t += chunk {
		for i := range in {
			in[i].Tokens = gen[i][t:min(t+chunk, g)]
		}
		if _, err := e.Step(in); err != nil {
			return err
		}
	}
	return nil
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// WriteTable prints the results as a Markdown table like llama-bench's.
func WriteTable(w io.Writer, s System, results []Result) {
	fmt.Fprintf(w, "cpu: %s (%d logical cores), features: %s\n", s.CPU, s.Cores, strings.Join(s.Features, " "))
	fmt.Fprintf(w, "order: %s\n", s.Order)
	writeBandwidth(w, s)
	fmt.Fprintln(w)
	format := slices.ContainsFunc(results, func(r Result) bool { return r.Format != nil })
	if format {
		// The columns' meaning, which the header has no room for.
		fmt.Fprintln(w, "json: the test's sequences sampled through the batcher, held to the JSON schema and free, medians of decode t/s")
		fmt.Fprintln(w, "over tokens 10 (or halfway) to the last; first +ms: the first token's extra latency, the schema's compile")
		fmt.Fprintln(w, "included; of it, compile ms and out +ms, what follows the first forward pass (the masks, less sampling saved)")
		fmt.Fprintln(w)
	}
	head, rule := "| model | size | params | backend | threads | test | t/s (median) | min | max | weights GB/s | of read bw |",
		"| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
	if format {
		head += " json t/s | free t/s | ratio | first +ms | compile ms | out +ms |"
		rule += " ---: | ---: | ---: | ---: | ---: | ---: |"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	for _, r := range results {
		fmt.Fprintf(w, "| %s %s | %.2f MiB | %.2f M | %s | %d | %s | %.2f | %.2f | %.2f | %s |",
			modelName(s.Model), s.ModelType, float64(s.ModelBytes)/(1<<20), float64(s.Params)/1e6, s.Backend,
			s.Threads, r.Test, r.Median, r.Min, r.Max, bandwidthCells(r))
		switch f := r.Format; {
		case f != nil:
			fmt.Fprintf(w, " %.2f | %.2f | %.3f | %.1f | %.1f | %.1f |", f.FormatTPS, f.PlainTPS, f.Ratio, f.FirstExtraMs, f.CompileMs, f.FirstOutExtraMs)
		case format:
			fmt.Fprint(w, " | | | | | |")
		}
		fmt.Fprintln(w)
	}
}

func modelName(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		path = path[i+1:]
	}
	return strings.TrimSuffix(path, ".gguf")
}
