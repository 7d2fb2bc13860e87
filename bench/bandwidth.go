package bench

import (
	"fmt"
	"io"
	"time"

	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
)

// DecodeBytes is the weight bytes a decode step reads however many
// sequences it decodes: every matrix it multiplies (the layers' projections
// and the output) once. Of the embeddings it reads a row a token, and norms
// are too small to count.
func DecodeBytes(m *models.Model) int64 {
	var n int64
	for _, w := range m.Matrices() {
		n += int64(len(w.Data))
	}
	return n
}

// readPasses is how many timed passes a cpu.Backend.ReadBandwidth takes the
// best of, and readTime how long ReadBandwidth repeats them for at least:
// on a VM the rate moved by a third within seconds (11 to 14 GB/s on one
// thread, 14 to 21 on two), and the best over a longer time is nearer what
// the box can read.
const (
	readPasses = 10
	readTime   = 500 * time.Millisecond
)

// ReadBandwidth measures, in GB/s, how fast b's threads stream-read the
// matrices of m, DecodeBytes of them: the best pass of at least readTime.
// Reading the weights themselves, not a copy, takes no memory and compares
// decode with the level of the memory hierarchy that holds them: a model
// that fits in the L3 cache is compared with the L3's bandwidth. Weights the
// backend repacked are read from its copies, as decode reads them (their
// stored pages were released at load, and are not faulted back in).
func ReadBandwidth(b *cpu.Backend, m *models.Model) float64 {
	ws := m.Matrices()
	bufs := make([][]byte, len(ws))
	for i, w := range ws {
		bufs[i] = b.Resident(w)
	}
	best := 0.0
	for start := time.Now(); best == 0 || time.Since(start) < readTime; {
		best = max(best, b.ReadBandwidth(bufs, readPasses))
	}
	return best / 1e9
}

// SetShares sets each generation test's share of the read bandwidth
// readGBps (ReadBandwidth) that its decode reached.
func SetShares(results []Result, readGBps float64) {
	for i := range results {
		if results[i].DecodeGBps > 0 && readGBps > 0 {
			results[i].BandwidthShare = results[i].DecodeGBps / readGBps
		}
	}
}

// writeBandwidth prints the line that says what the table's bandwidth
// columns compare.
func writeBandwidth(w io.Writer, s System) {
	fmt.Fprintf(w, "decode reads %.2f MiB of weights a step", float64(s.DecodeBytes)/(1<<20))
	if s.ReadGBps > 0 {
		fmt.Fprintf(w, "; its threads stream-read them at %.2f GB/s (the best pass)", s.ReadGBps)
	}
	fmt.Fprintln(w)
}

// bandwidthCells are a result's weights GB/s and share of the read
// bandwidth, blank where it has none.
func bandwidthCells(r Result) string {
	gbps, share := "", ""
	if r.DecodeGBps > 0 {
		gbps = fmt.Sprintf("%.2f", r.DecodeGBps)
	}
	if r.BandwidthShare > 0 {
		share = fmt.Sprintf("%.0f%%", 100*r.BandwidthShare)
	}
	return gbps + " | " + share
}
