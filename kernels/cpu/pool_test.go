package cpu

import (
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
