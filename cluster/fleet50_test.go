package cluster

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestStaleness50 measures, on the lan profile, how long a material change
// takes to reach all of 50 nodes, the fleet quiet and with 44 nodes
// publishing changes once or twice a second: issue 14 asks for under a
// second. The bound asserted is generous; the log has the figures.
func TestStaleness50(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("50 nodes: too slow for -short, and for timing under -race")
	}
	const size = 50
	var names []string
	for i := range size {
		names = append(names, fmt.Sprintf("n%d", i))
	}
	start := time.Now()
	nodes := startFleet(t, names, nil)
	took := waitFor(t, 60*time.Second, "50 nodes see 50 alive", func() bool {
		for _, n := range nodes {
			if alive(n) != size {
				return false
			}
		}
		return true
	})
	t.Logf("converged: every node sees %d alive %v after the first started (%v after the last)", size, time.Since(start), took)

	// measure changes the state of nodes[1:6] in turn and returns the
	// median and the longest time until all nodes see the change.
	marker := 1000
	measure := func() (time.Duration, time.Duration) {
		var times []time.Duration
		for _, src := range nodes[1:6] {
			marker++
			want := marker
			if err := src.SetState(State{Waiting: want}); err != nil {
				t.Fatal(err)
			}
			times = append(times, waitFor(t, 20*time.Second, "a change reaches all 50", func() bool {
				for _, n := range nodes {
					if m, _ := member(n, src.Name()); m.State.Waiting != want {
						return false
					}
				}
				return true
			}))
		}
		slices.Sort(times)
		return times[len(times)/2], times[len(times)-1]
	}
	med, most := measure()
	t.Logf("quiet fleet: a material change reached all %d nodes in %v (median of 5) to %v (max)", size, med, most)

	for _, every := range []time.Duration{time.Second, 500 * time.Millisecond} {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, n := range nodes[6:] {
			wg.Go(func() {
				tick := time.NewTicker(every)
				defer tick.Stop()
				for k := 1; ; k++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					n.SetState(State{Running: k % 64})
				}
			})
		}
		time.Sleep(2 * time.Second) // let the broadcast queues fill
		med, most := measure()
		close(stop)
		wg.Wait()
		t.Logf("44 nodes changing materially every %v: a change reached all %d nodes in %v (median of 5) to %v (max)", every, size, med, most)
	}
}
