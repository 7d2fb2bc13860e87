package cpu

import (
	"math"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models"
)

// The operations follow ggml's CPU code as llama.cpp's AVX512F build runs it,
// step for step and in the same float order (sums of squares and softmax
// denominators in float64, everything else in float32, the vector exp of
// simd.go), so that results round as llama.cpp's do.

// rmsNorm normalises each dim-wide row of x into out, then scales by weight.
// A row's sum of squares is one chain of float64 additions in order, as
// ggml's; four rows' chains run side by side.
func (k *kernelSet) rmsNorm(out, x, weight []float32, dim int, eps float32) {
	rows := len(x) / dim
	r := 0
	for ; r+4 <= rows; r += 4 {
		x0 := x[r*dim : (r+1)*dim]
		x1, x2, x3 := x[(r+1)*dim:(r+2)*dim], x[(r+2)*dim:(r+3)*dim], x[(r+3)*dim:(r+4)*dim]
		x1, x2, x3 = x1[:len(x0)], x2[:len(x0)], x3[:len(x0)]
		var s0, s1, s2, s3 float64
		for i, v := range x0 {
			s0 += float64(v * v)
			s1 += float64(x1[i] * x1[i])
			s2 += float64(x2[i] * x2[i])
			s3 += float64(x3[i] * x3[i])
		}
		for j, sum := range [4]float64{s0, s1, s2, s3} {
			k.normRow(out[(r+j)*dim:(r+j+1)*dim], x[(r+j)*dim:(r+j+1)*dim], weight, sum, eps)
		}
	}
	for ; r < rows; r++ {
		row := x[r*dim : (r+1)*dim]
		var sum float64
		for _, v := range row {
			sum += float64(v * v)
		}
		k.normRow(out[r*dim:(r+1)*dim], row, weight, sum, eps)
	}
}

// normRow scales row into o by its sum of squares, then by weight.
func (k *kernelSet) normRow(o, row, weight []float32, sum float64, eps float32) {
	mean := float32(sum / float64(len(row)))
	k.normScale(o, row, weight, 1/float32(math.Sqrt(float64(mean+eps))))
}

func normScaleGo(o, x, w []float32, s float32) {
	x, w = x[:len(o)], w[:len(o)]
	for i, v := range x {
		o[i] = v * s * w[i]
	}
}

// RoPE rotates each head of each row of x in place; row i is at position pos[i].
func RoPE(x []float32, pos []int32, heads, headDim int, r *models.Rope) {
	half := r.Dims / 2
	rowLen := heads * headDim
	for i, p := range pos {
		ropeAngles(r, int(p), func(i0 int, cos, sin float32) {
			// Pair members: (i0, i0+1) in normal mode, (i0/2, i0/2+half) in NEOX mode.
			a, b := i0, i0+1
			if r.Neox {
				a, b = i0/2, i0/2+half
			}
			for h := 0; h < heads; h++ {
				base := i*rowLen + h*headDim
				x0, x1 := x[base+a], x[base+b]
				// ggml's rotate_pairs computes x0*cos - x1*sin and
				// x0*sin + x1*cos; GCC (-ffp-contract=fast) fuses the first
				// product of each into an FMA.
				x[base+a] = fma32(x0, cos, -float32(x1*sin))
				x[base+b] = fma32(x0, sin, float32(x1*cos))
			}
		})
	}
}

// ropeAngles calls f with the cosine and sine of each pair i0 (0, 2, 4, …)
// of position p's rotation, as ggml's rope cache works them out: times
// r.AttnFactor where it is set (ggml's mscale).
func ropeAngles(r *models.Rope, p int, f func(i0 int, cos, sin float32)) {
	freqScale := r.FreqScale
	if freqScale == 0 {
		freqScale = 1
	}
	thetaScale := float32(math.Pow(float64(r.Base), -2.0/float64(r.Dims)))
	theta := float32(p)
	for i0 := 0; i0 < r.Dims; i0 += 2 {
		t := theta
		if r.FreqFactors != nil {
			t /= r.FreqFactors[i0/2]
		}
		t *= freqScale
		cos, sin := sinfcosf(t, true), sinfcosf(t, false) // glibc's cosf and sinf
		if r.AttnFactor != 0 {
			cos, sin = cos*r.AttnFactor, sin*r.AttnFactor
		}
		f(i0, cos, sin)
		theta *= thetaScale
	}
}

// softmax replaces x by softmax(x) in place as ggml_soft_max does it for one
// row of attention scores: the maximum subtracted, exp taken 16 values at a
// time with the vector expf, each 16 summed by _mm512_reduce_add_ps and those
// sums added in float64, then every value scaled by float32(1/sum). The last
// block is padded with zeros, as llama.cpp's scores are (the KV length is a
// multiple of 256 there and masked positions give exp(−∞) = 0).
func (k *kernelSet) softmax(x []float32) {
	sum := k.softmaxExp(x, k.maxRow(x))
	k.scaleRow(x, float32(1/sum))
}

func maxRowGo(x []float32) float32 {
	mx := float32(math.Inf(-1))
	for _, v := range x {
		mx = max(mx, v)
	}
	return mx
}

func scaleRowGo(x []float32, s float32) {
	for i, v := range x {
		x[i] = float32(v * s)
	}
}

func softmaxExpGo(x []float32, mx float32) float64 {
	var sum float64
	for b := 0; b < len(x); b += 16 {
		var blk [16]float32
		for t := range min(16, len(x)-b) {
			e := expf(float32(x[b+t] - mx))
			x[b+t], blk[t] = e, e
		}
		sum += float64(reduce16(&blk))
	}
	return sum
}

// Dot is the f32 dot product of two equal-length vectors, summed as
// ggml_vec_dot_f32 does (see vecDot64).
func Dot(a, b []float32) float32 { return vecDotF32(a, b) }

// laneWidth is how many lanes the value sums of a call with n query rows take
// in llama.cpp: tinyBLAS's 16 for a batch when hd is a multiple of 4, else
// ggml_vec_dot's 64; kernels.OrderBatchInvariant gives one row the 16 of a
// batch.
func laneWidth(n, hd int, o kernels.Order) int {
	if (n >= 2 || o == kernels.OrderBatchInvariant) && hd%4 == 0 {
		return 16
	}
	return 64
}

// attendHead computes one head of one query row of causal multi-head
// attention with grouped KV heads from h, which holds the query head's KV
// head: job j is row j/Heads, head j%Heads; scores must hold at least
// a.Pos0+n floats, where n is the number of query rows in q, and lanes
// 64·HeadDim.
//
// It follows llama.cpp without flash attention: KQ is ggml_vec_dot_f32 per
// key (q is a permuted, non-contiguous view there), the softmax is
// kernelSet.softmax after scaling, and KQV multiplies the transposed V cache
// by the scores. That product goes through llamafile's tinyBLAS (16 lanes)
// when the batch has two or more rows and HeadDim is a multiple of 4, else
// through ggml_vec_dot_f32 (4×16 lanes); position p feeds lane p mod 16 or
// p mod 64, and the positions past the last one, zero-weighted there, add
// nothing.
//
// With a sliding window the row reads positions from its window's start
// (windowStart) on, and sums from the multiple of 64 below it, the
// positions in between weighted 0: each position keeps its lane, and the
// sums their bits.
func (k *kernelSet) attendHead(out, q []float32, h *headKV, a kernels.Attn, j int, scores, lanes []float32) {
	qRow, hd := a.Heads*a.HeadDim, a.HeadDim
	width := laneWidth(len(q)/qRow, hd, a.Order)
	acc := lanes[:width*hd]
	i, hh := j/a.Heads, j%a.Heads
	last := a.Pos0 + i
	lo := windowStart(last, a)
	from := lo &^ 63
	s := scores[:last+1-from]
	qh := q[i*qRow+hh*hd : i*qRow+(hh+1)*hd]
	for p := lo; p <= last; p++ {
		r := (p - h.base) * h.stride
		s[p-from] = float32(k.dotF32(qh, h.k[r:r+hd]) * a.Scale)
	}
	capAndMask(s, lo-from, a)
	k.softmax(s)
	k.kqv(out[i*qRow+hh*hd:i*qRow+(hh+1)*hd], s, h.v[(from-h.base)*h.stride:], h.stride, width, acc)
}

// windowStart is the first position a query row at position last attends
// to: 0, or the start of its sliding window.
func windowStart(last int, a kernels.Attn) int {
	if a.Window > 0 && last+1 > a.Window {
		return last + 1 - a.Window
	}
	return 0
}

// capAndMask prepares one query row's scores s for the softmax: the first
// lo, before its window, become −Inf, as llama.cpp's KQ mask makes them
// (the softmax gives them exactly 0, which adds nothing to any sum), and
// the rest take a's soft cap.
func capAndMask(s []float32, lo int, a kernels.Attn) {
	for p := range s[:lo] {
		s[p] = float32(math.Inf(-1))
	}
	if a.SoftCap > 0 {
		softCap(s[lo:], a.SoftCap)
	}
}

func kqvGo(o, s, vs []float32, stride, width int, acc []float32) {
	clear(acc)
	for p, w := range s {
		v := vs[p*stride : p*stride+len(o)]
		l := p % width
		for d, vd := range v {
			acc[d*width+l] = fma32(vd, w, acc[d*width+l])
		}
	}
	for d := range o {
		if width == 16 {
			o[d] = reduce16((*[16]float32)(acc[d*16:]))
		} else {
			o[d] = fold64((*[64]float32)(acc[d*64:]))
		}
	}
}

// attnRowKernels compute a query row's attention over one KV head held as
// rows one after the other (headKV), each in one call where attendHead
// makes one per position, in the same order.
type attnRowKernels struct {
	// scores sets out[p] = vecDotF32(q, k[p·hd:]) for p < len(out).
	scores func(k []float32, hd int, q, out []float32)
	// values adds v's rows, each times s[p], to row p mod width of acc.
	values func(acc, v, s []float32, hd, width int)
	// fold folds width lane rows of acc into o as kqvGo does.
	fold func(o, acc []float32, width int)
}

// attendRows is attendHead for a KV head held in h, through ks.attnRows.
func (ks *kernelSet) attendRows(out, q []float32, h *headKV, a kernels.Attn, j int, scores, lanes []float32) {
	k := ks.attnRows
	qRow, hd := a.Heads*a.HeadDim, a.HeadDim
	width := laneWidth(len(q)/qRow, hd, a.Order)
	acc := lanes[:width*hd]
	i, hh := j/a.Heads, j%a.Heads
	last := a.Pos0 + i
	lo := windowStart(last, a)
	from := lo &^ 63
	s := scores[:last+1-from]
	k.scores(h.k[(lo-h.base)*h.stride:], hd, q[i*qRow+hh*hd:i*qRow+(hh+1)*hd], s[lo-from:])
	ks.scaleRow(s[lo-from:], a.Scale)
	capAndMask(s, lo-from, a)
	ks.softmax(s)
	clear(acc)
	k.values(acc, h.v[(from-h.base)*h.stride:], s, hd, width)
	k.fold(out[i*qRow+hh*hd:i*qRow+(hh+1)*hd], acc, width)
}

// halfRun is a run of an fp16 cache's rows for one KV head: its positions
// and the views of its keys and values.
type halfRun struct {
	m      int
	kh, vh []uint16
}

// halfRuns lists the runs of KV head kvh of an fp16 cache over positions
// [lo, n), a block's rows each, once for all the query heads that share it.
func halfRuns(runs []halfRun, kv seqKV, a kernels.Attn, kvh, lo, n int) []halfRun {
	hd, stride := a.HeadDim, kv.c.Width
	runs = runs[:0]
	for p := lo; p < n; {
		m, at := kv.run(p, n)
		at += kvh * hd
		span := (m-1)*stride + hd
		runs = append(runs, halfRun{m, kv.c.K16[kv.layer][at : at+span], kv.c.V16[kv.layer][at : at+span]})
		p += m
	}
	return runs
}

// attnDecodeKernels compute the query heads of one query row that share a
// KV head against up to 16 fp16 rows of a run at a time, converting each
// key and value row once for all of them, in attendRows's order.
type attnDecodeKernels struct {
	// scores sets head g's s[p] (at s+sStride·g bytes) to scale times
	// the vecDotF32 of the query at q+HeadDim·g and key row p < m ≤ 16
	// (stride bytes apart); mask has the low m bits set and buf holds 16
	// rows of HeadDim floats.
	scores func(k *uint16, stride, m int, q *float32, heads int, s *float32, sStride int, buf *float32, scale float32, mask uint16)
	// values adds value row p < m times head g's s[p] (at s+sStride·g
	// bytes) to lane row (lane+p) mod width of head g's lane sums (at
	// acc+accStride·g bytes) by FMA, in order of p.
	values func(v *uint16, stride, m int, s *float32, sStride, heads int, acc *float32, accStride, lane, width int)
}

// attendGroupHalf is attendRows for query row i and all group query heads
// from h0 on, which share one KV head, reading an fp16 cache where it lies,
// through its runs (halfRuns) and the kernels dk: each key and value row is
// converted once for the group, and each run's first chunk prefetches the
// next run. Head g's scores take ts.scores[g·sStride:] and its lane sums
// ts.lanes[g·width·HeadDim:]. The runs start at position lo0, the window
// start of the first row; query row i attends to their positions up to
// Pos0+i from its own window's start.
func (ks *kernelSet) attendGroupHalf(out, q []float32, runs []halfRun, lo0 int, a kernels.Attn, i, h0, group, sStride int, ts *attnScratch, dk attnDecodeKernels) {
	k := ks.attnRows
	qRow, hd, stride := a.Heads*a.HeadDim, a.HeadDim, a.KVHeads*a.HeadDim
	width := laneWidth(len(q)/qRow, hd, a.Order)
	n := a.Pos0 + i + 1
	aStride := width * hd
	if len(ts.scores) < (group-1)*sStride+n || len(ts.lanes) < group*aStride || len(ts.kb) < 16*hd ||
		len(q) < i*qRow+(h0+group)*hd {
		panic("cpu: attention scratch too short for a group of heads")
	}
	qh := &q[i*qRow+h0*hd]
	// Each run, in chunks of up to 16 positions; the first chunk of a run
	// prefetches the next run's rows (of keys, then of values).
	chunks := func(f func(kh, vh []uint16, p, m int), values bool) {
		p := lo0
		for r, run := range runs {
			if r+1 < len(runs) && p+run.m < n {
				if values {
					ks.prefetchRows(runs[r+1].vh, hd, stride)
				} else {
					ks.prefetchRows(runs[r+1].kh, hd, stride)
				}
			}
			for o := 0; o < run.m && p < n; o += 16 {
				m := min(16, run.m-o, n-p)
				if len(run.kh) < (o+m-1)*stride+hd || len(run.vh) < (o+m-1)*stride+hd {
					panic("cpu: fp16 run shorter than its positions")
				}
				f(run.kh[o*stride:], run.vh[o*stride:], p, m)
				p += m
			}
		}
	}
	chunks(func(kh, _ []uint16, p, m int) {
		dk.scores(&kh[0], 2*stride, m, qh, group, &ts.scores[p], 4*sStride, &ts.kb[0], a.Scale, uint16(1)<<m-1)
	}, false)
	ks.prefetchRows(runs[0].vh, hd, stride)
	// The softmax starts at a multiple of 16 (its blocks), the positions
	// before the row's window weighted 0.
	lo := windowStart(n-1, a)
	from := lo0 &^ 15
	for g := range group {
		s := ts.scores[g*sStride+from : g*sStride+n]
		capAndMask(s, lo-from, a)
		ks.softmax(s)
	}
	clear(ts.lanes[:group*aStride])
	chunks(func(_, vh []uint16, p, m int) {
		dk.values(&vh[0], 2*stride, m, &ts.scores[p], 4*sStride, group, &ts.lanes[0], 4*aStride, p%width, width)
	}, true)
	for g := range group {
		o := i*qRow + (h0+g)*hd
		k.fold(out[o:o+hd], ts.lanes[g*aStride:(g+1)*aStride], width)
	}
}

func fromHalfRowsGo(dst []float32, src []uint16, cols, stride int) {
	for r := range len(dst) / cols {
		fromHalfGo(dst[r*cols:(r+1)*cols], src[r*stride:])
	}
}

func fromHalfGo(dst []float32, src []uint16) {
	for i, h := range src[:len(dst)] {
		dst[i] = FP16ToFP32(h)
	}
}

func toHalfGo(dst []uint16, src []float32) {
	for i, f := range src[:len(dst)] {
		dst[i] = FP32ToFP16(f)
	}
}

// swiGLU sets gate[i] = silu(gate[i])·up[i] as ggml_vec_swiglu_f32 does:
// silu(x) = x/(1 + expf(−x)) with the vector expf for each 16 values, libm's
// expf for a tail. Rows are taken to be a multiple of 16 wide (ggml restarts
// the 16-value blocks at each row).
func (k *kernelSet) swiGLU(gate, up []float32) {
	n := len(gate) &^ 15
	k.swiGLU16(gate[:n], up[:n])
	for i := n; i < len(gate); i++ {
		g := gate[i]
		e := float32(math.Exp(float64(-g)))
		gate[i] = float32(float32(g/float32(1+e)) * up[i])
	}
}

func swiGLU16Go(gate, up []float32) {
	for i, g := range gate {
		e := expf(float32(0 - g))
		gate[i] = float32(float32(g/float32(1+e)) * up[i])
	}
}

// Add sets dst[i] += src[i].
func Add(dst, src []float32) {
	for i, v := range src {
		dst[i] += v
	}
}

// addBias adds bias to every len(bias)-wide row of x.
func (k *kernelSet) addBias(x, bias []float32) {
	for r := 0; r+len(bias) <= len(x); r += len(bias) {
		k.add(x[r:r+len(bias)], bias)
	}
}
