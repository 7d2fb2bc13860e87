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

// load transposes KV head kvh of kv's positions [lo, L) into tiles from
// tile lo/16 on (the first at index 0), padding the positions before lo and
// after L with zeros; buf holds a key and a value converted from fp16 by ks.
func (at *attnTiles) load(ks *kernelSet, kv seqKV, a kernels.Attn, kvh, lo, L int, buf []float32) {
	hd, c := a.HeadDim, kv.c
	t0 := lo / 16
	tiles := (L+15)/16 - t0
	at.kt = grow(at.kt, tiles*hd*16)
	at.vt = grow(at.vt, tiles*hd*16)
	pad := func(p int) {
		base := (p/16-t0)*hd*16 + p%16
		for d := range hd {
			at.kt[base+16*d], at.vt[base+16*d] = 0, 0
		}
	}
	for p := t0 * 16; p < lo; p++ {
		pad(p)
	}
	for p0 := lo; p0 < L; {
		m, row := kv.run(p0, L)
		row += kvh * hd
		for p := p0; p < p0+m; p, row = p+1, row+c.Width {
			var k, v []float32
			if c.Type == kernels.KVF32 {
				k, v = c.K32[kv.layer][row:row+hd], c.V32[kv.layer][row:row+hd]
			} else {
				k, v = buf[:hd], buf[hd:2*hd]
				ks.fromHalf(k, c.K16[kv.layer][row:row+hd])
				ks.fromHalf(v, c.V16[kv.layer][row:row+hd])
			}
			base := (p/16-t0)*hd*16 + p%16
			for d := range hd {
				at.kt[base+16*d], at.vt[base+16*d] = k[d], v[d]
			}
		}
		p0 += m
	}
	for p := L; p < (t0+tiles)*16; p++ {
		pad(p)
	}
}

// attendTiled computes the query heads that share KV head kvh, for every
// query row of q (one sequence), through the tile kernels k.
func (ks *kernelSet) attendTiled(out, q []float32, kv seqKV, a kernels.Attn, ts *attnScratch, kvh int, k attnKernels) {
	qRow := a.Heads * a.HeadDim
	n := len(q) / qRow
	L := a.Pos0 + n
	group := a.Heads / a.KVHeads
	// With a sliding window, the tiles start at the first row's window;
	// scores[0] is position 16·t0.
	lo0 := windowStart(a.Pos0, a)
	t0 := lo0 / 16
	ts.tiles.load(ks, kv, a, kvh, lo0, L, ts.buf)
	for j := range n * group {
		h, i := kvh*group+j/n, j%n
		last := a.Pos0 + i
		tiles := last/16 + 1 - t0
		qh := q[i*qRow+h*a.HeadDim : i*qRow+(h+1)*a.HeadDim]
		k.scores(&ts.tiles.kt[0], &qh[0], tiles, a.Scale, &ts.scores[0])
		s := ts.scores[:last+1-16*t0]
		capAndMask(s, windowStart(last, a)-16*t0, a)
		ks.softmax(s)
		o := out[i*qRow+h*a.HeadDim : i*qRow+(h+1)*a.HeadDim]
		k.values(&ts.tiles.vt[0], &ts.scores[0], tiles, uint16(1<<(last%16+1)-1), &o[0])
	}
}
