package bench

// `godwit bench serve` measures an OpenAI-compatible server under load. The
// measurement core is deterministic and does no I/O: a recorder turns one
// request's timestamped events (status, SSE lines, end) into a Sample, and
// Summarize turns a level's samples and its wall time into Stats. The HTTP
// client (client.go) and the load driver (load.go) sit at the edges and only
// feed them timestamps.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Sample is one request's timings. Times are durations since the level
// started (Start) or since the request was sent (the rest).
type Sample struct {
	Start        time.Duration   `json:"start_ns"`
	TTFT         time.Duration   `json:"ttft_ns"`       // first content chunk
	E2E          time.Duration   `json:"e2e_ns"`        // last byte of the response
	ITL          []time.Duration `json:"itl_ns"`        // gaps between successive content chunks
	InputTokens  int             `json:"input_tokens"`  // usage.prompt_tokens, else what was sent
	OutputTokens int             `json:"output_tokens"` // usage.completion_tokens, else content chunks
	Chunks       int             `json:"chunks"`        // content chunks received
	Status       int             `json:"status"`        // HTTP status; 0 when none came
	Error        string          `json:"error,omitempty"`
	Detail       string          `json:"detail,omitempty"` // the transport's error or the error body, cut short
}

// OK reports whether the request completed.
func (s *Sample) OK() bool { return s.Error == "" }

// TPOT is the time per output token after the first: (E2E-TTFT)/(n-1).
func (s *Sample) TPOT() (time.Duration, bool) {
	if s.OutputTokens < 2 {
		return 0, false
	}
	return (s.E2E - s.TTFT) / time.Duration(s.OutputTokens-1), true
}

// Error kinds other than an HTTP status code.
const (
	ErrTimeout    = "timeout"    // the request's deadline passed
	ErrConnection = "connection" // no response (refused, reset before headers)
	ErrIncomplete = "incomplete" // the stream ended before [DONE] or a finish_reason
	ErrStream     = "stream"     // an error object inside the stream
)

// recorder builds one Sample from the events of a streamed request.
type recorder struct {
	sent     time.Time
	s        Sample
	last     time.Time // previous content chunk
	done     bool      // [DONE] seen
	finished bool      // a finish_reason seen
	usage    bool
	errBody  bytes.Buffer
}

func newRecorder(levelStart, sent time.Time, inputTokens int) *recorder {
	return &recorder{sent: sent, s: Sample{Start: sent.Sub(levelStart), InputTokens: inputTokens}}
}

// status records the response's status code.
func (r *recorder) status(code int) {
	r.s.Status = code
	if code != 200 {
		r.s.Error = strconv.Itoa(code)
	}
}

// streamChunk is the part of a completion chunk the recorder reads.
type streamChunk struct {
	Choices []struct {
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
		Delta        *struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// line records one line of the body, read at t.
func (r *recorder) line(t time.Time, line []byte) {
	if r.s.Status != 200 {
		if r.errBody.Len() < 512 {
			r.errBody.Write(line)
		}
		return
	}
	data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:"))
	if !ok {
		return // blank separators, comments, event: lines
	}
	data = bytes.TrimSpace(data)
	if string(data) == "[DONE]" {
		r.done = true
		return
	}
	var c streamChunk
	if err := json.Unmarshal(data, &c); err != nil {
		return
	}
	if len(c.Error) > 0 && string(c.Error) != "null" {
		r.s.Error = ErrStream
		r.errBody.Write(c.Error)
		return
	}
	if c.Usage != nil && c.Usage.CompletionTokens > 0 {
		r.usage = true
		r.s.OutputTokens = c.Usage.CompletionTokens
		if c.Usage.PromptTokens > 0 {
			r.s.InputTokens = c.Usage.PromptTokens
		}
	}
	content := false
	for _, ch := range c.Choices {
		if ch.Text != "" || (ch.Delta != nil && ch.Delta.Content != "") {
			content = true
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			r.finished = true
		}
	}
	if !content {
		return
	}
	if r.s.Chunks == 0 {
		r.s.TTFT = t.Sub(r.sent)
	} else {
		r.s.ITL = append(r.s.ITL, t.Sub(r.last))
	}
	r.last = t
	r.s.Chunks++
}

// end closes the sample at t; err is the transport's error, if any.
func (r *recorder) end(t time.Time, err error, timedOut bool) Sample {
	r.s.E2E = t.Sub(r.sent)
	if err != nil {
		r.s.Detail = err.Error()
	} else if r.errBody.Len() > 0 {
		r.s.Detail = string(bytes.TrimSpace(r.errBody.Bytes()))
	}
	switch {
	case r.s.Error != "":
	case timedOut:
		r.s.Error = ErrTimeout
	case r.s.Status == 0:
		r.s.Error = ErrConnection
	case err != nil || !(r.done || r.finished) || r.s.Chunks == 0:
		r.s.Error = ErrIncomplete
	}
	if !r.usage {
		r.s.OutputTokens = r.s.Chunks
	}
	return r.s
}

// Percentiles are p50, p90 and p99 of a metric, in milliseconds, and its mean.
type Percentiles struct {
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
}

// SLO is the goodput target: a request counts when its TTFT and TPOT are
// within these (zero: no limit).
type SLO struct {
	TTFT time.Duration `json:"ttft_ns,omitempty"`
	TPOT time.Duration `json:"tpot_ns,omitempty"`
}

// Stats summarizes one level against one server.
type Stats struct {
	Requests     int            `json:"requests"` // sent
	Completed    int            `json:"completed"`
	Errors       map[string]int `json:"errors,omitempty"` // by status code or kind
	Wall         time.Duration  `json:"wall_ns"`
	InputTokens  int            `json:"input_tokens"`
	OutputTokens int            `json:"output_tokens"`
	ReqPerSec    float64        `json:"requests_per_s"`
	OutPerSec    float64        `json:"output_tokens_per_s"`
	TotalPerSec  float64        `json:"total_tokens_per_s"`
	Goodput      float64        `json:"goodput_requests_per_s"`
	TTFT         Percentiles    `json:"ttft"`
	TPOT         Percentiles    `json:"tpot"`
	ITL          Percentiles    `json:"itl"`
	E2E          Percentiles    `json:"e2e"`
}

// Summarize computes a level's Stats from its samples and the wall time
// from the level's start to its last response. Rates count completed
// requests only; latencies come from completed requests only.
func Summarize(samples []Sample, wall time.Duration, slo SLO) Stats {
	st := Stats{Requests: len(samples), Wall: wall}
	var ttft, tpot, itl, e2e []float64
	good := 0
	for i := range samples {
		s := &samples[i]
		if !s.OK() {
			if st.Errors == nil {
				st.Errors = map[string]int{}
			}
			st.Errors[s.Error]++
			continue
		}
		st.Completed++
		st.InputTokens += s.InputTokens
		st.OutputTokens += s.OutputTokens
		ttft = append(ttft, ms(s.TTFT))
		e2e = append(e2e, ms(s.E2E))
		for _, g := range s.ITL {
			itl = append(itl, ms(g))
		}
		tp, hasTPOT := s.TPOT()
		if hasTPOT {
			tpot = append(tpot, ms(tp))
		}
		if (slo.TTFT == 0 || s.TTFT <= slo.TTFT) && (slo.TPOT == 0 || !hasTPOT || tp <= slo.TPOT) {
			good++
		}
	}
	if secs := wall.Seconds(); secs > 0 {
		st.ReqPerSec = float64(st.Completed) / secs
		st.OutPerSec = float64(st.OutputTokens) / secs
		st.TotalPerSec = float64(st.InputTokens+st.OutputTokens) / secs
		st.Goodput = float64(good) / secs
	}
	st.TTFT, st.TPOT, st.ITL, st.E2E = percentiles(ttft), percentiles(tpot), percentiles(itl), percentiles(e2e)
	return st
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	v = slices.Clone(v)
	sort.Float64s(v)
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return Percentiles{Mean: sum / float64(len(v)), P50: Quantile(v, 0.5), P90: Quantile(v, 0.9), P99: Quantile(v, 0.99)}
}

// Quantile is the q-quantile of sorted values, interpolated linearly between
// the closest ranks (numpy's default): rank q·(n-1).
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

// ErrorSummary formats errors by kind, sorted: "429×3 timeout×1".
func (st *Stats) ErrorSummary() string {
	if len(st.Errors) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(st.Errors))
	for k := range st.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s×%d", k, st.Errors[k])
	}
	return b.String()
}
