package server

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"

	"github.com/godwit-ai/godwit/batcher"
)

// metrics are the Prometheus series of /metrics. Names follow vLLM's where
// one exists (with its model_name label), so routers written for vLLM can
// read godwit; the rest are godwit_….
type metrics struct {
	reg *prometheus.Registry

	ttft, itl, e2e, queue *prometheus.HistogramVec
	promptLen, genLen     *prometheus.HistogramVec
	success               *prometheus.CounterVec
	http                  *prometheus.CounterVec
	httpTime              *prometheus.HistogramVec
	model                 string

	// The fleet's (issue 14).
	forwarded  *prometheus.CounterVec // by peer, reason and outcome
	resumes    prometheus.Counter
	forwardRTT prometheus.Histogram // from sending a forward to the peer's answer
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	model := prometheus.Labels{"model_name": s.cfg.ModelName}
	stats := func() batcher.Stats {
		if m := s.model.Load(); m != nil {
			return m.Batcher.Stats()
		}
		return batcher.Stats{}
	}
	gauge := func(name, help string, f func(batcher.Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: model},
			func() float64 { return f(stats()) }))
	}
	counter := func(name, help string, f func(batcher.Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: model},
			func() float64 { return f(stats()) }))
	}
	gauge("vllm:num_requests_running", "Sequences in the running batch.", func(st batcher.Stats) float64 { return float64(st.Running) })
	gauge("vllm:num_requests_waiting", "Sequences waiting to be scheduled.", func(st batcher.Stats) float64 { return float64(st.Waiting) })
	gauge("vllm:kv_cache_usage_perc", "Fraction of KV cache blocks in use (1 = all).", func(st batcher.Stats) float64 { return st.KVUsage })
	gauge("godwit_kv_cache_blocks", "KV cache blocks in the pool.", func(st batcher.Stats) float64 { return float64(st.KVBlocks) })
	gauge("godwit_requests_in_flight", "Generation requests being answered over HTTP.", func(batcher.Stats) float64 { return float64(s.InFlight()) })
	counter("vllm:prompt_tokens_total", "Prompt tokens computed.", func(st batcher.Stats) float64 { return float64(st.PromptTokens) })
	counter("vllm:generation_tokens_total", "Tokens generated.", func(st batcher.Stats) float64 { return float64(st.GenerationTokens) })
	counter("vllm:num_preemptions_total", "Sequences preempted for lack of KV blocks.", func(st batcher.Stats) float64 { return float64(st.Preemptions) })
	counter("vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.", func(st batcher.Stats) float64 { return float64(st.PrefixQueries) })
	counter("vllm:prefix_cache_hits_total", "Prompt tokens found in the prefix cache.", func(st batcher.Stats) float64 { return float64(st.PrefixHits) })
	counter("godwit_batch_steps_total", "Forward passes of the batcher.", func(st batcher.Stats) float64 { return float64(st.Steps) })

	latency := []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560}
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets, ConstLabels: model}, nil)
		reg.MustRegister(h)
		return h
	}
	tokens := prometheus.ExponentialBuckets(1, 2, 18)
	m := &metrics{
		reg:       reg,
		model:     s.cfg.ModelName,
		ttft:      hist("vllm:time_to_first_token_seconds", "Time from arrival to the first generated token.", latency),
		itl:       hist("vllm:inter_token_latency_seconds", "Time between consecutive tokens of a sequence.", []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}),
		e2e:       hist("vllm:e2e_request_latency_seconds", "Time from arrival to the last token.", latency),
		queue:     hist("vllm:request_queue_time_seconds", "Time from arrival to first scheduled.", latency),
		promptLen: hist("vllm:request_prompt_tokens", "Prompt tokens per request.", tokens),
		genLen:    hist("vllm:request_generation_tokens", "Generated tokens per request.", tokens),
		success: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vllm:request_success_total",
			Help: "Requests finished, by finish reason.", ConstLabels: model}, []string{"finished_reason"}),
		http: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "godwit_http_requests_total",
			Help: "HTTP requests answered, by path and status code."}, []string{"path", "code"}),
		httpTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "godwit_http_request_duration_seconds",
			Help: "Time to answer an HTTP request (for streams, until the handler hands over the stream).", Buckets: latency}, []string{"path"}),
	}
	m.forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "godwit:forwarded_requests_total",
		Help: "Requests this node forwarded to a peer, by peer, reason and outcome (ok, failed: the peer did not answer and another was tried, relayed_error: the peer refused the request, resumed: the stream broke and went on elsewhere)."},
		[]string{"peer", "reason", "outcome"})
	m.resumes = prometheus.NewCounter(prometheus.CounterOpts{Name: "godwit:stream_resumes_total",
		Help: "Streams that broke on a peer and were resumed on another node."})
	m.forwardRTT = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "godwit:forward_latency_seconds",
		Help: "Time from forwarding a request to the peer's first answer (its status line).", Buckets: latency})
	reg.MustRegister(m.success, m.http, m.httpTime, m.forwarded, m.resumes, m.forwardRTT)
	for _, state := range []string{"alive", "dead", "draining"} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "godwit:cluster_members", Help: "Fleet members as this node sees them, by state (0 when not in a fleet).",
			ConstLabels: prometheus.Labels{"state": state}}, func() float64 { return float64(s.countMembers(state)) }))
	}
	return m
}

// request counts an HTTP answer; unknown paths are counted as "other" to
// keep the label set bounded.
func (m *metrics) request(path string, code int, d time.Duration) {
	switch {
	case strings.HasPrefix(path, modelsPrefix):
		path = modelsPrefix + "{id}"
	case path == "/v1/completions", path == "/v1/chat/completions", path == "/v1/models", path == "/v1/cluster", path == forwardPath,
		path == "/tokenize", path == "/detokenize", path == "/health", path == "/metrics":
	default:
		path = "other"
	}
	m.http.WithLabelValues(path, strconv.Itoa(code)).Inc()
	if d > 0 {
		m.httpTime.WithLabelValues(path).Observe(d.Seconds())
	}
}

// finished records a request's latencies from its last event.
func (m *metrics) finished(ev batcher.Event) {
	if ev.Timing != nil {
		m.ttft.WithLabelValues().Observe(ev.Timing.FirstToken.Seconds())
		m.e2e.WithLabelValues().Observe(ev.Timing.Total.Seconds())
		m.queue.WithLabelValues().Observe(ev.Timing.Queue.Seconds())
	}
	if ev.Usage != nil {
		m.promptLen.WithLabelValues().Observe(float64(ev.Usage.PromptTokens))
		m.genLen.WithLabelValues().Observe(float64(ev.Usage.CompletionTokens))
	}
}

func (m *metrics) write(ctx *fasthttp.RequestCtx) {
	families, err := m.reg.Gather()
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	ctx.SetContentType(string(format))
	enc := expfmt.NewEncoder(ctx, format)
	for _, f := range families {
		if e := enc.Encode(f); e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		ctx.Logger().Printf("metrics: %v", err)
	}
}
