package cpu

import (
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// sumTask adds up 0..n-1 in parts and records which threads ran.
type sumTask struct {
	n    int
	sum  atomic.Int64
	seen [8]atomic.Int32
}

func (s *sumTask) Run(thread, threads int) {
	lo, hi := split(s.n, thread, threads, 16)
	for i := lo; i < hi; i++ {
		s.sum.Add(int64(i))
	}
	s.seen[thread].Add(1)
}

func TestPool(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8} {
		p := NewPool(threads)
		for round := 0; round < 2000; round++ {
			task := &sumTask{n: 1000 + round}
			if round%500 == 0 {
				time.Sleep(2 * time.Millisecond) // let the workers park
			}
			p.Run(task)
			if want := int64(task.n) * int64(task.n-1) / 2; task.sum.Load() != want {
				t.Fatalf("%d threads, round %d: sum %d, want %d", threads, round, task.sum.Load(), want)
			}
			for th := 0; th < threads; th++ {
				if task.seen[th].Load() != 1 {
					t.Fatalf("%d threads, round %d: thread %d ran %d times", threads, round, th, task.seen[th].Load())
				}
			}
		}
		p.Close()
	}
}

func TestPoolRunAllocatesNothing(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	task := &sumTask{n: 100}
	if a := testing.AllocsPerRun(100, func() { p.Run(task) }); a != 0 {
		t.Fatalf("%v allocations per Run", a)
	}
}

func TestSplit(t *testing.T) {
	for _, c := range []struct{ n, threads, align int }{{100, 3, 1}, {100, 3, 16}, {5, 8, 4}, {0, 2, 1}, {1024, 2, 64}} {
		next := 0
		for th := 0; th < c.threads; th++ {
			lo, hi := split(c.n, th, c.threads, c.align)
			if lo != next || hi < lo || (hi < c.n && hi%c.align != 0) {
				t.Fatalf("%+v thread %d: [%d,%d)", c, th, lo, hi)
			}
			next = hi
		}
		if next != c.n {
			t.Fatalf("%+v: covered up to %d", c, next)
		}
	}
}

func BenchmarkPoolRun(b *testing.B) {
	p := NewPool(2)
	defer p.Close()
	task := &sumTask{n: 64}
	for i := 0; i < b.N; i++ {
		p.Run(task)
	}
}

// slowTask keeps the workers busy long enough for the caller to park.
type slowTask struct{ done [4]atomic.Bool }

func (s *slowTask) Run(thread, _ int) {
	if thread > 0 {
		time.Sleep(time.Millisecond)
	}
	s.done[thread].Store(true)
}

func TestPoolCallerParks(t *testing.T) {
	p := NewPool(4)
	defer p.Close()
	for round := 0; round < 50; round++ {
		task := &slowTask{}
		p.Run(task)
		for th := range task.done {
			if !task.done[th].Load() {
				t.Fatalf("round %d: Run returned before thread %d finished", round, th)
			}
		}
	}
}

// busyTask keeps every thread busy for d, as the ops of a forward pass do.
type busyTask time.Duration

func (d busyTask) Run(_, _ int) {
	for start := time.Now(); time.Since(start) < time.Duration(d); {
	}
}

// BenchmarkPoolWakeOther: how long a goroutine woken between two runs of
// back-to-back tasks waits to run, as a stream's writer is woken between
// two steps of the batcher (3 ms of 50 µs ops here), with as many Ps as
// the pool has threads. The spinning threads hold every P: without a yield
// it runs only when the scheduler preempts one, 10 to 20 ms later on an
// idle machine; the batcher yields after each step.
func BenchmarkPoolWakeOther(b *testing.B) {
	const threads = 2
	for _, yield := range []bool{false, true} {
		b.Run(fmt.Sprintf("yield=%v", yield), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
			p := NewPool(threads)
			defer p.Close()
			woken := make(chan time.Time, 1)
			done := make(chan []time.Duration)
			go func() {
				var waits []time.Duration
				for at := range woken {
					waits = append(waits, time.Since(at))
				}
				done <- waits
			}()
			for b.Loop() {
				for range 60 {
					p.Run(busyTask(50 * time.Microsecond))
				}
				select {
				case woken <- time.Now():
				default: // still waiting from the step before
				}
				if yield {
					runtime.Gosched()
				}
			}
			close(woken)
			waits := <-done
			slices.Sort(waits)
			if len(waits) > 0 {
				b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "wait-p50-µs")
				b.ReportMetric(float64(waits[len(waits)-1].Microseconds()), "wait-max-µs")
			}
		})
	}
}
