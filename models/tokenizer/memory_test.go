package tokenizer

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestEncodeMemory: encoding 4 MB of prose holds at most 20 times the text
// in heap at its peak (the ids included), on an SPM and two byte-level BPE
// vocabularies.
func TestEncodeMemory(t *testing.T) {
	text := strings.Repeat("Once upon a time, there was a little girl named Lily. She liked 123 apples! ", 4_000_000/77)
	for _, rel := range []string{"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-llama-bpe.gguf", "vocab/ggml-vocab-qwen2.gguf"} {
		tok := load(t, rel)
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
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
		start := time.Now()
		ids := tok.Encode(text, true, false)
		took := time.Since(start)
		close(quit)
		<-done
		grew := int64(peak.Load()) - int64(before.HeapInuse)
		t.Logf("%s: %d bytes, %d ids in %v: peak heap +%d MB (%.1f× the text)", rel, len(text), len(ids), took, grew>>20, float64(grew)/float64(len(text)))
		if grew > 20*int64(len(text)) {
			t.Errorf("%s: the heap grew by %d MB for %d MB of text, more than 20×", rel, grew>>20, len(text)>>20)
		}
	}
}
