package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
)

// TestRunLocal runs the tests in both orders: the serving path (Step on a
// paged cache) and llama-bench's (Forward on a flat one).
func TestRunLocal(t *testing.T) {
	for _, o := range []kernels.Order{kernels.OrderBatchInvariant, kernels.OrderLlama} {
		t.Run(o.String(), func(t *testing.T) { testRunLocal(t, o) })
	}
}

func testRunLocal(t *testing.T, o kernels.Order) {
	path := shared.Path(t, "models/random/llama-Q4_K_M.gguf")
	m, err := models.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := cpu.New(0)
	defer b.Close()
	e, err := engine.New(m, b, o)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	results, err := RunLocal(context.Background(), e, LocalConfig{Prompts: []int{16}, Gens: []int{8}, Reps: 3}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].Test != "pp16" || results[1].Test != "tg8" {
		t.Fatalf("results %+v", results)
	}
	for _, r := range results {
		if len(r.Samples) != 3 || r.Min <= 0 || r.Min > r.Median || r.Median > r.Max {
			t.Errorf("%s: samples %v, min %g median %g max %g", r.Test, r.Samples, r.Min, r.Median, r.Max)
		}
		for i, s := range r.Samples {
			if d := s*r.Duration[i] - float64(r.Tokens); d > 1e-6 || d < -1e-6 {
				t.Errorf("%s: %g t/s over %g s is not %d tokens", r.Test, s, r.Duration[i], r.Tokens)
			}
		}
	}
	sys := Describe(path, m, "cpu", 1, o)
	if sys.ModelType != "Q4_K_M" || sys.Params != 1836288 || sys.Order != o.String() {
		t.Errorf("system %+v", sys)
	}
	// The generation test's weights GB/s is the weights of a step at its
	// median rate; the prompt test has none.
	if results[0].DecodeGBps != 0 || !closeTo(results[1].DecodeGBps, float64(sys.DecodeBytes)*results[1].Median/1e9) {
		t.Errorf("weights GB/s %g, %g at %g t/s of %d bytes", results[0].DecodeGBps, results[1].DecodeGBps,
			results[1].Median, sys.DecodeBytes)
	}
	if sys.DecodeBytes <= 0 || sys.DecodeBytes >= sys.ModelBytes {
		t.Errorf("decode reads %d bytes of a %d-byte model", sys.DecodeBytes, sys.ModelBytes)
	}
	sys.ReadGBps = ReadBandwidth(b, m)
	SetShares(results, sys.ReadGBps)
	if !(sys.ReadGBps > 0) || results[0].BandwidthShare != 0 ||
		!closeTo(results[1].BandwidthShare, results[1].DecodeGBps/sys.ReadGBps) {
		t.Errorf("read bandwidth %g GB/s, shares %g, %g", sys.ReadGBps, results[0].BandwidthShare, results[1].BandwidthShare)
	}
	var table bytes.Buffer
	WriteTable(&table, sys, results)
	tg := fmt.Sprintf("| tg8 | %.2f | %.2f | %.2f | %.2f | %.0f%% |", results[1].Median, results[1].Min, results[1].Max,
		results[1].DecodeGBps, 100*results[1].BandwidthShare)
	if !strings.Contains(table.String(), "| llama-Q4_K_M Q4_K_M |") || !strings.Contains(table.String(), tg) ||
		!strings.Contains(table.String(), "| max | weights GB/s | of read bw |\n") ||
		!strings.Contains(table.String(), fmt.Sprintf("| %.2f |  |  |\n", results[0].Max)) ||
		!strings.Contains(table.String(), "order: "+o.String()+"\n") ||
		!strings.Contains(table.String(), fmt.Sprintf("stream-read them at %.2f GB/s", sys.ReadGBps)) {
		t.Errorf("table:\n%s", table.String())
	}
	if _, err := RunLocal(context.Background(), e, LocalConfig{Prompts: []int{1 << 20}, Reps: 1}, &log); err == nil {
		t.Error("prompt longer than the context: no error")
	}
}

// TestRunLocalBatches: -b runs each generation test with that many
// sequences at once and counts all their tokens; a pool too small for them
// is an error that says what to raise.
func TestRunLocalBatches(t *testing.T) {
	m, err := models.Load(shared.Path(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := cpu.New(0)
	defer b.Close()
	e, err := engine.New(m, b, kernels.OrderBatchInvariant)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	results, err := RunLocal(context.Background(), e, LocalConfig{Gens: []int{8}, Batches: []int{1, 3}, Reps: 1}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].Test != "tg8 b1" || results[1].Test != "tg8 b3" || results[1].Tokens != 24 {
		t.Fatalf("results %+v", results)
	}
	// Three sequences read the weights once a step.
	if w := float64(DecodeBytes(m)) * results[1].Median / 3 / 1e9; !closeTo(results[1].DecodeGBps, w) {
		t.Errorf("tg8 b3: %g weights GB/s, want %g", results[1].DecodeGBps, w)
	}
	small, err := engine.NewKVPool(engine.KVPoolConfig{Layers: len(m.Layers), Width: m.KVHeads * m.HeadDim, Bytes: 3 * 20480, F32: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = RunLocal(context.Background(), e, LocalConfig{Gens: []int{40}, Batches: []int{8}, Pool: small, Reps: 1}, &log)
	if err == nil || !strings.Contains(err.Error(), "--kv-cache-mem") {
		t.Errorf("8 sequences in %d blocks: %v", small.Blocks(), err)
	}
	if small.Usage() != 0 {
		t.Errorf("the failed test left %.2f of the pool held", small.Usage())
	}
}

func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Abs(b) }

func TestMedian(t *testing.T) {
	if m := median([]float64{1, 2, 10}); m != 2 {
		t.Errorf("odd median %g", m)
	}
	if m := median([]float64{1, 2, 4, 10}); m != 3 {
		t.Errorf("even median %g", m)
	}
}
