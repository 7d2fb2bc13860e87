package bench

import (
	"fmt"
	"io"

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

// readPasses is how many timed passes ReadBandwidth takes the best of.
const readPasses = 10

// ReadBandwidth measures, in GB/s, how fast b's threads stream-read the
// matrices of m, DecodeBytes of them. Reading the weights themselves, not a
// copy, takes no memory and compares decode with the level of the memory
// hierarchy that holds them: a model that fits in the L3 cache is compared
// with the L3's bandwidth. Weights the backend repacked are read from its
// copies in decode, of about the same size.
func ReadBandwidth(b *cpu.Backend, m *models.Model) float64 {
	ws := m.Matrices()
	bufs := make([][]byte, len(ws))
	for i, w := range ws {
		bufs[i] = w.Data
	}
	return b.ReadBandwidth(bufs, readPasses) / 1e9
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
		fmt.Fprintf(w, "; its threads stream-read them at %.2f GB/s (best of %d passes)", s.ReadGBps, readPasses)
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
