// Package heappeak measures how high the Go heap in use rises while some
// work runs, for tests that bound a request's or a call's memory.
package heappeak

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Start collects garbage, notes the heap in use, and samples it every
// millisecond until the returned stop is called; stop returns how far the
// heap rose above the starting point at its highest reading (negative when
// it only fell).
func Start() (stop func() int64) {
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
	return func() int64 {
		close(quit)
		<-done
		return int64(peak.Load()) - int64(before.HeapInuse)
	}
}
