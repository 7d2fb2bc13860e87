package cpu

import (
	"slices"

	"github.com/godwit-ai/godwit/models"
)

// ropeTable holds the factors of every rotation of positions [0, n) for one
// Rope, so that the cosines and sines a row needs are worked out once per
// position rather than once per call (every layer rotates the same
// positions, queries and keys alike). Per position it holds dims values in
// each of a and b: in the normal layout (cos, sin) and (−sin, cos) for each
// pair, in the NEOX layout the cosines then the sines, and the negated sines
// then the cosines. A rotated value is then fma(x0, a, x1·b) for its pair's
// x0 and x1 in the right places, exactly ggml's rotate_pairs.
type ropeTable struct {
	rope models.Rope // the Rope the table is for; FreqFactors compared by identity
	n    int
	a, b []float32
}

// of reports whether the table was made for r.
func (t *ropeTable) of(r *models.Rope) bool {
	same := len(r.FreqFactors) == len(t.rope.FreqFactors) &&
		(len(r.FreqFactors) == 0 || &r.FreqFactors[0] == &t.rope.FreqFactors[0])
	return same && r.Dims == t.rope.Dims && r.Base == t.rope.Base && r.FreqScale == t.rope.FreqScale && r.Neox == t.rope.Neox &&
		r.AttnFactor == t.rope.AttnFactor
}

// cover makes the table hold positions [0, n) of r, computing the ones it
// lacks.
func (t *ropeTable) cover(r *models.Rope, n int) {
	if !t.of(r) {
		*t = ropeTable{rope: *r}
	}
	if n <= t.n {
		return
	}
	dims := r.Dims
	t.a = slices.Grow(t.a[:t.n*dims], (n-t.n)*dims)[:n*dims]
	t.b = slices.Grow(t.b[:t.n*dims], (n-t.n)*dims)[:n*dims]
	half := dims / 2
	for p := t.n; p < n; p++ {
		a, b := t.a[p*dims:(p+1)*dims], t.b[p*dims:(p+1)*dims]
		ropeAngles(r, p, func(i0 int, cos, sin float32) {
			if r.Neox {
				a[i0/2], a[i0/2+half], b[i0/2], b[i0/2+half] = cos, sin, -sin, cos
			} else {
				a[i0], a[i0+1], b[i0], b[i0+1] = cos, sin, -sin, cos
			}
		})
	}
	t.n = n
}

// rotate applies the table's rotation of position pos to each of the heads
// of headDim values at x (one row), with ks's kernel where it has one.
func (t *ropeTable) rotate(ks *kernelSet, x []float32, pos, heads, headDim int) {
	dims := t.rope.Dims
	a, b := t.a[pos*dims:(pos+1)*dims], t.b[pos*dims:(pos+1)*dims]
	if k := ks.ropeRotate[b2i(t.rope.Neox)]; k != nil && dims%32 == 0 && len(x) >= (heads-1)*headDim+dims {
		k(x, heads, headDim, a, b)
		return
	}
	half := dims / 2
	for h := range heads {
		row := x[h*headDim : h*headDim+dims]
		for i := 0; i < dims; i += 2 {
			// Pair members: (i, i+1) in normal mode, (i/2, i/2+half) in
			// NEOX mode; the table holds each member's factors in place.
			j, k := i, i+1
			if t.rope.Neox {
				j, k = i/2, i/2+half
			}
			x0, x1 := row[j], row[k]
			row[j] = fma32(x0, a[j], x1*b[j])
			row[k] = fma32(x0, a[k], x1*b[k])
		}
	}
}
