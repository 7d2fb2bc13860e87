package batcher

import (
	"math"
	"time"
)

// waitHalfLife is how fast the measured time to first token is forgotten
// once no request starts: a node that forwards its work away must come to
// look idle again, or it would forward for ever.
const waitHalfLife = 2 * time.Second

// waitEstimate estimates how long a request submitted now would wait for
// its first token, from what the loop measures: recent times to first
// token, the oldest request still queued, and how long a step takes. The
// fleet forwards on it (issue 14). The loop owns it.
type waitEstimate struct {
	ttft time.Duration // moving average of recent times to first token
	at   time.Time     // when ttft was last fed
	idle time.Duration // moving average of first-token times at idle
	step time.Duration // moving average of a step's duration
}

// ewma folds x into the moving average avg (0: none yet) with weight 1/4.
func ewma(avg, x time.Duration) time.Duration {
	if avg == 0 {
		return x
	}
	return avg + (x-avg)/4
}

// firstToken feeds a request's time to first token; idle tells that it
// arrived with nothing else running or queued.
func (w *waitEstimate) firstToken(ttft time.Duration, idle bool, now time.Time) {
	w.ttft, w.at = ewma(w.recent(now), ttft), now
	if idle {
		w.idle = ewma(w.idle, ttft)
	}
}

func (w *waitEstimate) stepTook(d time.Duration) { w.step = ewma(w.step, d) }

// recent is ttft decayed by the time since it was fed.
func (w *waitEstimate) recent(now time.Time) time.Duration {
	if w.ttft == 0 {
		return 0
	}
	halves := float64(now.Sub(w.at)) / float64(waitHalfLife)
	return time.Duration(float64(w.ttft) * math.Exp2(-max(halves, 0)))
}

// estimate is the wait for a request submitted at now: at least the recent
// times to first token; at least what the oldest queued request has waited
// plus a step; and, with sequences running, two steps (the one under way
// and the new request's own).
func (w *waitEstimate) estimate(now, oldestQueued time.Time, running int) time.Duration {
	est := w.recent(now)
	if !oldestQueued.IsZero() {
		est = max(est, now.Sub(oldestQueued)+w.step)
	}
	if running > 0 {
		est = max(est, 2*w.step)
	}
	return est
}
