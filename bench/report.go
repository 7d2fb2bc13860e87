package bench

import (
	"fmt"
	"io"
	"math"
)

// ServeReport is a whole `bench serve` run, as written by --json: every
// level's summary and every sample's timings.
type ServeReport struct {
	Targets []*Target     `json:"targets"`
	Config  ServeSettings `json:"config"`
	Results []LevelResult `json:"results"`
}

// ServeSettings records how a run was made.
type ServeSettings struct {
	InputTokens  int     `json:"input_tokens,omitempty"`
	OutputTokens int     `json:"output_tokens"`
	InputSpread  float64 `json:"input_spread,omitempty"`
	OutputSpread float64 `json:"output_spread,omitempty"`
	SharedPrefix int     `json:"shared_prefix_tokens,omitempty"`
	Dataset      string  `json:"dataset,omitempty"`
	Duration     string  `json:"duration,omitempty"`
	Requests     int     `json:"requests,omitempty"`
	Warmup       int     `json:"warmup"`
	IgnoreEOS    bool    `json:"ignore_eos"`
	SLO          SLO     `json:"slo"`
}

func p3(p Percentiles) string { return fmt.Sprintf("%.1f / %.1f / %.1f", p.P50, p.P90, p.P99) }

// WriteServeTable prints one Markdown row per level and target; latencies
// are p50 / p90 / p99 in milliseconds.
func WriteServeTable(w io.Writer, results []LevelResult, slo SLO) {
	good := ""
	if slo.TTFT > 0 || slo.TPOT > 0 {
		good = " goodput req/s |"
	}
	fmt.Fprintln(w, "| server | load | ok/sent | req/s | out tok/s | total tok/s | TTFT ms p50/p90/p99 | TPOT ms p50/p90/p99 | ITL ms p50/p90/p99 | E2E ms p50/p90/p99 |"+good+" errors |")
	fmt.Fprint(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	if good != "" {
		fmt.Fprint(w, " ---: |")
	}
	fmt.Fprintln(w, " --- |")
	for _, r := range results {
		s := r.Stats
		fmt.Fprintf(w, "| %s | %v | %d/%d | %.2f | %.1f | %.1f | %s | %s | %s | %s |", r.Target, r.Level,
			s.Completed, s.Requests, s.ReqPerSec, s.OutPerSec, s.TotalPerSec, p3(s.TTFT), p3(s.TPOT), p3(s.ITL), p3(s.E2E))
		if good != "" {
			fmt.Fprintf(w, " %.2f |", s.Goodput)
		}
		fmt.Fprintf(w, " %s |\n", s.ErrorSummary())
	}
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// WriteRatios prints, per level, the first target's numbers divided by the
// second's (--compare): above 1 is better for throughput, below 1 for
// latency.
func WriteRatios(w io.Writer, results []LevelResult, a, b string) {
	fmt.Fprintf(w, "%s ÷ %s (throughput: above 1 means %s is faster; latency: below 1 means %s is faster)\n\n", a, b, a, a)
	fmt.Fprintln(w, "| load | req/s | out tok/s | TTFT p50 | TPOT p50 | ITL p50 | E2E p50 | E2E p99 |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, ra := range results {
		if ra.Target != a {
			continue
		}
		for _, rb := range results {
			if rb.Target != b || rb.Level != ra.Level {
				continue
			}
			x, y := ra.Stats, rb.Stats
			fmt.Fprintf(w, "| %v | %s | %s | %s | %s | %s | %s | %s |\n", ra.Level, ratio(x.ReqPerSec, y.ReqPerSec),
				ratio(x.OutPerSec, y.OutPerSec), ratio(x.TTFT.P50, y.TTFT.P50), ratio(x.TPOT.P50, y.TPOT.P50),
				ratio(x.ITL.P50, y.ITL.P50), ratio(x.E2E.P50, y.E2E.P50), ratio(x.E2E.P99, y.E2E.P99))
		}
	}
}
