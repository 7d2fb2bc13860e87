package batcher_test

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/godwit-ai/godwit/engine/constrain"
	"github.com/godwit-ai/godwit/engine/sample"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// shortDocs holds, for each schema of engine/constrain/testdata/schemas.json
// in order, a short document it accepts. Its length bounds the schema's
// shortest output from above, so a max_tokens of at least that many tokens
// leaves room for a whole output (a token gives at least a byte).
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
		val := schemaValidator(t, schema)
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

// schemaValidator compiles schema with santhosh-tekuri/jsonschema, formats
// asserted: the outputs are judged by code independent of the one under
// test.
func schemaValidator(t *testing.T, schema []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
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

// checkOutput checks one sample: it ends by end-of-generation or its
// max_tokens, its text is exactly its tokens' bytes (so what the constraint
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

// TestSchemaGenerations is issue 16's acceptance test 2: 1,000 samples, 50
// for each of the twenty test schemas, on random-weight models of four
// architectures (llama, qwen2, qwen3, and llama with Llama 3 rope and tied
// embeddings), sampled at temperatures about 1 so that the models' noise
// drives the choices, all parse and validate with an independent
// validator. Requests of 1 to 4 samples arrive while others run; one
// batcher has a pool small enough to preempt; half the requests have a
// max_tokens just above the schema's short document, so that the
// constraint must close the output in time. Then one sample per schema is
// resumed half-way, as stream resume does, and must give the same whole
// output.
func TestSchemaGenerations(t *testing.T) {
	start := time.Now()
	type rigSpec struct {
		model  string
		blocks int
		cfg    batcher.Config
	}
	specs := []rigSpec{
		{"models/random/llama-Q8_0.gguf", 512, batcher.Config{}},
		// A small token budget splits prompts into chunks.
		{"models/random/qwen2-Q8_0.gguf", 512, batcher.Config{MaxBatchTokens: 32}},
		{"models/random/qwen3-Q8_0.gguf", 512, batcher.Config{}},
		{"models/random/llama3tied-Q8_0.gguf", 512, batcher.Config{MaxBatchTokens: 48}},
		// 20 blocks of 16 hold one request of a 61-token prompt and 256
		// tokens, and far from all of those running at once.
		{"models/random/llama-Q8_0.gguf", 20, batcher.Config{}},
	}
	const preemptRig = 4
	rigs := make([]*rig, len(specs))
	loaded := map[string]*rig{}
	bats := make([]*batcher.Batcher, len(specs))
	for i, sp := range specs {
		if loaded[sp.model] == nil {
			loaded[sp.model] = load(t, sp.model)
		}
		rigs[i] = loaded[sp.model]
		bats[i], _ = rigs[i].start(t, sp.blocks, sp.cfg)
	}
	// The four models share stories260K's vocabulary.
	schemas := loadSchemas(t, rigs[0].tok)

	const perSchema = 50
	rng := rand.New(rand.NewPCG(16, 2))
	var jobs []*schemaJob
	turn := 0
	for s, sc := range schemas {
		for left := perSchema; left > 0; {
			n := min(left, []int{1, 1, 2, 3, 4}[rng.IntN(5)])
			left -= n
			r := turn % len(rigs)
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
				Sampling:  sample.Params{Temperature: 0.9 + 0.1*float32(turn%3), Seed: uint64(s*1000 + turn*10), HasSeed: true},
			}})
		}
	}
	for r := range rigs {
		var mine []*schemaJob
		for _, j := range jobs {
			if j.rig == r {
				mine = append(mine, j)
			}
		}
		runJobs(t, bats[r], mine, 12)
	}

	samples, ended := 0, map[string]int{}
	byRig := make([]int, len(rigs))
	for _, j := range jobs {
		if j.res.err != nil {
			t.Fatalf("schema %d on %s: %v", j.schema, specs[j.rig].model, j.res.err)
		}
		for i := range j.req.N {
			samples++
			byRig[j.rig]++
			ended[j.res.finish[i]]++
			if err := checkOutput(rigs[j.rig].tok, schemas[j.schema], j.req, j.res.ids[i], j.res.text[i], j.res.finish[i]); err != nil {
				t.Errorf("schema %d on %s, max_tokens %d, seed %d sample %d: %q (%s): %v", j.schema, specs[j.rig].model,
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

	// Resume the first one-sample request of each schema after half its
	// tokens, on the batcher that generated it; with the same seed the
	// rest is the same, and the text sent before and after is the whole
	// output.
	var resumed []*schemaJob
	var orig []*schemaJob
	for s := range schemas {
		i := slices.IndexFunc(jobs, func(j *schemaJob) bool { return j.schema == s && j.req.N == 1 && len(j.res.ids[0]) >= 2 })
		if i < 0 {
			t.Fatalf("schema %d: no one-sample request of two tokens or more to resume", s)
		}
		j := jobs[i]
		q := j.req
		q.Resume = j.res.ids[0][:len(j.res.ids[0])/2]
		resumed = append(resumed, &schemaJob{schema: s, rig: j.rig, req: q})
		orig = append(orig, j)
	}
	for r := range rigs {
		var mine []*schemaJob
		for _, j := range resumed {
			if j.rig == r {
				mine = append(mine, j)
			}
		}
		runJobs(t, bats[r], mine, 8)
	}
	for k, j := range resumed {
		o := orig[k]
		sent := len(j.req.Resume)
		if j.res.err != nil {
			t.Errorf("schema %d resumed on %s: %v", j.schema, specs[j.rig].model, j.res.err)
			continue
		}
		text := strings.Join(o.res.pieces[0][:sent], "") + j.res.text[0]
		if err := checkOutput(rigs[j.rig].tok, schemas[j.schema], j.req, j.res.ids[0], text, j.res.finish[0]); err != nil {
			t.Errorf("schema %d resumed after %d tokens on %s: %q (%s): %v", j.schema, sent, specs[j.rig].model, text, j.res.finish[0], err)
		}
		if !slices.Equal(j.res.ids[0], o.res.ids[0][sent:]) || text != o.res.text[0] || j.res.finish[0] != o.res.finish[0] {
			t.Errorf("schema %d resumed after %d tokens on %s: %v %q (%s), uninterrupted %v %q (%s)", j.schema, sent, specs[j.rig].model,
				j.res.ids[0], text, j.res.finish[0], o.res.ids[0][sent:], o.res.text[0], o.res.finish[0])
		}
	}
	t.Logf("%d samples resumed half-way; %v in all", len(resumed), time.Since(start).Round(time.Millisecond))
}
