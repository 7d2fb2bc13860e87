package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
)

// TestBatchInvariant: in kernels.OrderBatchInvariant, each activation row of
// a product and each query row of attention comes out with the same bits
// alone as within a batch of 23 (groups of four, tiles and their leftovers),
// for every weight type and kernel set, on two threads.
func TestBatchInvariant(t *testing.T) {
	t.Parallel()
	const rows, cols, n = 40, 512, 23
	const o = kernels.OrderBatchInvariant
	types := []gguf.Type{gguf.F32, gguf.F16, gguf.BF16, gguf.Q8_0, gguf.Q4_0, gguf.Q5_0, gguf.Q4_1, gguf.Q5_1,
		gguf.Q4_K, gguf.Q5_K, gguf.Q6_K}
	for _, v := range testSets() {
		b := newBackend(v, 2)
		defer b.Close()
		for _, typ := range types {
			w := make([]byte, rows*typ.RowSize(cols))
			if err := Quantize(typ, randomData("gauss", rows*cols, 3), w); err != nil {
				t.Fatal(err)
			}
			// The same weight as stored and as Prepare may pack it.
			stored := &models.Weight{Name: "w", Type: typ, Rows: rows, Cols: cols, Data: w}
			prepared := *stored
			b.Prepare(&prepared)
			x := randomData("gauss", n*cols, 4)
			for _, wt := range []*models.Weight{stored, &prepared} {
				all := make([]float32, n*rows)
				b.MatMul(all, wt, x, n, o)
				one := make([]float32, rows)
				for i := range n {
					b.MatMul(one, wt, x[i*cols:(i+1)*cols], 1, o)
					if j := firstDiff(one, all[i*rows:(i+1)*rows]); j >= 0 {
						t.Errorf("%v %v (prepared: %v): row %d alone: out[%d] = %g, in the batch %g", v, typ, wt == &prepared, i, j, one[j], all[i*rows+j])
					}
				}
			}
		}
		for _, hd := range []int{8, 64, 128} {
			r := rand.New(rand.NewPCG(uint64(hd), 9))
			const heads, kvHeads, total = 4, 2, 37
			f32 := flatKV{k: randVec(r, total*kvHeads*hd), v: randVec(r, total*kvHeads*hd), width: kvHeads * hd}
			q := randVec(r, n*heads*hd)
			a := kernels.Attn{Pos0: total - n, Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 0.2, Order: o}
			// An fp16 cache too: a lone row reads it in runs, the batch
			// through tiles.
			for _, kv := range []flatKV{f32, f32.half()} {
				c, blocks := kv.cache()
				all := make([]float32, len(q))
				b.Attention(all, q, c, blocks, a)
				w := heads * hd
				for i := range n {
					one := make([]float32, w)
					ai := a
					ai.Pos0 += i
					b.Attention(one, q[i*w:(i+1)*w], c, blocks, ai)
					if j := firstDiff(one, all[i*w:(i+1)*w]); j >= 0 {
						t.Errorf("%v attention hd=%d fp16=%v: row %d alone: out[%d] = %g, in the batch %g", v, hd, kv.fp16, i, j, one[j], all[i*w+j])
					}
				}
			}
		}
	}
}

// firstDiff is the first index where a and b differ in their bits, or −1.
func firstDiff(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// TestAttentionBatch: several sequences of one cache in one AttentionBatch
// call, of different lengths and row counts (decode rows, short and tiled
// prompt chunks), with f32 caches in one block per sequence or in blocks of
// 16 and fp16 caches in blocks of 16, give each sequence the bits it gets in
// its own Attention call, under every kernel set, on two threads, with and
// without a soft cap and a sliding window.
func TestAttentionBatch(t *testing.T) {
	t.Parallel()
	const heads, kvHeads = 4, 2
	for _, v := range testSets() {
		b := newBackend(v, 2)
		defer b.Close()
		for _, c := range []struct {
			hd      int
			softCap float32
			window  int
		}{{8, 0, 0}, {64, 0, 0}, {8, 2, 7}, {64, 2, 7}} {
			hd := c.hd
			r := rand.New(rand.NewPCG(uint64(hd), 10))
			a := kernels.Attn{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 0.25, SoftCap: c.softCap, Window: c.window}
			w := heads * hd
			var kvs []flatKV
			var seqs []kernels.AttnSeq
			var q []float32
			// Nine sequences: on two threads, enough to be split by
			// sequence (attnSeqUnits).
			for _, shape := range [][2]int{{1, 30}, {5, 0}, {1, 1}, {17, 20}, {3, 44}, {1, 16}, {1, 63}, {2, 15}, {1, 0}} {
				rows, pos0 := shape[0], shape[1]
				total := pos0 + rows
				kvs = append(kvs, flatKV{k: randVec(r, total*kvHeads*hd), v: randVec(r, total*kvHeads*hd), width: kvHeads * hd})
				seqs = append(seqs, kernels.AttnSeq{Pos0: pos0, Rows: rows})
				q = append(q, randVec(r, rows*w)...)
			}
			for _, layout := range []struct {
				fp16  bool
				block int
			}{{false, 0}, {false, 16}, {true, 16}} {
				c, tables := testCache(layout.fp16, layout.block, kvHeads*hd, kvs...)
				for i := range seqs {
					seqs[i].Blocks = tables[i]
					// Blocks wholly before the window of a sequence's
					// first row are gone from its table, as a paged
					// pool releases them: reading one would panic.
					for b := 0; layout.block > 0 && (b+1)*layout.block <= windowStart(seqs[i].Pos0, a); b++ {
						tables[i][b] = -1
					}
				}
				all := make([]float32, len(q))
				b.AttentionBatch(all, q, c, seqs, a)
				row := 0
				for i, s := range seqs {
					one := make([]float32, s.Rows*w)
					ai := a
					ai.Pos0 = s.Pos0
					b.Attention(one, q[row*w:(row+s.Rows)*w], c, s.Blocks, ai)
					if j := firstDiff(one, all[row*w:(row+s.Rows)*w]); j >= 0 {
						t.Errorf("%v %+v %+v: sequence %d alone: out[%d] = %g, in the batch %g", v, a, layout, i, j, one[j], all[row*w+j])
					}
					row += s.Rows
				}
			}
		}
	}
}
