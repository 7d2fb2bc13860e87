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

// TestBenchLocalJSONSchema: --json-schema (here from GODWIT_JSON_SCHEMA)
// adds the constrained columns to the table and the comparison to every
// generation test in the JSON; a schema that does not compile is refused
// before the model loads.
func TestBenchLocalJSONSchema(t *testing.T) {
	model := shared.Path(t, "models/random/llama-Q4_0.gguf")
	jsonPath := filepath.Join(t.TempDir(), "run.json")
	t.Setenv("GODWIT_JSON_SCHEMA", filepath.Join("..", "..", "bench", "testdata", "orders.schema.json"))
	out := mustGodwit(t, "bench", "local", "-m", model, "-t", "1", "-p", "0", "-n", "12", "-b", "2", "--reps", "1", "--json", jsonPath)
	if !strings.Contains(out, "| json t/s | free t/s | ratio | first +ms | compile ms | out +ms |") || !strings.Contains(out, "| tg12 b2 |") {
		t.Errorf("table:\n%s", out)
	}
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 {
		t.Fatalf("results %+v", rep.Results)
	}
	if f := rep.Results[0].Format; f == nil || len(f.Runs) != 1 || f.FormatTPS <= 0 || f.Ratio <= 0 || f.From != 5 || f.To != 12 {
		t.Errorf("format %+v", f)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"type":"string","pattern":"(","minLength":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = godwit(t, "bench", "local", "-m", filepath.Join(t.TempDir(), "missing.gguf"), "--json-schema", bad)
	if err == nil || !strings.Contains(err.Error(), "--json-schema "+bad) {
		t.Errorf("a bad schema: %v", err)
	}
}
