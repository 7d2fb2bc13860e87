package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
)

// PromptConfig says what requests a run sends. Every target gets the same
// requests in the same order: request i is a function of the seed and i.
type PromptConfig struct {
	InputTokens  int     // tokens of each synthetic prompt (after the shared prefix)
	OutputTokens int     // max_tokens of each request
	InputSpread  float64 // lengths drawn uniformly from n·(1±spread)
	OutputSpread float64
	SharedPrefix int // tokens every synthetic prompt starts with (prefix caching)
	Seed         uint64
	// Dataset, when set, replaces synthetic prompts: request i sends entry
	// i modulo its length, as text.
	Dataset []DatasetEntry
}

// DatasetEntry is one line of a --dataset JSONL file: {"prompt": "...",
// "max_tokens": 128}; max_tokens (or output_tokens) is optional.
type DatasetEntry struct {
	Prompt       string `json:"prompt"`
	MaxTokens    int    `json:"max_tokens"`
	OutputTokens int    `json:"output_tokens"`
}

// ReadDataset reads a JSONL file of prompts; blank lines are skipped.
func ReadDataset(r io.Reader) ([]DatasetEntry, error) {
	var out []DatasetEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var e DatasetEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if e.Prompt == "" {
			return nil, fmt.Errorf("line %d: no prompt", n)
		}
		if e.MaxTokens == 0 {
			e.MaxTokens = e.OutputTokens
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no prompts")
	}
	return out, nil
}

// Prompts makes request i of a run.
type Prompts struct {
	cfg    PromptConfig
	pool   []int32 // tokens of random text, from which prompts are cut
	prefix []int32
}

// words is the vocabulary of the synthetic text the prompts are cut from.
var words = strings.Fields(`the of and to in is was that for it with as his on be at by had are but from or have an
they which one you were her all she there would their we him been has when who will more no if out so said what up its
about into than them can only other new some could time these two may then do first any my now such like our over man
me even most made after also did many before must through back years where much your way well down should because each
just those people how too little state good very make world still own see men work long get here between both life being
under never day same another know while last might us great old year off come since against go came right used take three
river garden window morning letter music water story light small house green night city quiet table friend road winter`)

// NewPrompts prepares the synthetic token pool with tok (nil for a dataset).
func NewPrompts(ctx context.Context, cfg PromptConfig, tok Tokenizer) (*Prompts, error) {
	p := &Prompts{cfg: cfg}
	if len(cfg.Dataset) > 0 {
		return p, nil
	}
	if cfg.InputTokens < 1 || cfg.OutputTokens < 1 {
		return nil, fmt.Errorf("input and output tokens must be at least 1")
	}
	if tok == nil {
		return nil, fmt.Errorf("exact prompt lengths need a tokenizer: the server's /tokenize or a local model (-m)")
	}
	maxIn := int(float64(cfg.InputTokens)*(1+cfg.InputSpread)) + 1
	need := 4*maxIn + cfg.SharedPrefix
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	for n := need; len(p.pool) < need; n *= 2 {
		var b strings.Builder
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[rng.IntN(len(words))])
		}
		ids, err := tok.Encode(ctx, b.String())
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("the tokenizer returned no tokens")
		}
		p.pool = ids
	}
	p.prefix = p.pool[len(p.pool)-cfg.SharedPrefix:]
	p.pool = p.pool[:len(p.pool)-cfg.SharedPrefix]
	return p, nil
}

func spread(rng *rand.Rand, n int, s float64) int {
	if s <= 0 {
		return n
	}
	lo, hi := float64(n)*(1-s), float64(n)*(1+s)
	v := int(lo + rng.Float64()*(hi-lo) + 0.5)
	return max(v, 1)
}

// Get returns request i.
func (p *Prompts) Get(i int) Request {
	rng := rand.New(rand.NewPCG(p.cfg.Seed, uint64(i)))
	if d := p.cfg.Dataset; len(d) > 0 {
		e := d[i%len(d)]
		out := e.MaxTokens
		if out == 0 {
			out = spread(rng, p.cfg.OutputTokens, p.cfg.OutputSpread)
		}
		return Request{Text: e.Prompt, MaxTokens: max(out, 1)}
	}
	n := min(spread(rng, p.cfg.InputTokens, p.cfg.InputSpread), len(p.pool))
	at := rng.IntN(len(p.pool) - n + 1)
	toks := make([]int32, 0, len(p.prefix)+n)
	toks = append(append(toks, p.prefix...), p.pool[at:at+n]...)
	return Request{Tokens: toks, InputTokens: len(toks), MaxTokens: spread(rng, p.cfg.OutputTokens, p.cfg.OutputSpread)}
}
