package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/engine"
)

// TestKVRoomAdmission: with 16 KV blocks (256 positions), a request whose
// prompt and max_tokens cannot fit the pool even alone gets a 400 at once
// naming the field the client used, streamed or not; one that fills it
// exactly runs to its end, and a chat request that names no length gets
// what the pool holds.
func TestKVRoomAdmission(t *testing.T) {
	r := startRig(t, rigOptions{blocks: 16})
	if r.pool.Blocks()*r.pool.BlockSize() != 256 {
		t.Fatalf("pool of %d blocks of %d", r.pool.Blocks(), r.pool.BlockSize())
	}
	issue := `{"prompt":"Once upon a time","max_tokens":1000,"ignore_eos":true}`
	checkError(t, r.do("POST", "/v1/completions", issue), 400, typeInvalid, "max_tokens", "--kv-cache-mem")
	checkError(t, r.do("POST", "/v1/completions", strings.Replace(issue, "{", `{"stream":true,`, 1)), 400, typeInvalid, "max_tokens", "at most")
	chat := `{"messages":[{"role":"user","content":"Once upon a time"}],"max_completion_tokens":1000}`
	checkError(t, r.do("POST", "/v1/chat/completions", chat), 400, typeInvalid, "max_completion_tokens", "--kv-cache-mem")

	prompt := len(r.tok.Encode("Once upon a time", true, true))
	v := r.post("/v1/completions", map[string]any{"prompt": "Once upon a time", "max_tokens": 256 - prompt, "ignore_eos": true})
	if got := v["usage"].(map[string]any)["completion_tokens"].(float64); int(got) != 256-prompt || finishReason(v, 0) != "length" {
		t.Fatalf("prompt plus max_tokens = 256: %v tokens, finish %q; want %d, length", got, finishReason(v, 0), 256-prompt)
	}
	// The pool is now all prefix cache, of another prompt: those blocks
	// give way.
	v = r.post("/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "Once upon a time"}}, "ignore_eos": true})
	u := v["usage"].(map[string]any)
	if total := u["prompt_tokens"].(float64) + u["completion_tokens"].(float64); total != 256 {
		t.Fatalf("chat with no max_tokens used %v positions, want the pool's 256", total)
	}
	if logs := r.logText(); strings.Contains(logs, "no KV block") {
		t.Fatalf("the scheduler ran out of blocks:\n%s", logs)
	}
	r.waitIdle(2 * time.Second)
}

// gatedRunner holds every step until its gate is closed.
type gatedRunner struct {
	batcher.Runner
	gate chan struct{}
}

func (g *gatedRunner) Step(in []engine.SeqInput) ([]float32, error) {
	<-g.gate
	return g.Runner.Step(in)
}

// TestQueueAdmitsWholeRequests: the queue counts sequences (prompts × n).
// On an idle server a request with more than the queue holds gets a 400
// naming prompt or n; with the queue partly full, a request that does not
// fit what is left gets 429, and nothing of it runs; then everything
// accepted completes.
func TestQueueAdmitsWholeRequests(t *testing.T) {
	idle := startRig(t, rigOptions{})
	prompts := func(k int) string {
		b, _ := json.Marshal(strings.Split(strings.Repeat("Once upon a time|", k-1)+"Once upon a time", "|"))
		return string(b)
	}
	checkError(t, idle.do("POST", "/v1/completions", `{"prompt":`+prompts(257)+`,"max_tokens":1}`), 400, typeInvalid, "prompt", "--max-queue")
	checkError(t, idle.do("POST", "/v1/completions", `{"prompt":`+prompts(20)+`,"max_tokens":1,"n":16}`), 400, typeInvalid, "prompt", "--max-queue")
	idle.post("/v1/completions", map[string]any{"prompt": strings.Split(strings.Repeat("Once|", 255)+"Once", "|"), "max_tokens": 1})

	g := &gatedRunner{gate: make(chan struct{})}
	open := sync.OnceFunc(func() { close(g.gate) })
	r := startRig(t, rigOptions{bc: batcher.Config{MaxSeqs: 1, MaxQueue: 4}, runner: func(e batcher.Runner) batcher.Runner { g.Runner = e; return g }})
	t.Cleanup(open) // before the batcher's Close, which waits for the step
	type answer struct {
		status int
		body   []byte
	}
	answers := make(chan answer, 2)
	send := func(body string) {
		go func() {
			resp, err := http.Post(r.url+"/v1/completions", "application/json", strings.NewReader(body))
			if err != nil {
				answers <- answer{}
				return
			}
			defer resp.Body.Close()
			var v map[string]any
			json.NewDecoder(resp.Body).Decode(&v)
			b, _ := json.Marshal(v)
			answers <- answer{resp.StatusCode, b}
		}()
	}
	send(`{"prompt":"Once","max_tokens":2,"ignore_eos":true}`) // runs, held at its step
	deadline := time.Now().Add(5 * time.Second)
	for s := r.b.Stats(); s.Running != 1; s = r.b.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the first request never ran: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
	send(`{"prompt":["Once","Lily","Tom"],"max_tokens":2,"ignore_eos":true}`) // waits: 3 of 4 places
	for s := r.b.Stats(); s.Waiting != 3; s = r.b.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the second request never waited: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
	checkError(t, r.do("POST", "/v1/completions", `{"prompt":["Ben","Sue"],"max_tokens":2,"ignore_eos":true}`), 429, typeRateLimit, "", "retry")
	checkError(t, r.do("POST", "/v1/completions", `{"prompt":"Ben","max_tokens":2,"n":5}`), 400, typeInvalid, "n", "--max-queue")
	open()
	for range 2 {
		if a := <-answers; a.status != 200 {
			t.Fatalf("an accepted request got %d: %s", a.status, a.body)
		}
	}
	// 4 sequences of 2 tokens: the refused requests generated nothing.
	if s := r.waitIdle(2 * time.Second); s.GenerationTokens != 8 {
		t.Fatalf("%d tokens generated, want 8: %+v", s.GenerationTokens, s)
	}
}

// TestLongPromptRefusedUntokenized: a prompt whose bytes alone show that
// its tokens cannot fit the context (no token stands for more than so many
// bytes) is refused with a 400 naming it, from that bound, before it is
// tokenized; on completions and on chat.
func TestLongPromptRefusedUntokenized(t *testing.T) {
	r := startRig(t, rigOptions{})
	text := strings.Repeat("Once upon a time, there was a little girl. ", 3<<20/43)
	least := r.tok.MinTokens(len(text))
	if least < 2*r.srv.model.Load().Context {
		t.Fatalf("a %d-byte text is at least %d tokens: no test", len(text), least)
	}
	says := fmt.Sprintf("at least %d tokens", least)
	body, _ := json.Marshal(map[string]any{"prompt": text, "max_tokens": 1})
	checkError(t, r.do("POST", "/v1/completions", string(body)), 400, typeInvalid, "prompt", says)
	body, _ = json.Marshal(map[string]any{"prompt": []string{"Once", text}, "max_tokens": 1})
	checkError(t, r.do("POST", "/v1/completions", string(body)), 400, typeInvalid, "prompt", says)
	body, _ = json.Marshal(map[string]any{"messages": []map[string]any{{"role": "user", "content": text}}})
	checkError(t, r.do("POST", "/v1/chat/completions", string(body)), 400, typeInvalid, "messages", "at least")
	// Just within the bound, the prompt is tokenized and refused for its
	// tokens.
	ctx := r.srv.model.Load().Context
	short := text[:4*ctx]
	if r.tok.MinTokens(len(short)) >= ctx || len(r.tok.Encode(short, true, true)) <= ctx {
		t.Fatalf("%d bytes: not within the bound and beyond the context", len(short))
	}
	body, _ = json.Marshal(map[string]any{"prompt": short, "max_tokens": 1})
	checkError(t, r.do("POST", "/v1/completions", string(body)), 400, typeInvalid, "max_tokens", "maximum context length")
}
