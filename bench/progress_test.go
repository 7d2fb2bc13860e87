package bench

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProgressTimeLeft(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name           string
		done, total    int
		elapsed, limit time.Duration
		want           time.Duration
		wantKnown      bool
	}{
		{"count, none ended yet", 0, 100, 5 * s, 0, 0, false},
		{"count, rate so far", 25, 100, 10 * s, 0, 30 * s, true},
		{"count, all ended", 100, 100, 40 * s, 0, 0, true},
		{"duration, none ended yet", 0, 0, 10 * s, 60 * s, 50 * s, true},
		{"duration, past its end", 7, 0, 61 * s, 60 * s, 0, true},
		{"both, the duration first", 10, 100, 10 * s, 30 * s, 20 * s, true},
		{"both, the count first", 50, 100, 10 * s, 60 * s, 10 * s, true},
		{"both, none ended yet", 0, 100, 10 * s, 60 * s, 50 * s, true},
		{"neither", 3, 0, 10 * s, 0, 0, false},
	} {
		got, known := TimeLeft(tc.done, tc.total, tc.elapsed, tc.limit)
		if got != tc.want || known != tc.wantKnown {
			t.Errorf("%s: TimeLeft(%d, %d, %v, %v) = %v, %v; want %v, %v",
				tc.name, tc.done, tc.total, tc.elapsed, tc.limit, got, known, tc.want, tc.wantKnown)
		}
	}
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

// testProgress reports to w on a fake clock, cols columns wide.
func testProgress(w *bytes.Buffer, terminal bool, cols int) (*LineProgress, *fakeClock) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	p := NewLineProgress(w, terminal, func() int { return cols })
	p.now = clock.now
	// The ticker never fires within a test: the test redraws by hand.
	p.every = time.Hour
	return p, clock
}

func levelResult() *LevelResult {
	return &LevelResult{Target: "a", Level: Level{Concurrency: 4}, Stats: Stats{Requests: 10, Completed: 9,
		Errors: map[string]int{"429": 1}, Wall: 12 * time.Second, ReqPerSec: 0.75, OutPerSec: 96,
		TTFT: Percentiles{P50: 120}, TPOT: Percentiles{P50: 8.25}}}
}

// TestProgressTerminal: on a terminal the line is redrawn in place with a
// carriage return, the time left is "?" until a request has ended and then
// follows the rate so far, a shorter line blanks what the longer one left,
// and the level's row replaces the line when the level ends.
func TestProgressTerminal(t *testing.T) {
	var buf bytes.Buffer
	p, clock := testProgress(&buf, true, 0)
	p.Begin("a c=4", 10, 0)
	clock.add(3 * time.Second)
	p.redraw()
	p.Done()
	clock.add(1 * time.Second)
	p.redraw()
	for range 8 {
		p.Done()
	}
	p.redraw()
	p.End(levelResult())
	frames := []string{
		"\ra c=4: 0/10 requests, 0s elapsed, ? left",
		"\ra c=4: 0/10 requests, 3s elapsed, ? left",
		"\ra c=4: 1/10 requests, 4s elapsed, 36s left",
		"\ra c=4: 9/10 requests, 4s elapsed, 0s left" + " ",
		"\r" + strings.Repeat(" ", 41) + "\r",
		"a c=4: 9/10 ok in 12.0s, 0.75 req/s, 96.0 output tok/s, TTFT p50 120 ms, TPOT p50 8.2 ms, errors: 429×1\n",
	}
	if got, want := buf.String(), strings.Join(frames, ""); got != want {
		t.Errorf("terminal output\n got %q\nwant %q", got, want)
	}

	// A level bounded by time counts the requests alone and takes the time
	// left from its duration, even before a request has ended; a warm-up
	// leaves nothing behind. A narrow terminal cuts the line short of its
	// last column.
	buf.Reset()
	p, clock = testProgress(&buf, true, 30)
	p.Begin("a c=4", 0, time.Minute)
	clock.add(10 * time.Second)
	p.redraw()
	p.End(nil)
	frames = []string{
		"\ra c=4: 0 requests, 0s elapsed",
		"\ra c=4: 0 requests, 10s elapse",
		"\r" + strings.Repeat(" ", 29) + "\r",
	}
	if got, want := buf.String(), strings.Join(frames, ""); got != want {
		t.Errorf("narrow terminal output\n got %q\nwant %q", got, want)
	}
	buf.Reset()
	p, clock = testProgress(&buf, true, 0)
	p.Begin("a c=4", 0, time.Minute)
	clock.add(10 * time.Second)
	p.redraw()
	if got, want := buf.String(), "\ra c=4: 0 requests, 10s elapsed, 50s left"; !strings.HasSuffix(got, want) {
		t.Errorf("duration level: %q, want it to end with %q", got, want)
	}
	p.End(nil)
}

// TestProgressNotTerminal: off a terminal nothing is redrawn (no carriage
// return); a warm-up and a level each leave one plain line as they end.
func TestProgressNotTerminal(t *testing.T) {
	var buf bytes.Buffer
	p, clock := testProgress(&buf, false, 0)
	p.Begin("a c=4 warm-up", 4, 0)
	for range 4 {
		p.Done()
	}
	clock.add(1500 * time.Millisecond)
	p.End(nil)
	p.Begin("a c=4", 10, 0)
	p.Done()
	clock.add(12 * time.Second)
	p.End(levelResult())
	want := "a c=4 warm-up: 4 requests in 1.5s\n" +
		"a c=4: 9/10 ok in 12.0s, 0.75 req/s, 96.0 output tok/s, TTFT p50 120 ms, TPOT p50 8.2 ms, errors: 429×1\n"
	if got := buf.String(); got != want {
		t.Errorf("log output\n got %q\nwant %q", got, want)
	}
}

// beginSnapshots notes what had been written when each level or warm-up
// began.
type beginSnapshots struct {
	*LineProgress
	buf *bytes.Buffer
	at  []string
}

func (b *beginSnapshots) Begin(desc string, requests int, d time.Duration) {
	b.at = append(b.at, b.buf.String())
	b.LineProgress.Begin(desc, requests, d)
}

// TestProgressRowsAsLevelsEnd: RunLoad hands each level's result to the
// progress as the level ends, so that its row is out before the next level
// begins, on a terminal and off one.
func TestProgressRowsAsLevelsEnd(t *testing.T) {
	f := &fakeServer{ttft: time.Millisecond, gap: time.Millisecond}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := &Client{Timeout: 5 * time.Second, IgnoreEOS: true}
	tg := &Target{Name: "a", URL: srv.URL}
	p, err := NewPrompts(context.Background(), PromptConfig{InputTokens: 4, OutputTokens: 4, Seed: 1}, ServerTokenizer{Client: c, Target: tg})
	if err != nil {
		t.Fatal(err)
	}
	for _, terminal := range []bool{false, true} {
		var buf bytes.Buffer
		lp, _ := testProgress(&buf, terminal, 0)
		lp.now = time.Now
		prog := &beginSnapshots{LineProgress: lp, buf: &buf}
		_, err := RunLoad(context.Background(), c, []*Target{tg}, p,
			LoadConfig{Levels: []Level{{Concurrency: 1}, {Concurrency: 2}}, Requests: 2}, prog)
		if err != nil {
			t.Fatal(err)
		}
		if len(prog.at) != 2 || !strings.Contains(prog.at[1], "a c=1: 2/2 ok") {
			t.Errorf("terminal %v: written as each level began: %q", terminal, prog.at)
		}
		if !strings.Contains(buf.String(), "a c=2: 2/2 ok") {
			t.Errorf("terminal %v: written: %q", terminal, buf.String())
		}
		if strings.Contains(buf.String(), "\r") != terminal {
			t.Errorf("terminal %v: carriage returns in %q", terminal, buf.String())
		}
	}
}
