package cpu

import (
	"sync/atomic"
	"time"
)

// Task is one parallel operation: Run is called once on every thread of a
// pool with that thread's index, and splits the work by it.
type Task interface {
	Run(thread, threads int)
}

// Pool runs tasks on a fixed set of threads: the caller and threads-1
// persistent workers. Workers spin briefly between tasks (ops of one forward
// pass follow each other within microseconds) and then park, so an idle pool
// costs no CPU. Run allocates nothing.
type Pool struct {
	threads int
	task    Task
	gen     atomic.Uint64 // bumped once per task; workers run when it moves
	pending atomic.Int32  // workers still running the current task
	parked  []atomic.Bool
	wake    []chan struct{}
	quit    atomic.Bool

	// The caller parks on done when the workers take long; the worker that
	// finishes last signals it.
	callerParked atomic.Bool
	done         chan struct{}
}

// spinTime is how long a thread polls before parking: longer than the serial
// work between two ops of a forward pass, and than the wait for another
// thread's share of an op. Parking sooner costs a scheduler wake-up per op,
// which measured as a second thread adding nothing to decode speed. It is a
// time, not a count of polls: 200000 polls, tuned on one day (60 tokens/s
// on two threads against 39.5 on one), parked too soon on another day's
// faster polls, and two threads decoded no faster than one again (0.35B
// Q8_0: 27 tokens/s). Measured with a time (0.35B Q8_0 / Q4_K_M decode,
// tokens/s): 100 µs 46 / 98, 150 µs 49 / 109, 300 µs 51 / 106, 1 ms 51;
// longer spins also burn more CPU in pools that sit idle.
const spinTime = 200 * time.Microsecond

// parkCheck is how long a parked worker sleeps before it looks for a task
// again on its own.
const parkCheck = 50 * time.Millisecond

// spinCheck is how many polls go between two looks at the clock.
const spinCheck = 1024

// spinner counts polls and says when spinTime has passed since the first.
type spinner struct {
	polls int
	start time.Time
}

// spin reports whether to keep polling.
func (s *spinner) spin() bool {
	s.polls++
	if s.polls%spinCheck != 0 {
		return true
	}
	if s.start.IsZero() {
		s.start = time.Now()
		return true
	}
	return time.Since(s.start) < spinTime
}

// NewPool starts a pool of threads threads (at least 1).
func NewPool(threads int) *Pool {
	threads = max(threads, 1)
	p := &Pool{threads: threads, parked: make([]atomic.Bool, threads-1), wake: make([]chan struct{}, threads-1),
		done: make(chan struct{}, 1)}
	for i := range p.wake {
		p.wake[i] = make(chan struct{}, 1)
		go p.work(i)
	}
	return p
}

// Threads is the number of threads that run each task.
func (p *Pool) Threads() int { return p.threads }

// Run runs t on every thread and returns when all have finished. It must not
// be called concurrently.
func (p *Pool) Run(t Task) {
	if p.threads == 1 {
		t.Run(0, 1)
		return
	}
	p.task = t
	p.pending.Store(int32(p.threads - 1))
	p.gen.Add(1)
	p.wakeParked()
	t.Run(0, p.threads)
	var sp spinner
	for p.pending.Load() != 0 {
		if sp.spin() {
			continue
		}
		p.callerParked.Swap(true) // a full barrier before the look, as in work
		if p.pending.Load() == 0 && p.callerParked.CompareAndSwap(true, false) {
			break // finished meanwhile, and no worker took the flag
		}
		// The last worker clears the flag and signals; if it already did,
		// its token is waiting.
		<-p.done
		break
	}
	p.task = nil
}

// Close stops the workers; the pool must not be used afterwards.
func (p *Pool) Close() {
	p.quit.Store(true)
	p.gen.Add(1)
	p.wakeParked()
}

func (p *Pool) wakeParked() {
	for i := range p.parked {
		if p.parked[i].CompareAndSwap(true, false) {
			select {
			case p.wake[i] <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
	}
}

func (p *Pool) work(i int) {
	seen := uint64(0)
	// A parked worker looks again every parkCheck even without a wake-up,
	// so that one lost by some platform's emulation costs a delay, not a
	// hang.
	check := time.NewTimer(parkCheck)
	check.Stop()
	for {
		var sp spinner
		for p.gen.Load() == seen {
			if sp.spin() {
				continue
			}
			// Announce the park, then look once more so a task started in
			// between is not missed; a stale wake-up only causes a re-check.
			// The announcement is a swap, not a store: the look must not
			// be ordered before it, and a read-modify-write is a full
			// barrier even where emulation (qemu-user running arm64 on
			// x86) keeps a release store and an acquire load apart less
			// strictly than the hardware does, which lost wake-ups there.
			p.parked[i].Swap(true)
			if p.gen.Load() == seen {
				check.Reset(parkCheck)
				select {
				case <-p.wake[i]:
				case <-check.C:
				}
				check.Stop()
			}
			p.parked[i].Store(false)
			sp = spinner{}
		}
		seen = p.gen.Load()
		if p.quit.Load() {
			return
		}
		p.task.Run(i+1, p.threads)
		if p.pending.Add(-1) == 0 && p.callerParked.CompareAndSwap(true, false) {
			p.done <- struct{}{}
		}
	}
}

// split returns the part [lo, hi) of n items that thread takes of threads,
// rounded to multiples of align so threads do not share cache lines.
func split(n, thread, threads, align int) (lo, hi int) {
	chunks := (n + align - 1) / align
	lo = chunks * thread / threads * align
	hi = min(chunks*(thread+1)/threads*align, n)
	return min(lo, n), hi
}
