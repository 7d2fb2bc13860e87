package server

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestCompletionGolden: greedy /v1/completions of "Once upon a time" with
// max_tokens 16 returns llama.cpp's golden continuation.
func TestCompletionGolden(t *testing.T) {
	r := startRig(t, rigOptions{})
	promptIDs, golden := goldenContinuation(t)
	want := r.tok.Detokenize(golden[:16], false, false)
	v := r.post("/v1/completions", map[string]any{"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0})
	if got := choiceTexts(t, v)[0]; got != want {
		t.Fatalf("text %q\nwant %q", got, want)
	}
	if p, c, tot := usageOf(t, v); p != len(promptIDs) || c != 16 || tot != p+c {
		t.Fatalf("usage %d+%d=%d, want %d+16", p, c, tot, len(promptIDs))
	}
	if f := finishReason(v, 0); f != "length" {
		t.Fatalf("finish_reason %q", f)
	}
	if v["object"] != "text_completion" || v["model"] != "stories260K" || !strings.HasPrefix(v["id"].(string), "cmpl-") || v["created"].(float64) < 1.7e9 {
		t.Fatalf("envelope %v", v)
	}
	// The same from token ids, and logprobs name the golden tokens.
	v = r.post("/v1/completions", map[string]any{"prompt": promptIDs, "max_tokens": 16, "temperature": 0, "logprobs": 1})
	if got := choiceTexts(t, v)[0]; got != want {
		t.Fatalf("from ids: %q", got)
	}
	lp := v["choices"].([]any)[0].(map[string]any)["logprobs"].(map[string]any)
	for i, tok := range lp["tokens"].([]any) {
		if tok != string(r.tok.Piece(golden[i])) {
			t.Fatalf("token %d is %q, want %q", i, tok, r.tok.Piece(golden[i]))
		}
	}
}

// greedyText is the greedy continuation of prompt, for comparisons.
func greedyText(r *rig, prompt string, n int) string {
	v := r.post("/v1/completions", map[string]any{"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": true})
	return choiceTexts(r.t, v)[0]
}

// TestCompletionParameters: every request parameter of /v1/completions
// changes the output as it should.
func TestCompletionParameters(t *testing.T) {
	r := startRig(t, rigOptions{})
	const prompt = "Once upon a time"
	greedy := greedyText(r, prompt, 24)
	ids := r.tok.Encode(prompt, true, false)

	t.Run("prompt forms", func(t *testing.T) {
		for _, p := range []any{[]string{prompt, prompt}, [][]int32{ids, ids}} {
			v := r.post("/v1/completions", map[string]any{"prompt": p, "max_tokens": 24, "temperature": 0, "ignore_eos": true})
			texts := choiceTexts(t, v)
			if len(texts) != 2 || texts[0] != greedy || texts[1] != greedy {
				t.Fatalf("%v: %q", p, texts)
			}
			if pt, ct, _ := usageOf(t, v); pt != 2*len(ids) || ct != 48 {
				t.Fatalf("usage %d %d", pt, ct)
			}
		}
	})
	t.Run("max_tokens default 16", func(t *testing.T) {
		v := r.post("/v1/completions", map[string]any{"prompt": prompt, "temperature": 0, "ignore_eos": true})
		if _, c, _ := usageOf(t, v); c != 16 {
			t.Fatalf("completion_tokens %d", c)
		}
	})
	t.Run("seed and temperature", func(t *testing.T) {
		run := func(seed int) string {
			v := r.post("/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 24, "temperature": 1.5, "seed": seed, "ignore_eos": true})
			return choiceTexts(t, v)[0]
		}
		a, b, c := run(1), run(1), run(2)
		if a != b {
			t.Fatalf("same seed, different text: %q %q", a, b)
		}
		if a == c || a == greedy {
			t.Fatalf("sampling at temperature 1.5 did not change the text: %q %q %q", a, c, greedy)
		}
	})
	t.Run("no seed", func(t *testing.T) {
		// The server gives each prompt a random seed of its own (issue
		// 14): two equal prompts of one request, and the same request
		// sent twice, still draw differently, and the seed stays out of
		// the response.
		req := map[string]any{"prompt": []string{prompt, prompt}, "max_tokens": 24, "temperature": 1.5, "ignore_eos": true}
		v := r.post("/v1/completions", req)
		a := choiceTexts(t, v)
		b := choiceTexts(t, r.post("/v1/completions", req))
		if len(a) != 2 || a[0] == a[1] || a[0] == b[0] {
			t.Fatalf("unseeded samples repeat: %q then %q", a, b)
		}
		if raw, _ := json.Marshal(v); strings.Contains(string(raw), "seed") {
			t.Fatalf("the response names a seed: %s", raw)
		}
	})
	t.Run("top_k top_p min_p", func(t *testing.T) {
		// Each keeps only the most likely token, so sampling is greedy.
		for _, f := range []map[string]any{{"top_k": 1}, {"top_p": 1e-6}, {"min_p": 1}} {
			req := map[string]any{"prompt": prompt, "max_tokens": 24, "temperature": 2, "seed": 3, "ignore_eos": true}
			for k, v := range f {
				req[k] = v
			}
			if got := choiceTexts(t, r.post("/v1/completions", req))[0]; got != greedy {
				t.Fatalf("%v: %q, want %q", f, got, greedy)
			}
		}
		// top_k 0 and -1 are off.
		for _, k := range []int{0, -1} {
			r.post("/v1/completions", map[string]any{"prompt": prompt, "top_k": k, "max_tokens": 2})
		}
	})
	t.Run("stop", func(t *testing.T) {
		for _, stop := range []any{" Lily", []string{"zzz", " Lily"}} {
			v := r.post("/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": stop})
			want, _, _ := strings.Cut(greedy, " Lily")
			if got := choiceTexts(t, v)[0]; got != want || finishReason(v, 0) != "stop" {
				t.Fatalf("stop %v: %q (%s), want %q", stop, got, finishReason(v, 0), want)
			}
		}
	})
	t.Run("n", func(t *testing.T) {
		v := r.post("/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 12, "n": 3, "temperature": 1, "seed": 5, "ignore_eos": true})
		texts := choiceTexts(t, v)
		if len(texts) != 3 || texts[0] == texts[1] && texts[1] == texts[2] {
			t.Fatalf("n=3: %q", texts)
		}
		if _, c, _ := usageOf(t, v); c != 36 {
			t.Fatalf("completion_tokens %d, want 36", c)
		}
	})
	t.Run("echo", func(t *testing.T) {
		v := r.post("/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 24, "temperature": 0, "echo": true, "ignore_eos": true})
		if got := choiceTexts(t, v)[0]; got != prompt+greedy {
			t.Fatalf("echo: %q", got)
		}
	})
	t.Run("logprobs", func(t *testing.T) {
		v := r.post("/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 24, "temperature": 0, "logprobs": 3, "ignore_eos": true})
		c := v["choices"].([]any)[0].(map[string]any)
		text := []rune(c["text"].(string))
		lp := c["logprobs"].(map[string]any)
		toks, lps, tops, offs := lp["tokens"].([]any), lp["token_logprobs"].([]any), lp["top_logprobs"].([]any), lp["text_offset"].([]any)
		if len(toks) != 24 || len(lps) != 24 || len(tops) != 24 || len(offs) != 24 {
			t.Fatalf("logprobs lengths %d %d %d %d", len(toks), len(lps), len(tops), len(offs))
		}
		for i := range toks {
			tok, l, top, off := toks[i].(string), lps[i].(float64), tops[i].(map[string]any), int(offs[i].(float64))
			if l > 0 || len(top) < 3 || len(top) > 4 {
				t.Fatalf("token %d: logprob %v, top %v", i, l, top)
			}
			// Greedy: the token is the most likely one.
			for _, x := range top {
				if x.(float64) > l+1e-6 {
					t.Fatalf("token %d %q (%v) is not the most likely in %v", i, tok, l, top)
				}
			}
			if !strings.HasPrefix(string(text[off:]), tok) {
				t.Fatalf("text_offset %d of %q does not start %q", off, string(text), tok)
			}
		}
		// logprobs 0: the tokens' own log-probabilities only.
		v = r.post("/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 4, "temperature": 0, "logprobs": 0})
		lp = v["choices"].([]any)[0].(map[string]any)["logprobs"].(map[string]any)
		if top := lp["top_logprobs"].([]any)[0].(map[string]any); len(top) != 1 {
			t.Fatalf("logprobs 0: top %v", top)
		}
	})
	t.Run("penalties", func(t *testing.T) {
		greedy := greedyText(r, prompt, 64)
		for _, f := range []map[string]any{{"presence_penalty": 2}, {"frequency_penalty": 2}, {"repetition_penalty": 1.8}} {
			req := map[string]any{"prompt": prompt, "max_tokens": 64, "temperature": 0, "ignore_eos": true}
			for k, v := range f {
				req[k] = v
			}
			if got := choiceTexts(t, r.post("/v1/completions", req))[0]; got == greedy {
				t.Fatalf("%v did not change %q", f, got)
			}
			// A penalty that does nothing leaves the greedy text.
			for k := range f {
				if k == "repetition_penalty" {
					req[k] = 1
				} else {
					req[k] = 0
				}
			}
			if got := choiceTexts(t, r.post("/v1/completions", req))[0]; got != greedy {
				t.Fatalf("neutral %v changed the text: %q", req, got)
			}
		}
	})
	t.Run("logit_bias and ignore_eos", func(t *testing.T) {
		first := r.tok.Encode(prompt+greedy, true, false)[len(ids)]
		v := r.post("/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 4, "temperature": 0,
			"logit_bias": map[string]float64{fmt.Sprint(first): -100}})
		if strings.HasPrefix(greedy, choiceTexts(t, v)[0]) {
			t.Fatalf("banning token %d did not change %q", first, choiceTexts(t, v)[0])
		}
		eos := fmt.Sprint(r.tok.EOS())
		v = r.post("/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 5, "temperature": 0, "logit_bias": map[string]float64{eos: 100}})
		if _, c, _ := usageOf(t, v); c != 1 || finishReason(v, 0) != "stop" {
			t.Fatalf("EOS forced: %d tokens, %s", c, finishReason(v, 0))
		}
		v = r.post("/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 5, "temperature": 0, "logit_bias": map[string]float64{eos: 100}, "ignore_eos": true})
		if _, c, _ := usageOf(t, v); c != 5 || finishReason(v, 0) != "length" {
			t.Fatalf("ignore_eos: %d tokens, %s", c, finishReason(v, 0))
		}
	})
	t.Run("user and nulls", func(t *testing.T) {
		resp := r.do("POST", "/v1/completions", `{"prompt":"Once","user":"u-1","max_tokens":null,"temperature":null,"stop":null,"logit_bias":null,"seed":null}`)
		if resp.status != 200 {
			t.Fatalf("%d %s", resp.status, resp.body)
		}
	})
	r.waitIdle(2e9)
}

// TestStreaming: SSE chunks add up to the non-streamed text, end with
// data: [DONE], and carry usage as stream_options asks.
func TestStreaming(t *testing.T) {
	r := startRig(t, rigOptions{})
	want := greedyText(r, "Once upon a time", 20)
	for _, includeUsage := range []bool{false, true} {
		req := map[string]any{"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0, "ignore_eos": true, "stream": true}
		if includeUsage {
			req["stream_options"] = map[string]any{"include_usage": true}
		}
		events, done := r.sse("/v1/completions", req)
		if !done {
			t.Fatal("no data: [DONE]")
		}
		var text strings.Builder
		finish := ""
		var usage map[string]any
		for i, ev := range events {
			u, has := ev["usage"]
			switch {
			case !includeUsage && has:
				t.Fatalf("usage without include_usage: %v", ev)
			case includeUsage && i < len(events)-1 && (!has || u != nil):
				t.Fatalf("usage before the last chunk: %v", ev)
			case includeUsage && i == len(events)-1:
				usage = u.(map[string]any)
				if len(ev["choices"].([]any)) != 0 {
					t.Fatalf("usage chunk has choices: %v", ev)
				}
				continue
			}
			c := ev["choices"].([]any)[0].(map[string]any)
			text.WriteString(c["text"].(string))
			if f, ok := c["finish_reason"].(string); ok {
				finish = f
			}
		}
		if text.String() != want || finish != "length" {
			t.Fatalf("streamed %q (%s), want %q", text.String(), finish, want)
		}
		if includeUsage && (usage["completion_tokens"].(float64) != 20 || usage["prompt_tokens"].(float64) != 5) {
			t.Fatalf("usage %v", usage)
		}
	}
	// Echo, n and logprobs stream too.
	events, done := r.sse("/v1/completions", map[string]any{"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0,
		"ignore_eos": true, "stream": true, "echo": true, "n": 2})
	texts := map[float64]string{}
	for _, ev := range events {
		c := ev["choices"].([]any)[0].(map[string]any)
		texts[c["index"].(float64)] += c["text"].(string)
	}
	if !done || texts[0] != "Once upon a time"+want || texts[1] != texts[0] {
		t.Fatalf("echo n=2: %v", texts)
	}
	events, _ = r.sse("/v1/completions", map[string]any{"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "stream": true, "logprobs": 2})
	for _, ev := range events {
		c := ev["choices"].([]any)[0].(map[string]any)
		if c["logprobs"] == nil {
			t.Fatalf("chunk without logprobs: %v", ev)
		}
	}
	r.waitIdle(2e9)
}

// TestChat: chat completions render the chat template, stream delta
// chunks, and take max_completion_tokens as max_tokens.
func TestChat(t *testing.T) {
	r := startRig(t, rigOptions{})
	msgs := []map[string]any{{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story."}}
	v := r.post("/v1/chat/completions", map[string]any{"model": "stories260K", "messages": msgs, "max_tokens": 12, "temperature": 0, "ignore_eos": true})
	if v["object"] != "chat.completion" || !strings.HasPrefix(v["id"].(string), "chatcmpl-") {
		t.Fatalf("envelope %v", v)
	}
	msg := v["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
	want := msg["content"].(string)
	if msg["role"] != "assistant" || want == "" || finishReason(v, 0) != "length" {
		t.Fatalf("message %v", v)
	}
	// The prompt is the ChatML rendering (stories260K has no template).
	rendered := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n"
	p, _, _ := usageOf(t, v)
	if wantIDs := r.tok.Encode(rendered, true, true); p != len(wantIDs) {
		t.Fatalf("prompt_tokens %d, want %d", p, len(wantIDs))
	}
	tv := r.post("/tokenize", map[string]any{"messages": msgs})
	if int(tv["count"].(float64)) != p {
		t.Fatalf("/tokenize of the messages: %v tokens, want %d", tv["count"], p)
	}
	// max_completion_tokens, and content as text parts.
	parts := []map[string]any{{"role": "system", "content": []map[string]any{{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}}},
		{"role": "user", "content": "Tell me a story."}}
	v = r.post("/v1/chat/completions", map[string]any{"messages": parts, "max_completion_tokens": 12, "temperature": 0, "ignore_eos": true})
	if got := choiceTexts(t, v)[0]; got != want {
		t.Fatalf("parts: %q, want %q", got, want)
	}
	// Logprobs in the chat shape.
	v = r.post("/v1/chat/completions", map[string]any{"messages": msgs, "max_tokens": 3, "temperature": 0, "logprobs": true, "top_logprobs": 2})
	content := v["choices"].([]any)[0].(map[string]any)["logprobs"].(map[string]any)["content"].([]any)
	if len(content) != 3 || len(content[0].(map[string]any)["top_logprobs"].([]any)) != 2 {
		t.Fatalf("chat logprobs %v", content)
	}
	// Streamed: a role chunk, content deltas, a finish chunk, [DONE].
	events, done := r.sse("/v1/chat/completions", map[string]any{"messages": msgs, "max_tokens": 12, "temperature": 0, "ignore_eos": true,
		"stream": true, "stream_options": map[string]any{"include_usage": true}})
	if !done {
		t.Fatal("no [DONE]")
	}
	var text strings.Builder
	first := events[0]["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)
	if first["role"] != "assistant" {
		t.Fatalf("first delta %v", first)
	}
	finish := ""
	for _, ev := range events {
		if ev["object"] != "chat.completion.chunk" {
			t.Fatalf("object %v", ev["object"])
		}
		cs := ev["choices"].([]any)
		if len(cs) == 0 {
			if _, c, _ := usageOf(t, ev); c != 12 {
				t.Fatalf("usage %v", ev)
			}
			continue
		}
		c := cs[0].(map[string]any)
		if s, ok := c["delta"].(map[string]any)["content"].(string); ok {
			text.WriteString(s)
		}
		if f, ok := c["finish_reason"].(string); ok {
			finish = f
		}
	}
	if text.String() != want || finish != "length" {
		t.Fatalf("streamed %q (%s), want %q", text.String(), finish, want)
	}
	r.waitIdle(2e9)
}

// TestTokenize: /tokenize and /detokenize round-trip, with and without the
// special tokens.
func TestTokenize(t *testing.T) {
	r := startRig(t, rigOptions{})
	promptIDs, _ := goldenContinuation(t)
	v := r.post("/tokenize", map[string]any{"model": "stories260K", "prompt": "Once upon a time"})
	got, _ := json.Marshal(v["tokens"])
	want, _ := json.Marshal(promptIDs)
	if string(got) != string(want) || int(v["count"].(float64)) != len(promptIDs) || v["max_model_len"].(float64) != 2048 {
		t.Fatalf("tokenize: %v, want %s", v, want)
	}
	v = r.post("/tokenize", map[string]any{"prompt": "Once upon a time", "add_special_tokens": false})
	if toks := v["tokens"].([]any); len(toks) != len(promptIDs)-1 || int32(toks[0].(float64)) != promptIDs[1] {
		t.Fatalf("without BOS: %v", toks)
	}
	v = r.post("/detokenize", map[string]any{"tokens": promptIDs[1:]})
	if v["prompt"] != "Once upon a time" {
		t.Fatalf("detokenize: %q", v["prompt"])
	}
}

// TestModelsHealthMetrics: /v1/models lists the model, /health is 200 when
// ready, and /metrics has vLLM's series with the traffic counted.
func TestModelsHealthMetrics(t *testing.T) {
	r := startRig(t, rigOptions{})
	v := r.do("GET", "/v1/models", "").json(t)
	data := v["data"].([]any)
	if v["object"] != "list" || len(data) != 1 || data[0].(map[string]any)["id"] != "stories260K" || data[0].(map[string]any)["object"] != "model" {
		t.Fatalf("models %v", v)
	}
	if resp := r.do("GET", "/health", ""); resp.status != 200 {
		t.Fatalf("health %d", resp.status)
	}
	r.post("/v1/completions", map[string]any{"prompt": "Once upon a time", "max_tokens": 8, "ignore_eos": true})
	r.post("/v1/completions", map[string]any{"prompt": "Once upon a time", "max_tokens": 8, "ignore_eos": true})
	resp := r.do("GET", "/metrics", "")
	if resp.status != 200 || !strings.HasPrefix(resp.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics %d %s", resp.status, resp.header.Get("Content-Type"))
	}
	text := string(resp.body)
	series := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, _ := strings.Cut(line, " ")
		var f float64
		fmt.Sscan(val, &f)
		series[name] = f
	}
	lbl := `{model_name="stories260K"}`
	for name, check := range map[string]func(float64) bool{
		"vllm:num_requests_running":              func(v float64) bool { return v == 0 },
		"vllm:num_requests_waiting":              func(v float64) bool { return v == 0 },
		"vllm:kv_cache_usage_perc":               func(v float64) bool { return v == 0 },
		"vllm:time_to_first_token_seconds_count": func(v float64) bool { return v == 2 },
		"vllm:inter_token_latency_seconds_count": func(v float64) bool { return v == 14 },
		"vllm:e2e_request_latency_seconds_count": func(v float64) bool { return v == 2 },
		"vllm:request_queue_time_seconds_count":  func(v float64) bool { return v == 2 },
		"vllm:prompt_tokens_total":               func(v float64) bool { return v >= 5 && v <= 10 },
		"vllm:generation_tokens_total":           func(v float64) bool { return v == 16 },
		"vllm:num_preemptions_total":             func(v float64) bool { return v == 0 },
		"vllm:prefix_cache_queries_total":        func(v float64) bool { return v >= 5 },
		"vllm:prefix_cache_hits_total":           func(v float64) bool { return v >= 0 },
	} {
		v, ok := series[name+lbl]
		if !ok || !check(v) || math.IsNaN(v) {
			t.Errorf("%s = %v (present %v)", name, v, ok)
		}
	}
	if !strings.Contains(text, `godwit_http_requests_total{code="200",path="/v1/completions"} 2`) {
		t.Errorf("godwit_http_requests_total missing:\n%s", text)
	}
}

// TestBadRequests: each malformed or refused request gets its status and an
// OpenAI-shaped error naming the problem.
func TestBadRequests(t *testing.T) {
	r := startRig(t, rigOptions{cfg: Config{MaxBodySize: 64 << 10}})
	keyed := startRig(t, rigOptions{cfg: Config{APIKeys: []string{"k1", "k2"}}})
	loading := startRig(t, rigOptions{loading: true})
	big := `{"prompt":"` + strings.Repeat("a", 70<<10) + `"}`
	for _, c := range []struct {
		name, method, path, body string
		rig                      *rig
		headers                  []string
		status                   int
		typ, param, says         string
	}{
		{name: "malformed JSON", body: `{"prompt":`, status: 400, typ: typeInvalid, says: "malformed JSON"},
		{name: "not an object", body: `[1,2]`, status: 400, typ: typeInvalid, says: "JSON object"},
		{name: "a second value", body: `{"prompt":"a"} {"prompt":"b"}`, status: 400, typ: typeInvalid, says: "follows"},
		{name: "a stray bracket after the object", body: `{"prompt":"a"}],"max_tokens":3`, status: 400, typ: typeInvalid, says: "follows"},
		{name: "empty body", body: ` `, status: 400, typ: typeInvalid, says: "empty"},
		{name: "wrong type", body: `{"prompt":"a","temperature":"hot"}`, status: 400, typ: typeInvalid, param: "temperature", says: "number"},
		{name: "wrong prompt type", body: `{"prompt":{"a":1}}`, status: 400, typ: typeInvalid, param: "prompt"},
		{name: "mixed prompt", body: `{"prompt":["a",1]}`, status: 400, typ: typeInvalid, param: "prompt"},
		{name: "missing prompt", body: `{"max_tokens":3}`, status: 400, typ: typeInvalid, param: "prompt"},
		{name: "negative temperature", body: `{"prompt":"a","temperature":-0.5}`, status: 400, typ: typeInvalid, param: "temperature"},
		{name: "top_p zero", body: `{"prompt":"a","top_p":0}`, status: 400, typ: typeInvalid, param: "top_p"},
		{name: "top_p above 1", body: `{"prompt":"a","top_p":1.5}`, status: 400, typ: typeInvalid, param: "top_p"},
		{name: "top_k below -1", body: `{"prompt":"a","top_k":-2}`, status: 400, typ: typeInvalid, param: "top_k"},
		{name: "min_p above 1", body: `{"prompt":"a","min_p":2}`, status: 400, typ: typeInvalid, param: "min_p"},
		{name: "max_tokens 0", body: `{"prompt":"a","max_tokens":0}`, status: 400, typ: typeInvalid, param: "max_tokens"},
		{name: "n above the limit", body: `{"prompt":"a","n":17}`, status: 400, typ: typeInvalid, param: "n", says: "16"},
		{name: "presence_penalty out of range", body: `{"prompt":"a","presence_penalty":3}`, status: 400, typ: typeInvalid, param: "presence_penalty"},
		{name: "repetition_penalty 0", body: `{"prompt":"a","repetition_penalty":0}`, status: 400, typ: typeInvalid, param: "repetition_penalty"},
		{name: "logit_bias token", body: `{"prompt":"a","logit_bias":{"99999":1}}`, status: 400, typ: typeInvalid, param: "logit_bias"},
		{name: "logit_bias value", body: `{"prompt":"a","logit_bias":{"5":500}}`, status: 400, typ: typeInvalid, param: "logit_bias"},
		{name: "logprobs above 20", body: `{"prompt":"a","logprobs":21}`, status: 400, typ: typeInvalid, param: "logprobs"},
		{name: "echo with logprobs", body: `{"prompt":"a","echo":true,"logprobs":1}`, status: 400, typ: typeInvalid, param: "echo"},
		{name: "stop type", body: `{"prompt":"a","stop":5}`, status: 400, typ: typeInvalid, param: "stop"},
		{name: "token id outside the vocabulary", body: `{"prompt":[1,5000]}`, status: 400, typ: typeInvalid, param: "prompt", says: "vocabulary"},
		{name: "n 0", body: `{"prompt":"a","n":0}`, status: 400, typ: typeInvalid, param: "n"},
		{name: "frequency_penalty out of range", body: `{"prompt":"a","frequency_penalty":-3}`, status: 400, typ: typeInvalid, param: "frequency_penalty"},
		{name: "unsupported field", body: `{"prompt":"a","best_of":2}`, status: 400, typ: typeInvalid, param: "best_of", says: "best_of"},
		{name: "unsupported stream option", body: `{"prompt":"a","stream":true,"stream_options":{"continuous_usage_stats":true}}`, status: 400, typ: typeInvalid, param: "continuous_usage_stats"},
		{name: "stream_options without stream", body: `{"prompt":"a","stream_options":{"include_usage":true}}`, status: 400, typ: typeInvalid, param: "stream_options"},
		{name: "invalid UTF-8", body: "{\"prompt\":\"a\xff\"}", status: 400, typ: typeInvalid, says: "UTF-8"},
		{name: "beyond the context", body: `{"prompt":"Once upon a time","max_tokens":2045}`, status: 400, typ: typeInvalid, param: "max_tokens", says: "2048 tokens, but 2050"},
		{name: "max_tokens that overflows a sum", body: `{"prompt":"Once upon a time","max_tokens":9223372036854775807}`, status: 400, typ: typeInvalid, param: "max_tokens", says: "9223372036854775812 tokens were requested"},
		{name: "chat: max_completion_tokens that overflows a sum", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":9223372036854775807}`, status: 400, typ: typeInvalid, param: "max_completion_tokens"},
		{name: "cluster on a node alone", method: "GET", path: "/v1/cluster", status: 404, typ: typeInvalid, says: "not in a cluster"},
		{name: "chat: no messages", path: "/v1/chat/completions", body: `{"messages":[]}`, status: 400, typ: typeInvalid, param: "messages"},
		{name: "chat: a user message without content", path: "/v1/chat/completions", body: `{"messages":[{"role":"user"}]}`, status: 400, typ: typeInvalid, param: "messages", says: "messages[0] (user) has no content"},
		{name: "chat: a system message with null content", path: "/v1/chat/completions", body: `{"messages":[{"role":"system","content":null},{"role":"user","content":"x"}]}`, status: 400, typ: typeInvalid, param: "messages", says: "messages[0] (system)"},
		{name: "chat: bad role", path: "/v1/chat/completions", body: `{"messages":[{"role":"wizard","content":"x"}]}`, status: 400, typ: typeInvalid, param: "messages"},
		{name: "chat: image part", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, status: 400, typ: typeInvalid, param: "messages"},
		{name: "chat: a tool of another type", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"code_interpreter"}]}`, status: 400, typ: typeInvalid, param: "tools", says: "function"},
		{name: "chat: max_tokens 0", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":"x"}],"max_tokens":0}`, status: 400, typ: typeInvalid, param: "max_tokens"},
		{name: "chat: max_completion_tokens 0", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":0}`, status: 400, typ: typeInvalid, param: "max_completion_tokens", says: "max_completion_tokens"},
		{name: "chat: top_logprobs above 20", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21}`, status: 400, typ: typeInvalid, param: "top_logprobs", says: "20"},
		{name: "chat: top_logprobs alone", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":"x"}],"top_logprobs":2}`, status: 400, typ: typeInvalid, param: "top_logprobs"},
		{name: "detokenize: bad ids", path: "/detokenize", body: `{"tokens":[-1]}`, status: 400, typ: typeInvalid, param: "tokens"},
		{name: "unknown model", body: `{"model":"gpt-4","prompt":"a"}`, status: 404, typ: typeInvalid, says: "gpt-4"},
		{name: "unknown route", path: "/v1/embeddings", body: `{}`, status: 404, typ: typeInvalid},
		{name: "wrong method", method: "GET", path: "/v1/completions", status: 405, typ: typeInvalid},
		{name: "body over the limit", body: big, status: 413, typ: typeInvalid, says: "65536"},
		{name: "no API key", rig: keyed, body: `{"prompt":"a"}`, status: 401, typ: typeAuth},
		{name: "wrong API key", rig: keyed, body: `{"prompt":"a"}`, headers: []string{"Authorization", "Bearer nope"}, status: 401, typ: typeAuth},
		{name: "health takes GET", method: "POST", path: "/health", status: 405, typ: typeInvalid, says: "GET"},
		{name: "metrics takes GET", method: "DELETE", path: "/metrics", status: 405, typ: typeInvalid, says: "GET"},
		{name: "models need the key", rig: keyed, method: "GET", path: "/v1/models", status: 401, typ: typeAuth},
		{name: "loading", rig: loading, body: `{"prompt":"a"}`, status: 503, typ: typeUnavailable, says: "loading"},
		{name: "health while loading", rig: loading, method: "GET", path: "/health", status: 503, typ: typeUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			rr := c.rig
			if rr == nil {
				rr = r
			}
			if c.method == "" {
				c.method = "POST"
			}
			if c.path == "" {
				c.path = "/v1/completions"
			}
			resp := rr.do(c.method, c.path, c.body, c.headers...)
			checkError(t, resp, c.status, c.typ, c.param, c.says)
		})
	}
	// The right keys work, whatever the case of the scheme (RFC 9110).
	for _, auth := range []string{"Bearer k1", "Bearer k2", "bearer k1", "BEARER k2"} {
		if resp := keyed.do("POST", "/v1/completions", `{"prompt":"a","max_tokens":1}`, "Authorization", auth); resp.status != 200 {
			t.Fatalf("Authorization: %s: %d %s", auth, resp.status, resp.body)
		}
	}
	for _, method := range []string{"GET", "HEAD"} {
		if resp := keyed.do(method, "/health", ""); resp.status != 200 {
			t.Fatalf("%s /health needs no key: %d", method, resp.status)
		}
	}
	// Nothing was left behind.
	r.waitIdle(2e9)
}

func checkError(t *testing.T, resp response, status int, typ, param, says string) {
	t.Helper()
	if resp.status != status {
		t.Fatalf("status %d, want %d: %s", resp.status, status, resp.body)
	}
	var body struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Param   any    `json:"param"`
			Code    any    `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.body, &body); err != nil || body.Error == nil {
		t.Fatalf("not an OpenAI error: %q", resp.body)
	}
	var raw map[string]map[string]any
	json.Unmarshal(resp.body, &raw)
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := raw["error"][k]; !ok {
			t.Fatalf("error has no %q: %s", k, resp.body)
		}
	}
	e := body.Error
	if e.Type != typ || e.Message == "" {
		t.Fatalf("type %q, want %q: %s", e.Type, typ, resp.body)
	}
	if param != "" && e.Param != param {
		t.Fatalf("param %v, want %q: %s", e.Param, param, resp.body)
	}
	if !strings.Contains(e.Message, says) {
		t.Fatalf("message %q does not say %q", e.Message, says)
	}
	if !utf8.ValidString(e.Message) {
		t.Fatalf("message is not UTF-8")
	}
	if status == http.StatusTooManyRequests && resp.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
}

// TestRetrieveModel: GET /v1/models/{id} answers the model's object (what
// the OpenAI SDK's models.retrieve reads), 404 for another id, 401 without
// a key where keys are set.
func TestRetrieveModel(t *testing.T) {
	r := startRig(t, rigOptions{cfg: Config{ModelName: "org/stories"}})
	got := r.do("GET", "/v1/models/org/stories", "")
	v := got.json(t)
	if got.status != 200 || v["id"] != "org/stories" || v["object"] != "model" || v["max_model_len"] == nil {
		t.Fatalf("GET /v1/models/org/stories: %d %s", got.status, got.body)
	}
	if got := r.do("GET", "/v1/models/other", ""); got.status != 404 || !strings.Contains(string(got.body), "model_not_found") {
		t.Fatalf("another id: %d %s", got.status, got.body)
	}
	if got := r.do("GET", "/v1/models/", ""); got.status != 404 {
		t.Fatalf("no id: %d %s", got.status, got.body)
	}
	keyed := startRig(t, rigOptions{cfg: Config{APIKeys: []string{"k"}}})
	if got := keyed.do("GET", "/v1/models/stories260K", ""); got.status != 401 {
		t.Fatalf("no key: %d", got.status)
	}
	if got := keyed.do("GET", "/v1/models/stories260K", "", "Authorization", "Bearer k"); got.status != 200 {
		t.Fatalf("with the key: %d %s", got.status, got.body)
	}
}

// TestInertFields: fields that clients send and that change nothing are
// accepted (and logged at debug level); a tool_choice that needs tools,
// without them, is refused naming the field.
func TestInertFields(t *testing.T) {
	r := startRig(t, rigOptions{})
	inert := `"store":false,"metadata":{"k":"v"},"service_tier":"auto","user":"u"`
	for _, c := range []struct{ path, body string }{
		{"/v1/completions", `{"prompt":"Once","max_tokens":2,` + inert + `}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"parallel_tool_calls":true,"tool_choice":"none",` + inert + `}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"tool_choice":"auto"}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"tools":[]}`},
	} {
		if got := r.do("POST", c.path, c.body); got.status != 200 {
			t.Errorf("%s %s: %d %s", c.path, c.body, got.status, got.body)
		}
	}
	if !strings.Contains(r.logText(), "accepted fields that do not change the output") || !strings.Contains(r.logText(), "service_tier") {
		t.Errorf("no debug line for the inert fields:\n%s", r.logText())
	}
	for _, c := range []struct{ body, param string }{
		{`{"messages":[{"role":"user","content":"Hi"}],"tool_choice":"required"}`, "tool_choice"},
		{`{"messages":[{"role":"user","content":"Hi"}],"tool_choice":{"type":"function","function":{"name":"f"}}}`, "tool_choice"},
		{`{"messages":[{"role":"user","content":"Hi"}],"store":"yes"}`, "store"},
	} {
		got := r.do("POST", "/v1/chat/completions", c.body)
		if got.status != 400 || got.json(t)["error"].(map[string]any)["param"] != c.param {
			t.Errorf("%s: %d %s, want 400 naming %s", c.body, got.status, got.body, c.param)
		}
	}
}

// TestResponseFormatJSONObject: with response_format json_object every
// output is one JSON object (encoding/json, not the code under test, says
// so), closed in time when max_tokens would cut it; streamed, the chunks
// add up to the same.
func TestResponseFormatJSONObject(t *testing.T) {
	r := startRig(t, rigOptions{})
	whole := 0
	for seed := range 24 {
		v := r.post("/v1/chat/completions", map[string]any{"messages": []map[string]string{{"role": "user", "content": "Give me JSON."}},
			"response_format": map[string]any{"type": "json_object"}, "temperature": 1, "seed": seed, "max_tokens": 120})
		msg := v["choices"].([]any)[0].(map[string]any)
		text := msg["message"].(map[string]any)["content"].(string)
		var obj map[string]any
		if err := json.Unmarshal([]byte(text), &obj); err != nil {
			t.Fatalf("seed %d: %q (%s) is not a JSON object: %v", seed, text, finishReason(v, 0), err)
		}
		if finishReason(v, 0) == "stop" {
			whole++
		}
	}
	t.Logf("%d of 24 outputs ended on their own within 120 tokens, the others were closed in time", whole)
	body := map[string]any{"prompt": "Once upon a time", "response_format": map[string]any{"type": "json_object"},
		"temperature": 1, "seed": 5, "max_tokens": 120}
	whole1 := choiceTexts(t, r.post("/v1/completions", body))[0]
	body["stream"] = true
	events, done := r.sse("/v1/completions", body)
	var streamed strings.Builder
	for _, ev := range events {
		for _, c := range ev["choices"].([]any) {
			streamed.WriteString(c.(map[string]any)["text"].(string))
		}
	}
	if !done || streamed.String() != whole1 || !json.Valid([]byte(whole1)) {
		t.Fatalf("streamed %q (done %v), whole %q", streamed.String(), done, whole1)
	}
	// Each of n samples follows the format on its own.
	body = map[string]any{"prompt": "Once upon a time", "response_format": map[string]any{"type": "json_object"},
		"temperature": 1, "seed": 9, "max_tokens": 60, "n": 3}
	texts := choiceTexts(t, r.post("/v1/completions", body))
	for _, text := range texts {
		if !json.Valid([]byte(text)) || !strings.HasPrefix(strings.TrimSpace(text), "{") {
			t.Fatalf("n=3: %q is not a JSON object", text)
		}
	}
	if len(texts) != 3 || texts[0] == texts[1] && texts[1] == texts[2] {
		t.Fatalf("n=3: %q", texts)
	}
}
