// Package sample picks the next token from a row of logits.
//
// A Sampler applies the steps of llama.cpp's default sampler chain (and of
// vLLM) in this order:
//
//  1. logit bias: LogitBias is added to the logits (-Inf bans a token);
//  2. penalties over the last PenaltyLastN history tokens (all of them when
//     0): for every distinct token seen, the repetition penalty divides a
//     positive logit or multiplies a non-positive one, then
//     count×FrequencyPenalty + PresencePenalty is subtracted;
//  3. Temperature 0: the argmax is returned (ties go to the lowest id) and
//     the steps below are skipped;
//  4. top-k keeps the TopK highest logits;
//  5. top-p keeps the smallest set of most likely survivors whose softmax
//     mass reaches TopP;
//  6. min-p drops survivors whose probability is below MinP × the largest;
//  7. the survivors' logits are divided by Temperature, softmaxed, and one is
//     drawn with a uniform number that is a pure function of (Params.Seed,
//     i), where i counts the sample's generated tokens from 0.
//
// Draw i depends on nothing else — not on earlier draws, nor on how many
// tokens this Sampler has sampled — so a sequence that is recomputed after
// preemption, or resumed part-way on another node with the same seed and
// its generated tokens, draws exactly the numbers an uninterrupted run would
// (issue 14). The numbers are the SplitMix64 stream: draw i is
// mix64(seed + (i+1)·γ), which a counter gives directly, with no state.
//
// The filters of steps 4–6 all see the temperature-1 distribution, so the
// temperature changes how the surviving tokens are weighted but never which
// tokens survive. Ties in every ranking go to the lower token id, so the
// result depends only on the logits, the history and the random stream.
//
// LogProbs reports log-softmax values after steps 1–2 and before any filter
// or temperature, as vLLM does by default for OpenAI-style logprobs.
//
// A Sampler owns buffers sized once for the vocabulary and allocates nothing
// per call; it is not safe for concurrent use, so each request gets its own.
package sample

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
)

// NoToken is what Sample returns when no token has a usable logit (all -Inf
// or NaN after bias and penalties). Validate rejects a bias that bans the whole
// vocabulary, so this only happens when the model itself produced such a row.
const NoToken int32 = -1

// golden is SplitMix64's increment γ, 2^64 divided by the golden ratio.
const golden = 0x9e3779b97f4a7c15

// TokenLogProb is one entry of a top-n log-probability list.
type TokenLogProb struct {
	ID      int32
	LogProb float32
}

type bias struct {
	id  int32
	val float32
}

// Sampler samples tokens for one request. Create it with New.
type Sampler struct {
	p    Params
	seed uint64 // Params.Seed, or a random one without HasSeed
	bias []bias // LogitBias as a slice, so Sample does not iterate a map

	// Scratch, sized to the vocabulary in New.
	logits []float32 // the caller's logits after bias and penalties
	ids    []int32   // candidate token ids
	w      []float64 // draw weights, parallel to the surviving candidates
	counts []int32   // per-token occurrence counts in the penalty window; all zero between calls
}

// New validates p and returns a Sampler for a vocabulary of vocab tokens.
// Without HasSeed the seed comes from crypto/rand, which cannot fail since
// Go 1.24 (it aborts the program instead), so there is no weaker fallback.
func New(p Params, vocab int) (*Sampler, error) {
	if err := p.Validate(vocab); err != nil {
		return nil, err
	}
	seed := p.Seed
	if !p.HasSeed {
		var b [8]byte
		_, _ = crand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	s := &Sampler{
		p:      p,
		seed:   seed,
		logits: make([]float32, vocab),
		ids:    make([]int32, vocab),
	}
	if p.Temperature > 0 {
		s.w = make([]float64, vocab)
	}
	if p.penaltiesOn() {
		s.counts = make([]int32, vocab)
	}
	// Bias entries touch distinct tokens, so the map's random iteration
	// order cannot change the result.
	for id, v := range p.LogitBias {
		s.bias = append(s.bias, bias{id, v})
	}
	return s, nil
}

// Sample returns generated token i of the sample (0 for the first) for
// logits (one value per vocabulary entry) given history, the tokens seen so
// far (prompt and generated) that the penalties look at. The random draw
// depends only on the seed and i, so calls may come in any order, repeat, or
// start at any i. History ids outside the vocabulary are ignored. logits is
// not modified. Sample panics if len(logits) is not the vocabulary size.
func (s *Sampler) Sample(logits []float32, history []int32, i int) int32 {
	l := s.prepare(logits, history)
	if s.p.Temperature == 0 {
		return argmax(l)
	}
	cand := s.filter(l)
	if len(cand) == 0 {
		return NoToken
	}
	return s.draw(l, cand, s.uniform(i))
}

// uniform returns draw i of the seed's stream as a float64 in [0, 1): the
// top 53 bits of SplitMix64's output i, mix64(seed + (i+1)·γ). The
// conversion is spelled out so that the stream is fixed on every platform
// and Go version.
func (s *Sampler) uniform(i int) float64 {
	z := s.seed + (uint64(i)+1)*golden
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) * 0x1p-53
}

// LogProbs fills top with the n most likely tokens (n is clamped to len(top)
// and the vocabulary size), most likely first with ties to the lower id, and
// returns the log-probability of chosen. The values are a log-softmax over the
// full vocabulary after bias and penalties, before top-k/top-p/min-p and
// temperature. A chosen id outside the vocabulary (such as NoToken) gets -Inf.
func (s *Sampler) LogProbs(logits []float32, history []int32, chosen int32, n int, top []TokenLogProb) float32 {
	l := s.prepare(logits, history)
	ls := newLogSoftmax(l)
	n = min(n, len(top), len(l))
	if n > 0 {
		ids := s.ids[:len(l)]
		for i := range ids {
			ids[i] = int32(i)
		}
		h := s.selectTop(ids, n)
		// Heapsort the min-heap in place: each step moves the worst
		// remaining token to the back, leaving h best-first.
		for end := len(h) - 1; end > 0; end-- {
			h[0], h[end] = h[end], h[0]
			s.siftDown(h[:end], 0, true)
		}
		for i, id := range h {
			top[i] = TokenLogProb{ID: id, LogProb: ls.at(l[id])}
		}
	}
	if chosen < 0 || int(chosen) >= len(l) {
		return float32(math.Inf(-1))
	}
	return ls.at(l[chosen])
}

// prepare copies logits into the sampler's buffer and applies the logit bias
// and the penalties. NaN becomes -Inf so every later comparison is a total
// order and a NaN token can never be chosen.
func (s *Sampler) prepare(logits []float32, history []int32) []float32 {
	if len(logits) != len(s.logits) {
		panic(fmt.Sprintf("sample: %d logits for a vocabulary of %d", len(logits), len(s.logits)))
	}
	l := s.logits
	for i, v := range logits {
		l[i] = clean(v)
	}
	for _, b := range s.bias {
		l[b.id] = clean(l[b.id] + b.val) // +Inf logit with a -Inf bias is NaN
	}
	if s.counts != nil {
		s.penalize(l, history)
	}
	return l
}

// penalize applies the repetition, presence and frequency penalties once per
// distinct token of the window. Counting into s.counts and clearing each
// entry as it is applied keeps the call allocation-free and leaves the
// counts zeroed for the next call without a pass over the vocabulary.
func (s *Sampler) penalize(l []float32, history []int32) {
	win := history
	if n := s.p.PenaltyLastN; n > 0 && len(win) > n {
		win = win[len(win)-n:]
	}
	vocab := int32(len(l))
	for _, t := range win {
		if t >= 0 && t < vocab {
			s.counts[t]++
		}
	}
	rep, rOn := s.p.RepetitionPenalty, s.p.repetitionOn()
	for _, t := range win {
		if t < 0 || t >= vocab || s.counts[t] == 0 {
			continue
		}
		v := l[t]
		if rOn {
			if v <= 0 {
				v *= rep
			} else {
				v /= rep
			}
		}
		v -= float32(s.counts[t])*s.p.FrequencyPenalty + s.p.PresencePenalty
		l[t] = clean(v)
		s.counts[t] = 0
	}
}

// filter returns the candidates that survive top-k, top-p and min-p, in no
// particular order. It excludes -Inf tokens (banned or masked) up front.
func (s *Sampler) filter(l []float32) []int32 {
	cand := s.ids[:0]
	best := NoToken
	for i, v := range l {
		if v > float32(math.Inf(-1)) {
			cand = append(cand, int32(i))
			if best == NoToken || v > l[best] {
				best = int32(i)
			}
		}
	}
	if len(cand) <= 1 {
		return cand
	}
	if math.IsInf(float64(l[best]), 1) {
		// An infinite logit takes all the probability mass; softmax would
		// compute Inf-Inf. Keep only it (the lowest id if several).
		s.ids[0] = best
		return s.ids[:1]
	}
	top := float64(l[best])
	if k := s.p.TopK; k > 0 && k < len(cand) {
		cand = s.selectTop(cand, k) // keeps best, so top stays the max
	}
	if p := s.p.TopP; p > 0 && p < 1 {
		cand = s.topP(l, cand, top, float64(p))
	}
	if mp := s.p.MinP; mp > 0 {
		// p_i >= MinP × p_max  ⇔  l_i - l_max >= log(MinP): no softmax needed,
		// and the ratio is unchanged by the renormalisations above.
		cut := math.Log(float64(mp))
		kept := cand[:0]
		for _, id := range cand {
			if float64(l[id])-top >= cut {
				kept = append(kept, id)
			}
		}
		cand = kept
	}
	return cand
}

// topP returns the smallest prefix of cand, in rank order, whose softmax mass
// reaches p. Rather than sorting, it heapifies cand (O(n)) and pops maxima
// until the mass is reached, so the cost follows the size of the nucleus.
// Popped tokens collect at the back of cand, as in heapsort.
func (s *Sampler) topP(l []float32, cand []int32, top, p float64) []int32 {
	sum := 0.0
	for _, id := range cand {
		sum += math.Exp(float64(l[id]) - top)
	}
	target := p * sum
	for i := len(cand)/2 - 1; i >= 0; i-- {
		s.siftDown(cand, i, false)
	}
	mass := 0.0
	end := len(cand)
	for end > 0 && mass < target {
		id := cand[0]
		end--
		cand[0], cand[end] = cand[end], id
		s.siftDown(cand[:end], 0, false)
		mass += math.Exp(float64(l[id]) - top)
	}
	return cand[end:]
}

// draw picks one of cand with probability softmax(l/Temperature) over cand,
// using u, a uniform number in [0, 1).
func (s *Sampler) draw(l []float32, cand []int32, u float64) int32 {
	top := math.Inf(-1)
	for _, id := range cand {
		top = max(top, float64(l[id]))
	}
	invT := 1 / float64(s.p.Temperature)
	w := s.w[:len(cand)]
	sum := 0.0
	for i, id := range cand {
		w[i] = math.Exp((float64(l[id]) - top) * invT)
		sum += w[i]
	}
	u *= sum
	acc := 0.0
	last := cand[0]
	for i, id := range cand {
		if w[i] == 0 {
			continue
		}
		acc += w[i]
		last = id
		if u < acc {
			return id
		}
	}
	// u*sum can round up to sum itself; the draw then belongs to the last
	// token with weight.
	return last
}

// argmax returns the index of the largest value, the lowest on ties, or
// NoToken when every value is -Inf.
func argmax(l []float32) int32 {
	best, bv := NoToken, float32(math.Inf(-1))
	for i, v := range l {
		if v > bv {
			best, bv = int32(i), v
		}
	}
	return best
}

// clean maps NaN to -Inf: a NaN logit carries no usable preference.
func clean(v float32) float32 {
	if v != v {
		return float32(math.Inf(-1))
	}
	return v
}

// logSoftmax evaluates log-softmax values of one row in float64.
type logSoftmax struct {
	max  float64 // the row's maximum
	lse  float64 // log-sum-exp of the row, valid when max is finite
	nInf int     // number of +Inf entries when max is +Inf
}

func newLogSoftmax(l []float32) logSoftmax {
	ls := logSoftmax{max: math.Inf(-1)}
	for _, v := range l {
		ls.max = max(ls.max, float64(v))
	}
	switch {
	case math.IsInf(ls.max, 1):
		for _, v := range l {
			if math.IsInf(float64(v), 1) {
				ls.nInf++
			}
		}
	case !math.IsInf(ls.max, -1):
		sum := 0.0
		for _, v := range l {
			sum += math.Exp(float64(v) - ls.max)
		}
		ls.lse = ls.max + math.Log(sum)
	}
	return ls
}

// at returns the log-probability of a token with logit v. When the row has
// +Inf entries they share all the mass; when every entry is -Inf there is no
// distribution and every token gets -Inf.
func (ls logSoftmax) at(v float32) float32 {
	switch {
	case math.IsInf(ls.max, 1):
		if math.IsInf(float64(v), 1) {
			return float32(-math.Log(float64(ls.nInf)))
		}
		return float32(math.Inf(-1))
	case math.IsInf(ls.max, -1):
		return float32(math.Inf(-1))
	}
	return float32(float64(v) - ls.lse)
}

// above reports whether token a ranks before token b: higher logit first,
// then lower id. Logits are NaN-free after prepare, so this is a strict total
// order over distinct ids, which makes every selection deterministic.
func (s *Sampler) above(a, b int32) bool {
	la, lb := s.logits[a], s.logits[b]
	return la > lb || (la == lb && a < b)
}

// siftDown restores the heap property of h below index i. With worstFirst
// the root is the lowest-ranked token (a min-heap, used to select the best k);
// otherwise it is the highest-ranked.
func (s *Sampler) siftDown(h []int32, i int, worstFirst bool) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		// Ids in a heap are distinct, so above(b, a) == !above(a, b) and the
		// inequality flips the order exactly.
		if c+1 < len(h) && s.above(h[c+1], h[c]) != worstFirst {
			c++
		}
		if s.above(h[c], h[i]) == worstFirst {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// selectTop moves the k best-ranked ids of ids into ids[:k], arranged as a
// min-heap, and returns that slice; the rest of ids is overwritten. It costs
// O(n log k) at worst and about O(n) when most ids lose to the heap's root,
// instead of sorting the whole vocabulary.
func (s *Sampler) selectTop(ids []int32, k int) []int32 {
	h := ids[:k]
	for i := k/2 - 1; i >= 0; i-- {
		s.siftDown(h, i, true)
	}
	for _, id := range ids[k:] {
		if s.above(id, h[0]) {
			h[0] = id
			s.siftDown(h, 0, true)
		}
	}
	return h
}
