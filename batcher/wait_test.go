package batcher

import (
	"testing"
	"time"
)

func TestWaitEstimate(t *testing.T) {
	ms := time.Millisecond
	var w waitEstimate
	if got := w.estimate(4, 0); got != 0 {
		t.Fatalf("nothing measured: %v, want 0", got)
	}
	w.firstToken(100*ms, 0)
	w.stepTook(20 * ms)
	if got := w.estimate(4, 0); got != 200*ms {
		t.Fatalf("idle known, per sequence not yet: %v, want 200ms (a quarter of idle a sequence)", got)
	}
	// Arriving to 4 sequences took 300 ms: 50 ms a sequence.
	w.firstToken(300*ms, 4)
	if w.idle != 100*ms || w.perSeq != 50*ms {
		t.Fatalf("idle %v, per sequence %v; want 100ms and 50ms", w.idle, w.perSeq)
	}
	for _, c := range []struct {
		load   int
		queued time.Duration
		want   time.Duration
	}{
		{0, 0, 100 * ms},
		{8, 0, 500 * ms},
		{8, 2 * time.Second, 2020 * ms},
	} {
		if got := w.estimate(c.load, c.queued); got != c.want {
			t.Errorf("load %d, queued %v: %v, want %v", c.load, c.queued, got, c.want)
		}
	}
	// The averages move an eighth of the way to a new figure.
	w.firstToken(500*ms, 4)
	if w.perSeq != 50*ms+(100-50)*ms/8 {
		t.Fatalf("per sequence %v after a slower first token", w.perSeq)
	}
	// A faster idle first token lowers idle at once; a slower one by an
	// eighth.
	w.firstToken(60*ms, 0)
	w.firstToken(140*ms, 0)
	if w.idle != 70*ms {
		t.Fatalf("idle %v, want 60ms then an eighth of the way to 140ms", w.idle)
	}
}
