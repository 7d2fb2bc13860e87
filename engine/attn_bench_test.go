package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
)

// BenchmarkDecodeAttention is the attention of one batched decode step,
// every layer of it: 16 sequences of ctx positions in an fp16 pool of the
// 0.1B benchmark model's shape (10 layers, 12 query heads sharing 4 KV heads
// of 64), on two threads. The pool's layers outgrow L2, so the keys and
// values come from further out, as they do in a real step.
func BenchmarkDecodeAttention(b *testing.B) {
	const layers, heads, kvHeads, hd, seqs = 10, 12, 4, 64, 16
	for _, ctx := range []int{64, 256} {
		b.Run(fmt.Sprintf("ctx=%d", ctx), func(b *testing.B) {
			be := cpu.New(2)
			defer be.Close()
			width := kvHeads * hd
			pool, err := NewKVPool(KVPoolConfig{Layers: layers, Width: width, Bytes: KVBytes(layers, width, seqs*ctx, false), ToHalf: be.ToHalf})
			if err != nil {
				b.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, 2))
			k, v := make([]float32, width), make([]float32, width)
			batch := make([]kernels.AttnSeq, seqs)
			for i := range batch {
				s := pool.NewSeq()
				if err := s.Reserve(ctx); err != nil {
					b.Fatal(err)
				}
				if err := s.Extend(ctx); err != nil {
					b.Fatal(err)
				}
				for l := range layers {
					for p := range ctx {
						for j := range k {
							k[j], v[j] = r.Float32()*2-1, r.Float32()*2-1
						}
						s.Put(l, p, k, v)
					}
				}
				batch[i] = kernels.AttnSeq{Blocks: s.Table(0), Pos0: ctx - 1, Rows: 1}
			}
			q := make([]float32, seqs*heads*hd)
			for j := range q {
				q[j] = r.Float32()*2 - 1
			}
			out := make([]float32, len(q))
			for b.Loop() {
				for l := range layers {
					be.AttentionBatch(out, q, &pool.kv, batch, kernels.Attn{Layer: l, Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 0.125,
						Order: kernels.OrderBatchInvariant})
				}
			}
		})
	}
}
