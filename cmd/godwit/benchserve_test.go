package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/bench"
	"github.com/godwit-ai/godwit/internal/shared"
)

// TestBenchServeRealServer: `godwit bench serve --compare` against two real
// `godwit serve` processes with stories260K: exact prompt lengths from
// /tokenize, output lengths from usage, every request completed, the
// tables, the JSON and the plot written. Flags come from GODWIT_* too.
func TestBenchServeRealServer(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	args := []string{"-m", stories, "--port", "0", "-t", "1", "--kv-cache-mem", "8MiB", "--max-num-seqs", "8"}
	a := startServe(t, []string{"GODWIT_SERVED_MODEL_NAME=tiny"}, args...)
	b := startServe(t, nil, args...)
	dir := t.TempDir()
	jsonPath, plotPath := filepath.Join(dir, "run.json"), filepath.Join(dir, "run.png")
	t.Setenv("GODWIT_OUTPUT_TOKENS", "12")
	out, stderr, err := godwit(t, "bench", "serve", "--url", a.url, "--compare", b.url+"/v1", "--name", "one",
		"--compare-name", "two", "-c", "1,3", "--requests", "6", "--input-tokens", "20", "--shared-prefix-tokens", "4",
		"--slo-ttft", "10s", "--json", jsonPath, "--plot", plotPath)
	if err != nil {
		t.Fatalf("bench serve: %v\n%s\n%s", err, out, stderr)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{"| one | c=1 | 6/6 |", "| two | c=3 | 6/6 |", "one ÷ two", "| c=3 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var rep bench.ServeReport
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 4 || rep.Targets[0].Model != "tiny" || rep.Targets[1].Model != "stories260K" {
		t.Fatalf("report: %d results, targets %+v", len(rep.Results), rep.Targets)
	}
	for _, r := range rep.Results {
		st := r.Stats
		if st.Completed != 6 || st.OutputTokens != 6*12 || st.InputTokens != 6*24 || st.Goodput <= 0 || st.TTFT.P50 <= 0 ||
			st.TPOT.P50 <= 0 || len(r.Samples) != 6 {
			t.Errorf("%s %v: %+v", r.Target, r.Level, st)
		}
		for _, s := range r.Samples {
			if s.OutputTokens != 12 || s.InputTokens != 24 || s.Chunks < 1 || len(s.ITL) != s.Chunks-1 {
				t.Errorf("%s %v sample: %+v", r.Target, r.Level, s)
			}
		}
	}
	if fi, err := os.Stat(plotPath); err != nil || fi.Size() < 1000 {
		t.Errorf("plot: %v", err)
	}
}
