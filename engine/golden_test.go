package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// eachVariant runs f once per kernel variant this CPU has (the SIMD ones and
// plain Go), as parallel subtests.
func eachVariant(t *testing.T, f func(t *testing.T, v cpu.Variant)) {
	for _, v := range cpu.Variants() {
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			f(t, v)
		})
	}
}

// best is the variant cpu.New picks.
var best = cpu.Variants()[0]

// open loads the model at rel and builds an engine on a backend of variant v
// summing in order o; the test's end closes both.
func open(t *testing.T, rel string, v cpu.Variant, o kernels.Order) (*models.Model, *engine.Engine) {
	t.Helper()
	m, err := models.Load(shared.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	b, err := cpu.NewVariant(v, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	e, err := engine.New(m, b, o)
	if err != nil {
		t.Fatal(err)
	}
	return m, e
}

// greedy generates n tokens after prompt, never stopping at end-of-sequence.
func greedy(t *testing.T, e *engine.Engine, prompt []int32, n int) []int32 {
	t.Helper()
	ids, err := e.Generate(context.Background(), prompt, n, e.NewCache(0), engine.Greedy{}, func(int32) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// storiesGolden is one block of golden/stories260K_greedy.txt.
type storiesGolden struct {
	model, prompt string
	promptIDs     []int32
	ids           []int32
}

func parseIDs(t *testing.T, s string) []int32 {
	var out []int32
	for _, f := range strings.Fields(s) {
		v, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("golden id %q: %v", f, err)
		}
		out = append(out, int32(v))
	}
	return out
}

func readStoriesGolden(t *testing.T) []storiesGolden {
	f, err := os.Open(shared.Path(t, "golden/stories260K_greedy.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []storiesGolden
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "model="):
			model, rest, _ := strings.Cut(strings.TrimPrefix(line, "model="), " prompt=")
			prompt := rest[:strings.LastIndex(rest, " n=")]
			p, err := strconv.Unquote(prompt)
			if err != nil {
				t.Fatalf("golden prompt %s: %v", prompt, err)
			}
			out = append(out, storiesGolden{model: model, prompt: p})
		case strings.HasPrefix(line, "prompt ids: ") && len(out) > 0 && out[len(out)-1].ids == nil:
			out[len(out)-1].promptIDs = parseIDs(t, strings.TrimPrefix(line, "prompt ids: "))
		case strings.HasPrefix(line, "ids: ") && len(out) > 0:
			out[len(out)-1].ids = parseIDs(t, strings.TrimPrefix(line, "ids: "))
		}
	}
	if len(out) != 8 {
		t.Fatalf("golden file: %d blocks, want 8", len(out))
	}
	return out
}

func modelPath(name string) string {
	if name == "stories260K.gguf" {
		return "models/" + name
	}
	return "models/derived/" + name
}

// TestStoriesGreedy: every stories260K file reproduces llama.cpp's greedy ids
// (all 100 for F32 and F16; the first 40 for the mixed-quant files, whose
// goldens were made with an F16 KV cache and depart from F32 at token 71/73),
// with every kernel variant.
func TestStoriesGreedy(t *testing.T) { eachVariant(t, storiesGreedy) }

func storiesGreedy(t *testing.T, v cpu.Variant) {
	for _, g := range readStoriesGolden(t) {
		t.Run(g.model+"/"+strconv.Quote(g.prompt), func(t *testing.T) {
			m, e := open(t, modelPath(g.model), v, kernels.OrderLlama)
			tok, err := tokenizer.FromGGUF(m.File)
			if err != nil {
				t.Fatal(err)
			}
			prompt := tok.Encode(g.prompt, true, false)
			if !equal(prompt, g.promptIDs) {
				t.Fatalf("prompt ids %v, want %v", prompt, g.promptIDs)
			}
			ids := greedy(t, e, prompt, len(g.ids))
			want := len(g.ids)
			if strings.Contains(g.model, "mixed") {
				want = 40
			}
			if n := commonPrefix(ids, g.ids); n < want {
				t.Fatalf("first %d ids match, want %d\n got %v\nwant %v", n, want, ids, g.ids)
			} else {
				t.Logf("%d of %d ids match", n, len(g.ids))
			}
			if g.model == "stories260K.gguf" && g.prompt == "" {
				text := tok.Decode(ids)
				if !strings.HasPrefix(text, " Once upon a time, there was a little girl named Lily.") {
					t.Fatalf("text %q", text)
				}
			}
		})
	}
}

// TestStoriesLogits: logits at all 5 positions of BOS + "Once upon a time"
// match llama.cpp's (F32 KV cache) within 1e-4, with every kernel variant.
func TestStoriesLogits(t *testing.T) { eachVariant(t, storiesLogits) }

func storiesLogits(t *testing.T, v cpu.Variant) {
	var golden struct {
		Tokens []int32
		Logits [][]float32
	}
	readJSON(t, "golden/stories260K_llamacpp_logits_once_upon_a_time_f32kv.json", &golden)
	m, e := open(t, "models/stories260K.gguf", v, kernels.OrderLlama)
	logits, err := e.Forward(golden.Tokens, e.NewCache(0), true)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range golden.Logits {
		got := logits[p*m.Vocab : (p+1)*m.Vocab]
		if d, i := maxDiff(got, want); d > 1e-4 {
			t.Errorf("position %d: logit %d differs by %g (got %g, want %g)", p, i, d, got[i], want[i])
		}
	}
}

// goldenContext is the n_ctx llama.cpp ran the random models' goldens with.
const goldenContext = 512

// randomGolden is the part of a random model's .golden.json the tests use.
type randomGolden struct {
	Runs []struct {
		PromptIDs []int32 `json:"prompt_ids"`
		GenIDs    []int32 `json:"gen_ids"`
		Logits    []struct {
			Step   int
			Values []float32
		}
	}
}

func readJSON(t *testing.T, rel string, v any) {
	t.Helper()
	b, err := os.ReadFile(shared.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// TestRandomModels checks every random-weight model against llama.cpp: F32,
// F16 and BF16 files give the 32 golden greedy ids, and every file, fed the
// golden tokens, gives the recorded logits bit for bit. The issue asks for
// 1e-4 (F32) and 1e-2 (quantized); the kernels add in the order of
// llama.cpp's x86 kernels, so no activation lands on the other side of a
// rounding boundary and the logits are exactly equal, with every kernel
// variant.
func TestRandomModels(t *testing.T) { eachVariant(t, randomModels) }

func randomModels(t *testing.T, v cpu.Variant) { goldenModels(t, v, "models/random", "*.gguf") }

// TestRandomFamilies is TestRandomModels for the files of the families added
// since (../shared/models/random-families): gemma2, gemma3 and phi3.
func TestRandomFamilies(t *testing.T) {
	eachVariant(t, func(t *testing.T, v cpu.Variant) { goldenModels(t, v, "models/random-families", "*.gguf") })
}

// goldenModels checks the files matching glob in dir against their goldens,
// run as llama.cpp ran them, with a context of 512.
func goldenModels(t *testing.T, v cpu.Variant, dir, glob string) {
	files, _ := filepath.Glob(filepath.Join(shared.Path(t, dir), glob))
	if len(files) == 0 {
		t.Fatalf("no models %s in %s", glob, dir)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".gguf")
		t.Run(name, func(t *testing.T) {
			var g randomGolden
			readJSON(t, dir+"/"+name+".golden.json", &g)
			m, e := open(t, dir+"/"+name+".gguf", v, kernels.OrderLlama)
			e.UseContext(goldenContext)
			run := g.Runs[0]
			typ := name[strings.LastIndex(name, "-")+1:]

			if typ == "F32" || typ == "F16" || typ == "BF16" {
				ids := greedy(t, e, run.PromptIDs, len(run.GenIDs))
				if !equal(ids, run.GenIDs) {
					t.Errorf("greedy ids differ from token %d\n got %v\nwant %v", commonPrefix(ids, run.GenIDs), ids, run.GenIDs)
				}
			}
			// Teacher forcing: the prompt in one batch, then each golden token.
			kv := e.NewCache(0)
			steps := map[int][]float32{}
			logits, err := e.Forward(run.PromptIDs, kv, false)
			if err != nil {
				t.Fatal(err)
			}
			steps[0] = append([]float32(nil), logits...)
			for k := 1; k < len(run.GenIDs); k++ {
				logits, err = e.Forward(run.GenIDs[k-1:k], kv, false)
				if err != nil {
					t.Fatal(err)
				}
				steps[k] = append([]float32(nil), logits...)
			}
			for _, l := range run.Logits {
				got := steps[l.Step]
				if len(got) != m.Vocab {
					t.Fatalf("step %d: no logits", l.Step)
				}
				if d, i := maxDiff(got, l.Values); d != 0 {
					t.Errorf("step %d: logit %d differs by %g (got %g, want %g)", l.Step, i, d, got[i], l.Values[i])
				}
			}
		})
	}
}

func maxDiff(a, b []float32) (float32, int) {
	var d float32
	at := 0
	for i := range b {
		if x := float32(math.Abs(float64(a[i] - b[i]))); x > d || math.IsNaN(float64(x)) {
			d, at = x, i
		}
	}
	return d, at
}

func commonPrefix(a, b []int32) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func equal(a, b []int32) bool { return len(a) == len(b) && commonPrefix(a, b) == len(a) }

// TestLongRoPEContext checks that a phi3 file rotates by its short factors
// up to its original context (4096) and by its long ones beyond, by the
// context served rather than the file's 131072: the golden logits (n_ctx
// 512, short factors) come back at contexts up to 4096 and not beyond.
func TestLongRoPEContext(t *testing.T) {
	var g randomGolden
	readJSON(t, "models/random-families/phi3-F32.golden.json", &g)
	m, e := open(t, "models/random-families/phi3-F32.gguf", cpu.VariantGo, kernels.OrderLlama)
	want := g.Runs[0].Logits[0]
	if want.Step != 0 {
		t.Fatalf("the golden's first logits are of step %d, want 0", want.Step)
	}
	for _, c := range []struct {
		ctx   int
		short bool
	}{{4096, true}, {8192, false}, {512, true}, {4097, false}, {m.Context, false}} {
		e.UseContext(c.ctx)
		logits, err := e.Forward(g.Runs[0].PromptIDs, e.NewCache(0), false)
		if err != nil {
			t.Fatal(err)
		}
		if d, i := maxDiff(logits, want.Values); (d == 0) != c.short {
			t.Errorf("context %d: logit %d differs from the short factors' golden by %g; want short factors: %v", c.ctx, i, d, c.short)
		}
	}
}
