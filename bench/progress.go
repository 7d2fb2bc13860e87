package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// TimeLeft estimates how long a level has left after elapsed, with done of
// total requests ended (total 0: not bounded by a count) and limit its
// duration (0: not bounded by time). A count gives the rate so far, and so
// nothing until one request has ended; a duration gives what remains of it
// (the requests in flight at its end are not foreseen). A level bounded by
// both ends at whichever comes first. known is false when neither tells.
func TimeLeft(done, total int, elapsed, limit time.Duration) (left time.Duration, known bool) {
	if total > 0 && done > 0 {
		left = time.Duration(float64(elapsed) * float64(max(total-done, 0)) / float64(done))
		known = true
	}
	if limit > 0 {
		rest := max(limit-elapsed, 0)
		if !known || rest < left {
			left = rest
		}
		known = true
	}
	return left, known
}

// progressLine is a level's progress in a line: "a c=4: 12/100 requests,
// 7s elapsed, 52s left", the count alone when the level is bounded by time.
func progressLine(desc string, done, total int, elapsed, limit time.Duration) string {
	count := fmt.Sprint(done)
	if total > 0 {
		count += fmt.Sprintf("/%d", total)
	}
	left := "?"
	if d, ok := TimeLeft(done, total, elapsed, limit); ok {
		left = roundSecond(d)
	}
	return fmt.Sprintf("%s: %s requests, %s elapsed, %s left", desc, count, roundSecond(elapsed), left)
}

// roundSecond shows a duration to the second: finer would flicker at every
// redraw and tell nothing about a level that runs for minutes.
func roundSecond(d time.Duration) string { return d.Round(time.Second).String() }

// Line is a level's result in a line, shown as soon as the level ends; the
// table comes with the whole run.
func (r *LevelResult) Line() string {
	s := r.Stats
	errs := ""
	if e := s.ErrorSummary(); e != "-" {
		errs = ", errors: " + e
	}
	return fmt.Sprintf("%s %v: %d/%d ok in %.1fs, %.2f req/s, %.1f output tok/s, TTFT p50 %.0f ms, TPOT p50 %.1f ms%s",
		r.Target, r.Level, s.Completed, s.Requests, s.Wall.Seconds(), s.ReqPerSec, s.OutPerSec, s.TTFT.P50, s.TPOT.P50, errs)
}

// LineProgress reports a run on w. On a terminal it keeps one line per
// level up to date in place (requests done, time elapsed, time left),
// redrawn on a clock rather than at each request so that the time moves
// while long requests run and many clients do not contend for the
// terminal; the line is blanked when the level ends. Elsewhere (a pipe, a
// CI log) carriage returns would pile up into one endless line, so it
// writes only a plain line as each level or warm-up ends. Either way a
// level's result is written as soon as the level ends.
type LineProgress struct {
	w        io.Writer
	terminal bool
	width    func() int // the terminal's columns, 0 when unknown
	now      func() time.Time
	every    time.Duration // between redraws

	mu    sync.Mutex
	desc  string
	total int
	limit time.Duration
	start time.Time
	done  int
	drawn int // runes of the line on the terminal, to blank out

	stop    chan struct{}
	ticking sync.WaitGroup
}

// NewLineProgress reports to w, in place when terminal is true; width
// returns the terminal's columns (0 when unknown; nil: not asked), so that
// the line never wraps, which would leave every redraw on a line of its own.
func NewLineProgress(w io.Writer, terminal bool, width func() int) *LineProgress {
	if width == nil {
		width = func() int { return 0 }
	}
	return &LineProgress{w: w, terminal: terminal, width: width, now: time.Now, every: 250 * time.Millisecond}
}

func (p *LineProgress) Begin(desc string, requests int, d time.Duration) {
	p.mu.Lock()
	p.desc, p.total, p.limit, p.start, p.done = desc, requests, d, p.now(), 0
	p.mu.Unlock()
	if !p.terminal {
		return
	}
	p.redraw()
	p.stop = make(chan struct{})
	p.ticking.Add(1)
	go p.tick(p.stop)
}

func (p *LineProgress) tick(stop chan struct{}) {
	defer p.ticking.Done()
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.redraw()
		}
	}
}

// redraw writes the line over the one before, padded with blanks where
// that one was longer.
func (p *LineProgress) redraw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := []rune(progressLine(p.desc, p.done, p.total, p.now().Sub(p.start), p.limit))
	// One column short of the width: some terminals wrap once the last
	// column is written.
	if cols := p.width(); cols > 1 && len(line) > cols-1 {
		line = line[:cols-1]
	}
	pad := max(p.drawn-len(line), 0)
	fmt.Fprint(p.w, "\r"+string(line)+strings.Repeat(" ", pad))
	p.drawn = len(line)
}

func (p *LineProgress) Done() {
	p.mu.Lock()
	p.done++
	p.mu.Unlock()
}

func (p *LineProgress) End(r *LevelResult) {
	if p.terminal {
		close(p.stop)
		p.ticking.Wait()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.drawn)+"\r")
		p.drawn = 0
	}
	switch {
	case r != nil:
		fmt.Fprintln(p.w, r.Line())
	case !p.terminal:
		// A warm-up: on a terminal its line was enough; in a log, this
		// says where the time went.
		fmt.Fprintf(p.w, "%s: %d requests in %.1fs\n", p.desc, p.done, p.now().Sub(p.start).Seconds())
	}
}
