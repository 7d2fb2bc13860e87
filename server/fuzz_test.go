package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Request bodies the fuzz targets start from: valid requests of every shape,
// and the hostile ones an attack on the server sent.
var (
	completionSeeds = []string{
		`{"prompt":"Once upon a time","max_tokens":8}`,
		`{"prompt":["Once","Lily"],"max_tokens":4,"n":2,"stream":true}`,
		`{"prompt":[1,2,3],"max_tokens":3,"logprobs":5,"echo":true}`,
		`{"prompt":[[1,2],[3]],"max_tokens":2,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"prompt":"Once","max_tokens":3,"temperature":0.8,"top_p":0.9,"top_k":5,"min_p":0.1,"seed":7}`,
		`{"prompt":"Once","max_tokens":4,"stop":["a","b","c","d"],"frequency_penalty":1,"presence_penalty":-1,"repetition_penalty":1.2}`,
		`{"prompt":"Once","max_tokens":2,"logit_bias":{"1":100,"-5":1,"abc":2}}`,
		`{"prompt":"Once","max_tokens":0,"echo":true}`,
		`{"prompt":"x","max_tokens":9223372036854775807}`,
		`{"prompt":"x","max_tokens":1e308}`,
		`{"prompt":"x","max_tokens":-1}`,
		`{"prompt":"x","temperature":1e308}`,
		`{"prompt":"x","n":1e308}`,
		`{"prompt":"x","n":100000}`,
		`{"prompt":"x","seed":1e30}`,
		`{"prompt":"x","logprobs":1000000}`,
		`{"prompt":[-1,99999999]}`,
		`{"prompt":[[]]}`,
		`{"prompt":"\ud800\udfff\u0000"}`,
		`{"prompt":"x","best_of":3,"n":2}`,
		`{"prompt":"x","suffix":"y"}`,
		`{"model":"other","prompt":"x"}`,
		`{"prompt":null}`,
		`{"prompt":{}}`,
		`{}`,
		`null`,
		``,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`,
		`{"prompt":"x","stream":"yes"}`,
	}
	chatSeeds = []string{
		`{"messages":[{"role":"user","content":"Hello"}],"max_tokens":8}`,
		`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello."},{"role":"user","content":"A story?"}],"max_completion_tokens":6,"stream":true}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"max_tokens":3,"n":2}`,
		`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}`,
		`{"messages":[{"role":"user","content":"Hi","name":"bob"}],"max_tokens":2,"logprobs":true,"top_logprobs":3}`,
		`{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"messages":[{"role":"tool","content":"42","tool_call_id":"a"}]}`,
		`{"messages":[{"role":"user"}],"max_tokens":4}`,
		`{"messages":[{"role":"user","content":null}],"max_tokens":4}`,
		`{"messages":[{"role":"wizard","content":"x"}]}`,
		`{"messages":[]}`,
		`{"messages":{}}`,
		`{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":1e308}`,
		`{"messages":[{"role":"user","content":"x"}],"max_tokens":9223372036854775807}`,
		`{"messages":[{"role":"user","content":"x"}],"temperature":1e308,"top_p":-1}`,
		`{"messages":[{"role":"user","content":"x"}],"top_logprobs":1000}`,
		`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto"}`,
		`{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}`,
		`{"messages":[{"role":"user","content":"\ud800"}],"stop":"\u0000","max_tokens":4}`,
		`{"messages":"hello"}`,
		`null`,
		``,
	}
)

// FuzzCompletionRequest: whatever body is posted to /v1/completions, the
// answer comes within ten seconds and is a 200 with a well-formed completion or stream,
// or a 4xx with an OpenAI error body; never a 5xx, a panic or a hang.
func FuzzCompletionRequest(f *testing.F) { fuzzRequests(f, "/v1/completions", completionSeeds) }

// FuzzChatRequest is FuzzCompletionRequest for /v1/chat/completions.
func FuzzChatRequest(f *testing.F) { fuzzRequests(f, "/v1/chat/completions", chatSeeds) }

func fuzzRequests(f *testing.F, path string, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	// A context of 256 keeps each input short: a chat without max_tokens
	// runs to the end of it, n times over. Ten seconds is a hang.
	r := startRig(f, rigOptions{context: 256})
	client := &http.Client{Timeout: 10 * time.Second}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := client.Post(r.url+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%q: reading the answer: %v", body, err)
		}
		checkAnswer(t, body, response{resp.StatusCode, resp.Header, b})
	})
}

// checkAnswer fails unless resp is a well-formed success or a client error.
func checkAnswer(t *testing.T, req []byte, resp response) {
	t.Helper()
	switch {
	case resp.status >= 400 && resp.status < 500:
		var e struct {
			Error *struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(resp.body, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Fatalf("%q: status %d without an OpenAI error body: %q", req, resp.status, resp.body)
		}
	case resp.status != 200:
		t.Fatalf("%q: status %d: %s", req, resp.status, resp.body)
	case strings.HasPrefix(resp.header.Get("Content-Type"), "text/event-stream"):
		events, done := readSSE(t, bytes.NewReader(resp.body))
		for _, ev := range events {
			if ev["error"] != nil {
				t.Fatalf("%q: an error event in a stream: %v", req, ev)
			}
		}
		if !done {
			t.Fatalf("%q: the stream did not end with [DONE]", req)
		}
	default:
		var v struct {
			Choices []json.RawMessage `json:"choices"`
		}
		if err := json.Unmarshal(resp.body, &v); err != nil || len(v.Choices) == 0 {
			t.Fatalf("%q: a 200 without choices: %q", req, resp.body)
		}
	}
}
