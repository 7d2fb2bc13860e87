package cpu

import (
	"encoding/binary"
	"math"
	"time"
)

// ReadBandwidth returns how fast, in bytes per second, the backend's threads
// read every byte of bufs: the best of passes timed passes (at least one),
// after an untimed one that faults the pages in and leaves in the caches
// what fits, as decode's first token does. Each thread reads its share of
// every buffer, as a product splits a weight's rows between them.
func (b *Backend) ReadBandwidth(bufs [][]byte, passes int) float64 {
	t := readTask{bufs: bufs, sums: make([]readSum, b.pool.Threads())}
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

// readTask adds up its buffers' words (sumWords), thread i into sums[i]:
// stored sums keep the compiler from dropping the loads.
type readTask struct {
	bufs [][]byte
	sums []readSum
}

// readSum is a thread's sum, alone on its cache line so that the threads'
// stores do not contend.
type readSum struct {
	v uint64
	_ [56]byte
}

// Run reads the thread's share of each buffer: whole 64-byte lines from the
// buffer's start, so that no two threads read one line and a share's words
// are the buffer's.
func (t *readTask) Run(thread, threads int) {
	var s uint64
	for _, buf := range t.bufs {
		lines := (len(buf) + 63) / 64
		lo := lines * thread / threads * 64
		hi := min(lines*(thread+1)/threads*64, len(buf))
		s += sumWords(buf[lo:hi])
	}
	t.sums[thread].v = s
}

// sumWords adds b's little-endian 8-byte words and then its last len(b)%8
// bytes. A line's eight words go to eight sums, so that the adds do not
// chain and the loads set the pace.
func sumWords(b []byte) uint64 {
	var s0, s1, s2, s3, s4, s5, s6, s7 uint64
	le := binary.LittleEndian
	for ; len(b) >= 64; b = b[64:] {
		s0 += le.Uint64(b[0:])
		s1 += le.Uint64(b[8:])
		s2 += le.Uint64(b[16:])
		s3 += le.Uint64(b[24:])
		s4 += le.Uint64(b[32:])
		s5 += le.Uint64(b[40:])
		s6 += le.Uint64(b[48:])
		s7 += le.Uint64(b[56:])
	}
	for ; len(b) >= 8; b = b[8:] {
		s0 += le.Uint64(b)
	}
	for _, c := range b {
		s0 += uint64(c)
	}
	return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
}
