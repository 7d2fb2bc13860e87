package cpu_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
)

// TestRandomModelsBitExact feeds every random-weight model the prompt and
// then its golden tokens, and requires the recorded logits to equal
// llama.cpp's bit for bit: the kernels add in llama.cpp's order, so no value
// may land on the other side of a rounding boundary. The one exception is
// step 0 of the F32 files: llama.cpp runs the last layer's feed-forward for
// the output row alone (ggml_vec_dot_f32's order), while the engine runs it
// for every prompt row (tinyBLAS's order), which moves those logits by a few
// ulps. The quantized files are unaffected with this 5-token prompt (the last
// of five rows takes the path a single row does: the same lanes, or gemv for
// repacked Q4_K; a prompt of a multiple of 4 tokens would send it through
// Q4_K's gemm instead), and F16 and BF16 round the difference away.
func TestRandomModelsBitExact(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(shared.Path(t, "models/random"), "*.gguf"))
	if len(files) == 0 {
		t.Fatal("no random models found")
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".gguf")
		t.Run(name, func(t *testing.T) {
			var golden struct {
				Runs []struct {
					PromptIDs []int32 `json:"prompt_ids"`
					GenIDs    []int32 `json:"gen_ids"`
					Logits    []struct {
						Step   int
						Values []float32
					}
				}
			}
			b, err := os.ReadFile(strings.TrimSuffix(path, ".gguf") + ".golden.json")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &golden); err != nil {
				t.Fatal(err)
			}
			m, err := models.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			e, err := engine.New(m, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			run := golden.Runs[0]
			want := map[int][]float32{}
			for _, l := range run.Logits {
				want[l.Step] = l.Values
			}
			kv := e.NewCache(0)
			tokens := run.PromptIDs
			for step := 0; step < len(run.GenIDs); step++ {
				logits, err := e.Forward(tokens, kv, false)
				if err != nil {
					t.Fatal(err)
				}
				tokens = run.GenIDs[step : step+1]
				w, ok := want[step]
				if !ok {
					continue
				}
				tol := 0.0
				if step == 0 && strings.HasSuffix(name, "-F32") {
					tol = 2e-5
				}
				for i, v := range w {
					if d := math.Abs(float64(logits[i] - v)); d > tol || logits[i] != logits[i] {
						t.Errorf("step %d: logit %d is %g (%#08x), llama.cpp's is %g (%#08x)",
							step, i, logits[i], math.Float32bits(logits[i]), v, math.Float32bits(v))
						break
					}
				}
			}
		})
	}
}
