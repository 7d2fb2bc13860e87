package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Target is one OpenAI-compatible endpoint under test, or several loaded
// as one.
type Target struct {
	Name string `json:"name"`
	URL  string `json:"url"` // base URL, without /v1
	// Spread, when it holds more than one base URL, is where requests go,
	// in turn (URL is its first): a fleet's nodes loaded evenly by the
	// client, to set beside the same load sent to one node.
	Spread []string `json:"spread,omitempty"`
	Model  string   `json:"model"`
	APIKey string   `json:"-"`
	turn   atomic.Uint64
}

// next is the base URL of the next request.
func (t *Target) next() string {
	if len(t.Spread) < 2 {
		return t.URL
	}
	return t.Spread[(t.turn.Add(1)-1)%uint64(len(t.Spread))]
}

// Request is one prompt to send: token ids (exact length) or text.
type Request struct {
	Tokens    []int32 `json:"-"`
	Text      string  `json:"-"`
	MaxTokens int     `json:"max_tokens"`
	// InputTokens is the prompt's length as far as the client knows it.
	InputTokens int `json:"input_tokens"`
}

// Client sends requests to targets.
type Client struct {
	HTTP      *http.Client
	Timeout   time.Duration // per request; 0: none
	IgnoreEOS bool          // send ignore_eos so that every request generates max_tokens
	Now       func() time.Time
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

var idem atomic.Uint64

func base(u string) string { return strings.TrimSuffix(strings.TrimSuffix(u, "/"), "/v1") }

func (c *Client) post(ctx context.Context, t *Target, path string, body any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base(t.next())+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	// With an idempotency key Go's transport resends a request that failed
	// on a kept-alive connection the server had already closed before
	// reading it (cpp-httplib, under llama-server, closes one after a few
	// requests); otherwise that shows as a connection error.
	req.Header.Set("Idempotency-Key", strconv.FormatUint(idem.Add(1), 10))
	if t.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+t.APIKey)
	}
	return c.http().Do(req)
}

// Do sends one streamed completion and records it. levelStart is the time
// its level began.
func (c *Client) Do(ctx context.Context, t *Target, r Request, levelStart time.Time) Sample {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	body := map[string]any{
		"model":          t.Model,
		"max_tokens":     r.MaxTokens,
		"stream":         true,
		"stream_options": map[string]any{"include_usage": true},
		"temperature":    0,
	}
	if r.Tokens != nil {
		body["prompt"] = r.Tokens
	} else {
		body["prompt"] = r.Text
	}
	if c.IgnoreEOS {
		body["ignore_eos"] = true
	}
	sent := c.now()
	rec := newRecorder(levelStart, sent, r.InputTokens)
	resp, err := c.post(ctx, t, "/v1/completions", body)
	if err != nil {
		return rec.end(c.now(), err, errors.Is(ctx.Err(), context.DeadlineExceeded))
	}
	defer resp.Body.Close()
	rec.status(resp.StatusCode)
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			rec.line(c.now(), line)
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return rec.end(c.now(), err, errors.Is(ctx.Err(), context.DeadlineExceeded))
		}
	}
}

// Models returns the ids the target serves (GET /v1/models).
func (c *Client) Models(ctx context.Context, t *Target) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base(t.URL)+"/v1/models", nil)
	if err != nil {
		return nil, err
	}
	if t.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+t.APIKey)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /v1/models: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("GET /v1/models: %w", err)
	}
	ids := make([]string, len(v.Data))
	for i, d := range v.Data {
		ids[i] = d.ID
	}
	return ids, nil
}

// Tokenizer turns text into token ids, without BOS or other added tokens.
type Tokenizer interface {
	Encode(ctx context.Context, text string) ([]int32, error)
}

// TokenizerFunc adapts a function (a local model's tokenizer) to Tokenizer.
type TokenizerFunc func(text string) []int32

func (f TokenizerFunc) Encode(_ context.Context, text string) ([]int32, error) { return f(text), nil }

// ServerTokenizer uses the target's POST /tokenize: godwit's and vLLM's
// shape ({"prompt"}) first, then llama.cpp's ({"content"}).
type ServerTokenizer struct {
	Client *Client
	Target *Target
}

func (s ServerTokenizer) Encode(ctx context.Context, text string) ([]int32, error) {
	shapes := []map[string]any{
		{"model": s.Target.Model, "prompt": text, "add_special_tokens": false},
		{"content": text, "add_special": false},
	}
	var errs []error
	for _, body := range shapes {
		resp, err := s.Client.post(ctx, s.Target, "/tokenize", body)
		if err != nil {
			return nil, fmt.Errorf("POST /tokenize: %w", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			errs = append(errs, fmt.Errorf("POST /tokenize: %s: %s", resp.Status, bytes.TrimSpace(b)))
			continue
		}
		// llama.cpp answers ids, or {id, piece} objects with with_pieces.
		var v struct {
			Tokens []int32 `json:"tokens"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("POST /tokenize: %w", err)
		}
		if len(v.Tokens) == 0 && strings.TrimSpace(text) != "" {
			// llama.cpp ignores "prompt" and tokenizes an absent content.
			errs = append(errs, fmt.Errorf("POST /tokenize %v: no tokens", keys(body)))
			continue
		}
		return v.Tokens, nil
	}
	return nil, errors.Join(errs...)
}

func keys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}
