package gguf

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// rssFile is the process's resident file-backed memory, in bytes.
func rssFile(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status:", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("RssFile %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// TestRelease checks that releasing a mapped tensor's data takes its pages
// out of the resident set, and that the data reads the same afterwards.
func TestRelease(t *testing.T) {
	const size = 16 << 20
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	w := NewWriter()
	if err := w.AddTensor("w", I8, []uint64{size}, data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "w.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tensor := f.Tensors[0].Data
	if !bytes.Equal(tensor, data) {
		t.Fatal("mapped tensor differs from what was written")
	}
	before := rssFile(t)
	f.Release(tensor)
	after := rssFile(t)
	if before-after < size/2 {
		t.Errorf("Release of a %d MiB tensor: resident file pages %d → %d KiB, want them down by most of it", size>>20, before>>10, after>>10)
	}
	if !bytes.Equal(tensor, data) {
		t.Error("released tensor reads back differently")
	}
	// Data Parse read from memory is not touched.
	g, err := Parse(bytes.Clone(mustRead(t, path)))
	if err != nil {
		t.Fatal(err)
	}
	g.Release(g.Tensors[0].Data)
	if !bytes.Equal(g.Tensors[0].Data, data) {
		t.Error("Release changed data Parse holds in memory")
	}
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
