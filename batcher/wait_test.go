package batcher

import (
	"testing"
	"time"
)

func TestWaitEstimate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var w waitEstimate
	if got := w.estimate(t0, time.Time{}, 0); got != 0 {
		t.Fatalf("nothing measured: %v, want 0", got)
	}
	w.firstToken(400*time.Millisecond, true, t0)
	w.stepTook(100 * time.Millisecond)
	if w.idle != 400*time.Millisecond {
		t.Fatalf("idle TTFT %v, want 400ms", w.idle)
	}
	// A busy first token moves the recent average, not the idle one.
	w.firstToken(2*time.Second, false, t0)
	if w.idle != 400*time.Millisecond || w.ttft != 800*time.Millisecond {
		t.Fatalf("idle %v ttft %v, want 400ms and 800ms", w.idle, w.ttft)
	}
	for _, c := range []struct {
		name    string
		now     time.Time
		oldest  time.Time
		running int
		want    time.Duration
	}{
		{"just measured", t0, time.Time{}, 0, 800 * time.Millisecond},
		{"one half-life later", t0.Add(waitHalfLife), time.Time{}, 0, 400 * time.Millisecond},
		{"long idle", t0.Add(10 * waitHalfLife), time.Time{}, 0, 781250 * time.Nanosecond},
		{"queued 3 s", t0.Add(waitHalfLife), t0.Add(waitHalfLife - 3*time.Second), 0, 3100 * time.Millisecond},
		{"running, long idle", t0.Add(10 * waitHalfLife), time.Time{}, 4, 200 * time.Millisecond},
	} {
		if got := w.estimate(c.now, c.oldest, c.running); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
