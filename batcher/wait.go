package batcher

import "time"

// waitEstimate estimates how long a request submitted now would wait for
// its first token; the fleet forwards on it (issue 14), so it must follow
// the load at once rather than lag behind it. It models the time to first
// token as idle + perSeq·load, load being the sequences running or queued
// when a request arrives, and learns both terms from the requests served:
// on a CPU each sequence in the batch lengthens every step, the new
// request's prefill included. The loop owns it.
type waitEstimate struct {
	idle   time.Duration // time to first token with nothing else to do
	perSeq time.Duration // what each sequence ahead adds to it
	step   time.Duration // a step's duration
}

// ewma folds x into the moving average avg (0: none yet) with weight 1/8.
func ewma(avg, x time.Duration) time.Duration {
	if avg == 0 {
		return x
	}
	return avg + (x-avg)/8
}

// firstToken feeds a request's time to first token and the load it
// arrived to.
func (w *waitEstimate) firstToken(ttft time.Duration, load int) {
	if load == 0 {
		// Down at once, up slowly: the first requests after start are
		// slow (the weights are paged in), and a node under load rarely
		// sees another idle request to correct them.
		if w.idle == 0 || ttft < w.idle {
			w.idle = ttft
		} else {
			w.idle = ewma(w.idle, ttft)
		}
		return
	}
	w.perSeq = ewma(w.perSeq, max(ttft-w.idle, 0)/time.Duration(load))
}

func (w *waitEstimate) stepTook(d time.Duration) { w.step = ewma(w.step, d) }

// marginal is what one more sequence adds to the wait: perSeq, or, until it
// is learnt (a node just started sees a burst before any first token under
// load), a quarter of the idle time, about what a sequence costs on a CPU,
// rather than nothing, which would admit the whole burst.
func (w *waitEstimate) marginal() time.Duration {
	if w.perSeq == 0 {
		return w.idle / 4
	}
	return w.perSeq
}

// estimate is the wait of a request arriving to load sequences: the model's,
// and at least what the oldest queued request has waited (queued: zero
// when none) plus a step.
func (w *waitEstimate) estimate(load int, queued time.Duration) time.Duration {
	est := w.idle + w.marginal()*time.Duration(load)
	if queued > 0 {
		est = max(est, queued+w.step)
	}
	return est
}
