package cpu

import "github.com/godwit-ai/godwit/kernels"

// Batched attention: with several query rows, the keys and values of a KV
// head are transposed once into tiles of 16 positions (HeadDim rows of 16
// floats, position 16τ+l in lane l of tile τ), and SIMD kernels compute a
// query row's scores and value sums one tile at a time, each position in its
// own lane, in the float order of attendHead.

// attnKernels are the tile kernels for one HeadDim.
type attnKernels struct {
	// scores sets s[16τ+l] = scale·(q · key 16τ+l) for tiles tiles of keys.
	scores func(kt, q *float32, tiles int, scale float32, s *float32)
	// values sets o = Σ s[p]·value p over tiles tiles (at least 1), the
	// last limited to the positions set in mask.
	values func(vt, s *float32, tiles int, mask uint16, o *float32)
}

// attnTileMinRows is the fewest query rows that pay for transposing a
// head's keys and values.
const attnTileMinRows = 4

// attnTiles holds one KV head transposed into tiles.
type attnTiles struct {
	kt, vt []float32
}

// load transposes KV head kvh of layer's positions [0, L) into tiles,
// padding the last with zeros.
func (at *attnTiles) load(ks *kernelSet, kv kernels.KV, a kernels.Attn, kvh, L int, buf []float32) {
	hd := a.HeadDim
	tiles := (L + 15) / 16
	at.kt = grow(at.kt, tiles*hd*16)
	at.vt = grow(at.vt, tiles*hd*16)
	off := kvh * hd
	for p := range tiles * 16 {
		base := (p/16)*hd*16 + p%16
		if p >= L {
			for d := range hd {
				at.kt[base+16*d], at.vt[base+16*d] = 0, 0
			}
			continue
		}
		k, v := ks.keyHead(kv, a.Layer, p, off, buf[:hd]), ks.valueHead(kv, a.Layer, p, off, buf[hd:2*hd])
		for d := range hd {
			at.kt[base+16*d], at.vt[base+16*d] = k[d], v[d]
		}
	}
}

// attendTiled computes the query heads that share KV head kvh, for every
// query row of q (one sequence), through the tile kernels k.
func (ks *kernelSet) attendTiled(out, q []float32, kv kernels.KV, a kernels.Attn, ts *attnScratch, kvh int, k attnKernels) {
	qRow := a.Heads * a.HeadDim
	n := len(q) / qRow
	L := a.Pos0 + n
	group := a.Heads / a.KVHeads
	ts.tiles.load(ks, kv, a, kvh, L, ts.buf)
	for j := range n * group {
		h, i := kvh*group+j/n, j%n
		last := a.Pos0 + i
		tiles := last/16 + 1
		qh := q[i*qRow+h*a.HeadDim : i*qRow+(h+1)*a.HeadDim]
		k.scores(&ts.tiles.kt[0], &qh[0], tiles, a.Scale, &ts.scores[0])
		ks.softmax(ts.scores[:last+1])
		o := out[i*qRow+h*a.HeadDim : i*qRow+(h+1)*a.HeadDim]
		k.values(&ts.tiles.vt[0], &ts.scores[0], tiles, uint16(1<<(last%16+1)-1), &o[0])
	}
}
