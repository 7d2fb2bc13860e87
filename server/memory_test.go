package server

import (
	"encoding/json"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/internal/heappeak"
)

// TestTokenizeMemory: /tokenize of a 4 MB text, which has no context bound
// (clients count tokens with it), holds at most 20 times the body in heap
// at its peak, client and server together in this process, alone and four
// at once, and the heap returns near where it started once the answers are
// read. So does 4 MB of one letter alone, which no boundary cuts into
// stretches for the tokenizer's merges.
func TestTokenizeMemory(t *testing.T) {
	r := startRig(t, rigOptions{cfg: Config{MaxBodySize: 5 << 20}})
	r.do("POST", "/tokenize", `{"prompt":"warm up"}`)
	for _, c := range []struct {
		name, unit string
		clients    []int
	}{
		{"prose", "Once upon a time, there was a little girl named Lily. She liked 123 apples! ", []int{1, 4}},
		{"one letter", "a", []int{1}},
	} {
		b, _ := json.Marshal(map[string]any{"prompt": strings.Repeat(c.unit, 4_000_000/len(c.unit))})
		body := string(b)
		b = nil
		for _, clients := range c.clients {
			tokenizeMemory(t, r, c.name, body, clients)
		}
	}
}

// tokenizeMemory posts body to /tokenize from clients at once and checks
// the heap's peak and what it holds after.
func tokenizeMemory(t *testing.T, r *rig, name, body string, clients int) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	stop := heappeak.Start()
	start := time.Now()
	counts := make([]int, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			resp := r.do("POST", "/tokenize", body)
			var v struct{ Count int }
			if err := json.Unmarshal(resp.body, &v); resp.status != 200 || err != nil {
				t.Errorf("status %d: %.200s", resp.status, resp.body)
			}
			counts[i] = v.Count
		})
	}
	wg.Wait()
	took := time.Since(start)
	grew := stop()
	if counts[0] < len(body)/16 {
		t.Fatalf("%s: count %d for %d bytes", name, counts[0], len(body))
	}
	// Two collections: sync.Pool keeps what it held for one more. The heap
	// is the whole process's, where goroutines of earlier tests may still
	// be winding down, so it gets a second to come back down.
	bodies := int64(clients * len(body))
	var held int64
	for deadline := time.Now().Add(time.Second); ; time.Sleep(50 * time.Millisecond) {
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = int64(after.HeapInuse) - int64(before.HeapInuse)
		if held <= bodies/2 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%s: %d × %d bytes, %d tokens each, in %v: peak heap +%d MB (%.1f× the bodies), %+d MB after",
		name, clients, len(body), counts[0], took, grew>>20, float64(grew)/float64(bodies), held>>20)
	if grew > 20*bodies {
		t.Errorf("%s, %d at once: the heap grew by %d MB at its peak for %d MB of bodies, more than 20×", name, clients, grew>>20, bodies>>20)
	}
	// Connections kept alive keep their buffers, far less than this.
	if held > bodies/2 {
		t.Errorf("%s, %d at once: %d MB still held after the requests", name, clients, held>>20)
	}
}

// TestTokensJSON: /tokenize's hand-written answer is what encoding/json
// writes of it.
func TestTokensJSON(t *testing.T) {
	for _, ids := range [][]int32{nil, {0}, {1, 9, 10, 99, 100, 31999}} {
		want, _ := json.Marshal(struct {
			Count       int     `json:"count"`
			MaxModelLen int     `json:"max_model_len"`
			Tokens      []int32 `json:"tokens"`
		}{len(ids), 4096, append([]int32{}, ids...)})
		if got := tokensJSON(ids, 4096, 32000); string(got) != string(want) {
			t.Errorf("%v: %s, want %s", ids, got, want)
		}
	}
}
