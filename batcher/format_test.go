package batcher_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/engine/constrain"
	"github.com/godwit-ai/godwit/engine/sample"
	"github.com/godwit-ai/godwit/internal/schematest"
	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models/gguf"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// shortDocs holds, for each schema of engine/constrain/testdata/schemas.json
// in order, a short document it accepts. Its length bounds the schema's
// shortest output from above, so a max_tokens of at least that many tokens
// leaves room for a whole output (a token gives at least a byte). They are
// in the compiled languages too, which are narrower in places: an email's
// domain needs a top-level part of two letters or more.
var shortDocs = []string{
	`{"name":"","age":0}`,
	`{"person":{"name":"","address":{"street":"","city":"","zip":"00000"}}}`,
	`{"tags":[""]}`,
	`{"color":"red","size":"S"}`,
	`{"id":"AAA-0000","ref":"abc"}`,
	`{"price":0,"qty":1,"delta":0,"temp":-3}`,
	`{"a":""}`,
	`{}`,
	`{"todos":[]}`,
	`{"value":0}`,
	`{"version":2,"kind":"event","payload":{"ok":true,"list":[1,"two"]}}`,
	`{"note":"","count":0}`,
	`{"owner":{"name":"","age":0},"friends":[]}`,
	`{"value":0,"children":[]}`,
	`{"code":"aa","text":"","long":"aaaaa"}`,
	`{"day":"2000-01-01","id":"00000000-0000-0000-0000-000000000000","mail":"a@b.cc","at":"2000-01-01T00:00:00Z"}`,
	`[0,0]`,
	`{"level":1}`,
	`{"scores":{}}`,
	`{"a":{"b":{"c":{"d":true,"rate":0.5}}},"pair":["",0]}`,
}

// schemaCase is one test schema: its language, the independent validator
// that judges the outputs, and the bytes of its short document.
type schemaCase struct {
	lang  *constrain.Language
	val   *jsonschema.Schema
	short int
}

// loadSchemas compiles the twenty schemas shared with engine/constrain's
// tests. Each short document must validate and must be in the compiled
// language, read a byte token at a time on tok (SentencePiece with byte
// fallback): only then does its length bound the shortest output, which
// the tight max_tokens below rely on.
func loadSchemas(t *testing.T, tok *tokenizer.Tokenizer) []schemaCase {
	t.Helper()
	data, err := os.ReadFile("../engine/constrain/testdata/schemas.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != len(shortDocs) {
		t.Fatalf("%d schemas, %d short documents", len(raw), len(shortDocs))
	}
	byteTok := map[byte]int32{}
	for id := range int32(tok.VocabSize()) {
		var b byte
		if _, err := fmt.Sscanf(tok.Token(id), "<0x%02X>", &b); err == nil && len(tok.Token(id)) == 6 {
			byteTok[b] = id
		}
	}
	vocab := constrain.NewVocab(tok)
	out := make([]schemaCase, len(raw))
	for i, schema := range raw {
		lang, err := constrain.CompileSchema(schema)
		if err != nil {
			t.Fatalf("schema %d: %v", i, err)
		}
		val := schematest.Compile(t, schema)
		doc := shortDocs[i]
		if err := validate(val, doc); err != nil {
			t.Fatalf("schema %d: short document %s: %v", i, doc, err)
		}
		m := constrain.NewMatcher(lang, vocab)
		for _, b := range []byte(doc) {
			id, ok := byteTok[b]
			if !ok {
				t.Fatalf("no byte token for %q", b)
			}
			if !m.Advance(tok, id) {
				t.Fatalf("schema %d: the compiled language refuses %s at byte %q", i, doc, b)
			}
		}
		if !m.Done() {
			t.Fatalf("schema %d: the compiled language does not end after %s", i, doc)
		}
		out[i] = schemaCase{lang: lang, val: val, short: len(doc)}
	}
	return out
}

// validate parses text as one JSON document (nothing before or after but
// whitespace) and validates it.
func validate(val *jsonschema.Schema, text string) error {
	if !json.Valid([]byte(text)) {
		return fmt.Errorf("not one JSON document")
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return err
	}
	return val.Validate(inst)
}

// schemaJob is one request of the test: which schema, on which batcher.
type schemaJob struct {
	schema, rig int
	req         batcher.Request
	res         result
}

// runOnRigs runs each job on the batcher of its rig, bats[j.rig], one
// batcher after the other, at most inFlight requests at a time on each.
func runOnRigs(t *testing.T, bats []*batcher.Batcher, jobs []*schemaJob, inFlight int) {
	t.Helper()
	for r, b := range bats {
		var mine []*schemaJob
		for _, j := range jobs {
			if j.rig == r {
				mine = append(mine, j)
			}
		}
		runJobs(t, b, mine, inFlight)
	}
}

// runJobs submits jobs to b from goroutines, at most inFlight requests at
// a time, each next one as soon as one ends, so that arrivals interleave
// with running samples.
func runJobs(t *testing.T, b *batcher.Batcher, jobs []*schemaJob, inFlight int) {
	t.Helper()
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			st, err := b.Submit(context.Background(), j.req)
			if err != nil {
				j.res.err = err
				return
			}
			j.res = collect(st, max(j.req.N, 1))
		})
	}
	wg.Wait()
}

// checkOutput checks one sample: it ends by end-of-generation (with
// IgnoreEOS too: nothing may follow a whole output) or its max_tokens, its text is exactly its tokens' bytes (so what the constraint
// read), and that text is one JSON document the schema accepts.
func checkOutput(tok *tokenizer.Tokenizer, sc schemaCase, req batcher.Request, ids []int32, text, finish string) error {
	body := ids
	switch finish {
	case batcher.FinishStop:
		if len(ids) == 0 || !tok.IsEOG(ids[len(ids)-1]) {
			return fmt.Errorf("finish stop without end-of-generation: %v", ids)
		}
		body = ids[:len(ids)-1]
	case batcher.FinishLength:
		if len(ids)+len(req.Resume) != req.MaxTokens {
			return fmt.Errorf("finish length after %d tokens of max_tokens %d", len(ids)+len(req.Resume), req.MaxTokens)
		}
	default:
		return fmt.Errorf("finish %q", finish)
	}
	if want := tok.Decode(slices.Concat(req.Resume, body)); text != want {
		return fmt.Errorf("text %q is not its tokens' bytes %q", text, want)
	}
	return validate(sc.val, text)
}

// wideRunner puts a random-weight model behind a larger vocabulary, since
// the random models all share stories260K's 512 SentencePiece tokens: a
// token goes into the model as its id modulo the model's vocabulary, and
// token id's logit is the model's for that id plus a fixed offset of its
// own, so the model's noise still drives the draws while any token of the
// wide vocabulary can be drawn.
type wideRunner struct {
	e      *engine.Engine
	offset []float32
	rows   []float32
}

func (w *wideRunner) Vocab() int   { return len(w.offset) }
func (w *wideRunner) Context() int { return w.e.Context() }

func (w *wideRunner) Step(in []engine.SeqInput) ([]float32, error) {
	narrow := make([]engine.SeqInput, len(in))
	for i, s := range in {
		narrow[i] = s
		narrow[i].Tokens = make([]int32, len(s.Tokens))
		for k, id := range s.Tokens {
			narrow[i].Tokens[k] = id % int32(w.e.Vocab())
		}
	}
	logits, err := w.e.Step(narrow)
	if err != nil {
		return nil, err
	}
	n, v := w.e.Vocab(), len(w.offset)
	rows := len(logits) / n
	w.rows = slices.Grow(w.rows[:0], rows*v)[:rows*v]
	for row := range rows {
		out := w.rows[row*v : (row+1)*v]
		for base := 0; base < v; base += n {
			copy(out[base:], logits[row*n:(row+1)*n])
		}
		for id, off := range w.offset {
			out[id] += off
		}
	}
	return w.rows, nil
}

// startOn is rig.start on one kernel thread: these models are too small
// for a second to help, and two threads spin at each step's barriers, which
// slows the test many times over when other processes hold the cores. With
// vocabPath, a vocab-only GGUF file, the model is put behind that
// vocabulary; it returns the batcher and a rig with the tokenizer it
// decodes with.
func (r *rig) startOn(t *testing.T, vocabPath string, blocks int, cfg batcher.Config) (*batcher.Batcher, *rig) {
	t.Helper()
	b := cpu.New(1)
	t.Cleanup(b.Close)
	e, err := engine.New(r.m, b, kernels.OrderBatchInvariant)
	if err != nil {
		t.Fatal(err)
	}
	var run batcher.Runner = e
	tok := r.tok
	if vocabPath != "" {
		f, err := gguf.Open(shared.Path(t, vocabPath))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if tok, err = tokenizer.FromGGUF(f); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(tok.VocabSize()), 3))
		offset := make([]float32, tok.VocabSize())
		for i := range offset {
			offset[i] = float32(rng.NormFloat64())
		}
		run = &wideRunner{e: e, offset: offset}
	}
	c := r.m.Config
	width := c.KVHeads * c.HeadDim
	pool, err := engine.NewKVPool(engine.KVPoolConfig{Layers: len(r.m.Layers), Width: width,
		Bytes: engine.KVBytes(len(r.m.Layers), width, 16*blocks, false), ToHalf: b.ToHalf})
	if err != nil {
		t.Fatal(err)
	}
	bt := batcher.New(run, tok, pool, cfg)
	t.Cleanup(bt.Close)
	return bt, &rig{m: r.m, tok: tok}
}

// TestSchemaGenerations is issue 16's acceptance test 2: 1,000 samples, 50
// for each of the twenty test schemas, on random-weight models of four
// architectures (llama, qwen2, qwen3, and llama with Llama 3 rope and tied
// embeddings), with their 512-token SentencePiece vocabulary and, for a
// few, behind Llama 3's and Qwen2's byte-level BPE ones, sampled at
// temperatures about 1 so that the models' noise drives the choices, all
// parse and validate with an independent validator. Requests of 1 to 4
// samples arrive while others run; one batcher has a pool small enough to
// preempt; half the requests have a max_tokens just above the schema's
// short document, so that the constraint must close the output in time;
// some ignore end-of-generation, which a whole output still ends with.
// Then one sample per schema is resumed half-way, as stream resume does,
// and must give the same whole output.
func TestSchemaGenerations(t *testing.T) {
	start := time.Now()
	type rigSpec struct {
		model  string
		vocab  string // a vocab-only GGUF the model is put behind; "" for its own
		blocks int
		cfg    batcher.Config
	}
	specs := []rigSpec{
		{"models/random/llama-Q8_0.gguf", "", 512, batcher.Config{}},
		// A small token budget splits prompts into chunks.
		{"models/random/qwen2-Q8_0.gguf", "", 512, batcher.Config{MaxBatchTokens: 32}},
		{"models/random/qwen3-Q8_0.gguf", "", 512, batcher.Config{}},
		{"models/random/llama3tied-Q8_0.gguf", "", 512, batcher.Config{MaxBatchTokens: 48}},
		// 20 blocks of 16 hold one request of a 61-token prompt and 256
		// tokens, and far from all of those running at once.
		{"models/random/llama-Q8_0.gguf", "", 20, batcher.Config{}},
		// Byte-level BPE vocabularies: Llama 3's 128k tokens, with
		// three end-of-generation tokens, and Qwen2's 151k.
		{"models/random/llama3tied-Q8_0.gguf", "vocab/ggml-vocab-llama-bpe.gguf", 512, batcher.Config{}},
		{"models/random/qwen3-Q8_0.gguf", "vocab/ggml-vocab-qwen2.gguf", 512, batcher.Config{}},
	}
	const preemptRig, wideRig = 4, 5
	rigs := make([]*rig, len(specs))
	loaded := map[string]*rig{}
	bats := make([]*batcher.Batcher, len(specs))
	names := make([]string, len(specs))
	for i, sp := range specs {
		names[i] = fmt.Sprintf("%s (%s, %d blocks)", sp.model, cmp.Or(sp.vocab, "its vocabulary"), sp.blocks)
		if loaded[sp.model] == nil {
			loaded[sp.model] = load(t, sp.model)
		}
		bats[i], rigs[i] = loaded[sp.model].startOn(t, sp.vocab, sp.blocks, sp.cfg)
	}
	// The four models share stories260K's vocabulary, which has a token
	// for every byte.
	schemas := loadSchemas(t, rigs[0].tok)

	const perSchema = 50
	rng := rand.New(rand.NewPCG(16, 2))
	var jobs []*schemaJob
	turn := 0
	for s, sc := range schemas {
		for left := perSchema; left > 0; {
			n := min(left, []int{1, 1, 2, 3, 4}[rng.IntN(5)])
			left -= n
			// Every sixteenth request goes to a wide vocabulary, in
			// turn: sampling free text from 128k logits costs most.
			r := turn % wideRig
			if turn%16 == 15 {
				r = wideRig + turn/16%(len(rigs)-wideRig)
			}
			turn++
			maxTokens := 256
			if rng.IntN(2) == 0 {
				maxTokens = sc.short + rng.IntN(40)
			}
			jobs = append(jobs, &schemaJob{schema: s, rig: r, req: batcher.Request{
				Prompt:    prompts(rigs[r], 1, uint64(s*1000+turn))[0],
				MaxTokens: maxTokens,
				N:         n,
				Format:    sc.lang,
				IgnoreEOS: turn%5 == 0,
				Sampling:  sample.Params{Temperature: 0.9 + 0.1*float32(turn%3), Seed: uint64(s*1000 + turn*10), HasSeed: true},
			}})
		}
	}
	runOnRigs(t, bats, jobs, 12)

	samples, ended := 0, map[string]int{}
	byRig := make([]int, len(rigs))
	for _, j := range jobs {
		if j.res.err != nil {
			t.Fatalf("schema %d on %s: %v", j.schema, names[j.rig], j.res.err)
		}
		for i := range j.req.N {
			samples++
			byRig[j.rig]++
			ended[j.res.finish[i]]++
			if err := checkOutput(rigs[j.rig].tok, schemas[j.schema], j.req, j.res.ids[i], j.res.text[i], j.res.finish[i]); err != nil {
				t.Errorf("schema %d on %s, max_tokens %d, seed %d sample %d: %q (%s): %v", j.schema, names[j.rig],
					j.req.MaxTokens, j.req.Sampling.Seed, i, j.res.text[i], j.res.finish[i], err)
			}
		}
	}
	if samples != perSchema*len(schemas) {
		t.Fatalf("%d samples, want %d", samples, perSchema*len(schemas))
	}
	pre := bats[preemptRig].Stats().Preemptions
	if pre == 0 {
		t.Errorf("no preemption on the %d-block pool", specs[preemptRig].blocks)
	}
	t.Logf("%d samples in %d requests: %d ended by end-of-generation, %d by max_tokens with a whole document; %d preemptions; samples by batcher %v; %v",
		samples, len(jobs), ended[batcher.FinishStop], ended[batcher.FinishLength], pre, byRig, time.Since(start).Round(time.Millisecond))

	// Resume a one-sample request of each schema after half its tokens,
	// on the batcher that generated it, spread over the batchers (the one
	// with the fewest resumed so far that has one); with the same seed the
	// rest is the same, and the text sent before and after is the whole
	// output.
	var resumed []*schemaJob
	var orig []*schemaJob
	onRig := make([]int, len(rigs))
	for s := range schemas {
		var j *schemaJob
		for _, c := range jobs {
			if c.schema == s && c.req.N == 1 && len(c.res.ids[0]) >= 2 && (j == nil || onRig[c.rig] < onRig[j.rig]) {
				j = c
			}
		}
		if j == nil {
			t.Fatalf("schema %d: no one-sample request of two tokens or more to resume", s)
		}
		onRig[j.rig]++
		q := j.req
		q.Resume = j.res.ids[0][:len(j.res.ids[0])/2]
		resumed = append(resumed, &schemaJob{schema: s, rig: j.rig, req: q})
		orig = append(orig, j)
	}
	runOnRigs(t, bats, resumed, 8)
	for k, j := range resumed {
		o := orig[k]
		sent := len(j.req.Resume)
		if j.res.err != nil {
			t.Errorf("schema %d resumed on %s: %v", j.schema, names[j.rig], j.res.err)
			continue
		}
		text := strings.Join(o.res.pieces[0][:sent], "") + j.res.text[0]
		if err := checkOutput(rigs[j.rig].tok, schemas[j.schema], j.req, j.res.ids[0], text, j.res.finish[0]); err != nil {
			t.Errorf("schema %d resumed after %d tokens on %s: %q (%s): %v", j.schema, sent, names[j.rig], text, j.res.finish[0], err)
		}
		if !slices.Equal(j.res.ids[0], o.res.ids[0][sent:]) || text != o.res.text[0] || j.res.finish[0] != o.res.finish[0] {
			t.Errorf("schema %d resumed after %d tokens on %s: %v %q (%s), uninterrupted %v %q (%s)", j.schema, sent, names[j.rig],
				j.res.ids[0], text, j.res.finish[0], o.res.ids[0][sent:], o.res.text[0], o.res.finish[0])
		}
	}
	t.Logf("%d samples resumed half-way, by batcher %v; %v in all", len(resumed), onRig, time.Since(start).Round(time.Millisecond))
}

// TestResumeOutsideFormat: a resumed request whose earlier tokens its
// format would not have allowed is refused, naming resume; one whose
// tokens begin an output is taken.
func TestResumeOutsideFormat(t *testing.T) {
	r := load(t, "models/random/llama-Q8_0.gguf")
	b, _ := r.start(t, 64, batcher.Config{})
	lang, err := constrain.CompileSchema([]byte(`{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false}`))
	if err != nil {
		t.Fatal(err)
	}
	req := batcher.Request{Prompt: []int32{r.tok.BOS()}, MaxTokens: 40, Format: lang, Resume: r.tok.Encode("hello", false, false),
		Sampling: sample.Params{Temperature: 1, Seed: 1, HasSeed: true}}
	_, err = b.Submit(context.Background(), req)
	if e, ok := errors.AsType[*batcher.Error](err); !ok || e.Kind != batcher.KindInvalid || e.Param != "resume" {
		t.Fatalf("resume outside the format: %v", err)
	}
	// SentencePiece writes a space first, which json_object allows.
	req.Format, req.Resume = constrain.JSONObjectLanguage(), r.tok.Encode(`{"a":`, false, false)
	got := run(t, b, req)
	if text := r.tok.Detokenize(req.Resume, false, false) + got.text[0]; got.err != nil || !json.Valid([]byte(text)) {
		t.Fatalf("resume inside the format: %q, %v", text, got.err)
	}
}
