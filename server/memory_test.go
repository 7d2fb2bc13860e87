package server

import (
	"encoding/json"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// heapPeak samples the heap in use every millisecond until stop is called,
// which returns the highest reading.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak.Store(max(peak.Load(), m.HeapInuse))
			select {
			case <-quit:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(quit); <-done; return peak.Load() }
}

// TestTokenizeMemory: /tokenize of a 4 MB text, which has no context bound
// (clients count tokens with it), holds at most 20 times the body in heap
// at its peak, client and server together in this process, and the heap
// returns near where it started once the answer is read.
func TestTokenizeMemory(t *testing.T) {
	r := startRig(t, rigOptions{cfg: Config{MaxBodySize: 5 << 20}})
	text := strings.Repeat("Once upon a time, there was a little girl named Lily. She liked 123 apples! ", 4_000_000/77)
	body, _ := json.Marshal(map[string]any{"prompt": text})
	text = ""
	r.do("POST", "/tokenize", `{"prompt":"warm up"}`)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	stop := heapPeak()
	start := time.Now()
	resp := r.do("POST", "/tokenize", string(body))
	took := time.Since(start)
	peak := stop()
	if resp.status != 200 {
		t.Fatalf("status %d: %.200s", resp.status, resp.body)
	}
	var v struct{ Count int }
	if err := json.Unmarshal(resp.body, &v); err != nil || v.Count < len(body)/4 {
		t.Fatalf("count %d for %d bytes: %v", v.Count, len(body), err)
	}
	resp = response{}
	// Two collections: sync.Pool keeps what it held for one more.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(peak) - int64(before.HeapInuse)
	t.Logf("%d bytes, %d tokens in %v: peak heap +%d MB (%.1f× the body), %d MB after", len(body), v.Count, took, grew>>20, float64(grew)/float64(len(body)), int64(after.HeapInuse-before.HeapInuse)>>20)
	if grew > 20*int64(len(body)) {
		t.Errorf("the heap grew by %d MB at its peak for a %d MB body, more than 20×", grew>>20, len(body)>>20)
	}
	if held := int64(after.HeapInuse) - int64(before.HeapInuse); held > int64(len(body)) {
		t.Errorf("%d MB still held after the request", held>>20)
	}
}
