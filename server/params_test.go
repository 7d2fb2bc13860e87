package server

import (
	"strings"
	"testing"
)

// TestOutOfRangeParams: a number far out of its field's range (1e308, too
// big for its type, negative, a token id outside the vocabulary) gets a 400
// whose param names the field, on completions and chat alike, and no 500.
func TestOutOfRangeParams(t *testing.T) {
	r := startRig(t, rigOptions{})
	shared := []struct{ field, param, says string }{
		{`"temperature":1e308`, "temperature", "temperature"},
		{`"temperature":1e400`, "temperature", "in range"},
		{`"temperature":-1e308`, "temperature", "temperature"},
		{`"top_p":1e308`, "top_p", "top_p"},
		{`"top_p":-1`, "top_p", "top_p"},
		{`"min_p":1e308`, "min_p", "min_p"},
		{`"top_k":1e308`, "top_k", "in range"},
		{`"top_k":-5`, "top_k", "top_k"},
		{`"presence_penalty":1e308`, "presence_penalty", "presence_penalty"},
		{`"frequency_penalty":-1e308`, "frequency_penalty", "frequency_penalty"},
		{`"repetition_penalty":1e308`, "repetition_penalty", "repetition_penalty"},
		{`"max_tokens":1e308`, "max_tokens", "in range"},
		{`"max_tokens":-1`, "max_tokens", "max_tokens"},
		{`"n":1e308`, "n", "in range"},
		{`"n":-1`, "n", "at least 1"},
		{`"n":-9223372036854775808`, "n", "at least 1"},
		{`"seed":1e30`, "seed", "in range"},
		{`"logit_bias":{"99999999999":1}`, "logit_bias", "token ids"},
		{`"logit_bias":{"512":1}`, "logit_bias", "vocabulary"},
		{`"logit_bias":{"-1":1}`, "logit_bias", "vocabulary"},
		{`"logit_bias":{"1":1e308}`, "logit_bias", "logit_bias"},
	}
	type tc struct{ path, body, param, says string }
	var cases []tc
	for _, c := range shared {
		cases = append(cases,
			tc{"/v1/completions", `{"prompt":"a",` + c.field + `}`, c.param, c.says},
			tc{"/v1/chat/completions", `{"messages":[{"role":"user","content":"a"}],` + c.field + `}`, c.param, c.says})
	}
	cases = append(cases,
		tc{"/v1/completions", `{"prompt":"a","logprobs":1e308}`, "logprobs", "in range"},
		tc{"/v1/completions", `{"prompt":"a","logprobs":-1}`, "logprobs", "logprobs"},
		tc{"/v1/completions", `{"prompt":[1,2,99999]}`, "prompt", "vocabulary"},
		tc{"/v1/completions", `{"prompt":[-1]}`, "prompt", "vocabulary"},
		tc{"/v1/completions", `{"prompt":[[1],[2147483647]]}`, "prompt", "vocabulary"},
		tc{"/v1/completions", `{"prompt":[1e308]}`, "prompt", "prompt"},
		tc{"/v1/chat/completions", `{"messages":[{"role":"user","content":"a"}],"max_completion_tokens":1e308}`, "max_completion_tokens", "in range"},
		tc{"/v1/chat/completions", `{"messages":[{"role":"user","content":"a"}],"logprobs":true,"top_logprobs":1e308}`, "top_logprobs", "in range"},
		tc{"/v1/chat/completions", `{"messages":[{"role":"user","content":"a"}],"logprobs":true,"top_logprobs":-1}`, "top_logprobs", "top_logprobs"},
		tc{"/detokenize", `{"tokens":[2147483647]}`, "tokens", "vocabulary"},
	)
	for _, c := range cases {
		t.Run(strings.TrimPrefix(c.path, "/v1/")+" "+c.body, func(t *testing.T) {
			checkError(t, r.do("POST", c.path, c.body), 400, typeInvalid, c.param, c.says)
		})
	}
	r.waitIdle(2e9)
}
