package cpu

import (
	"math"
	"time"
)

// ReadBandwidth returns how fast, in bytes per second, the backend's threads
// read every byte of bufs: the best of passes timed passes (at least one),
// after an untimed one that faults the pages in and leaves in the caches
// what fits, as decode's first token does. Each thread reads its share of
// every buffer, as a product splits a weight's rows between them.
func (b *Backend) ReadBandwidth(bufs [][]byte, passes int) float64 {
	t := readTask{bufs: bufs, dst: make([][readChunk]byte, b.pool.Threads())}
	total := 0
	for _, buf := range bufs {
		total += len(buf)
	}
	b.pool.Run(&t)
	best := time.Duration(math.MaxInt64)
	for range max(passes, 1) {
		start := time.Now()
		b.pool.Run(&t)
		best = min(best, time.Since(start))
	}
	return float64(total) / max(best, 1).Seconds()
}

// readChunk is how much of a share a thread copies at a time: its
// destination stays in the L1 cache, so that only the reads reach memory.
const readChunk = 4096

// readTask reads its buffers by copying them, chunk by chunk, to a buffer of
// each thread's. The runtime's memmove reads with the widest loads (or the
// string moves) the CPU has; a Go loop adding 8-byte words read 35% slower
// on two threads from memory, below what the F16 decode kernel reads.
type readTask struct {
	bufs [][]byte
	dst  [][readChunk]byte
}

func (t *readTask) Run(thread, threads int) {
	dst := t.dst[thread][:]
	for _, buf := range t.bufs {
		lo, hi := readShare(len(buf), thread, threads)
		for ; lo < hi; lo += readChunk {
			copy(dst, buf[lo:min(lo+readChunk, hi)])
		}
	}
}

// readShare is the part [lo, hi) of a buffer of n bytes that thread reads:
// whole 64-byte lines, so that no two threads read one line.
func readShare(n, thread, threads int) (lo, hi int) {
	lines := (n + 63) / 64
	return lines * thread / threads * 64, min(lines*(thread+1)/threads*64, n)
}
