package bench

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Level is one load shape: a closed loop of Concurrency clients, each
// sending its next request when the last one ends, or an open loop of
// Poisson arrivals at Rate requests per second.
type Level struct {
	Concurrency int     `json:"concurrency,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
}

func (l Level) String() string {
	if l.Rate > 0 {
		return "rate " + strconv.FormatFloat(l.Rate, 'g', -1, 64) + "/s"
	}
	return "c=" + strconv.Itoa(l.Concurrency)
}

// LoadConfig is how long each level runs and what counts as good.
type LoadConfig struct {
	Levels   []Level
	Duration time.Duration // per level and target; 0: until Requests
	Requests int           // per level and target; 0: until Duration
	// Warmup requests run before each measured level (not counted); at a
	// closed-loop level they run with the level's concurrency. Below 0:
	// as many as the level's concurrency (one at an open-loop level).
	Warmup int
	Seed   uint64 // open-loop arrival times
	SLO    SLO
	// MaxInFlight caps an open loop's requests in flight (0: 1024); an
	// arrival past it waits, and the level's rate falls short.
	MaxInFlight int
}

// LevelResult is one level against one target.
type LevelResult struct {
	Target  string   `json:"target"`
	Level   Level    `json:"level"`
	Stats   Stats    `json:"stats"`
	Samples []Sample `json:"samples"`
}

// Progress is told about a run's requests (a progress bar on a terminal).
type Progress interface {
	Begin(desc string, requests int, d time.Duration)
	Done() // one request ended
	// End ends the level begun, with its result (nil after a warm-up), so
	// that it can be shown before the whole run ends.
	End(r *LevelResult)
}

type noProgress struct{}

func (noProgress) Begin(string, int, time.Duration) {}
func (noProgress) Done()                            {}
func (noProgress) End(*LevelResult)                 {}

// RunLoad runs every level against every target, the targets interleaved
// within each level (level 1 on A, level 1 on B, level 2 on A, ...), so that
// drift on a shared machine falls on both alike.
func RunLoad(ctx context.Context, c *Client, targets []*Target, prompts *Prompts, cfg LoadConfig, prog Progress) ([]LevelResult, error) {
	if cfg.Duration <= 0 && cfg.Requests <= 0 {
		return nil, fmt.Errorf("give a duration or a number of requests per level")
	}
	if prog == nil {
		prog = noProgress{}
	}
	var out []LevelResult
	for _, l := range cfg.Levels {
		if l.Concurrency < 1 && l.Rate <= 0 {
			return out, fmt.Errorf("level %v: concurrency or rate must be positive", l)
		}
		for _, t := range targets {
			if n := warmups(cfg.Warmup, l); n > 0 {
				warm := cfg
				warm.Duration, warm.Requests = 0, n
				wl := l
				if l.Rate > 0 {
					// Warm up closed-loop: arrivals would only add waiting.
					wl = Level{Concurrency: 1}
				}
				prog.Begin(fmt.Sprintf("%s %v warm-up", t.Name, l), n, 0)
				runLevel(ctx, c, t, prompts, warm, wl, prog, 1<<30)
				prog.End(nil)
			}
			if err := ctx.Err(); err != nil {
				return out, err
			}
			prog.Begin(fmt.Sprintf("%s %v", t.Name, l), cfg.Requests, cfg.Duration)
			samples, wall := runLevel(ctx, c, t, prompts, cfg, l, prog, 0)
			out = append(out, LevelResult{Target: t.Name, Level: l, Stats: Summarize(samples, wall, cfg.SLO), Samples: samples})
			prog.End(&out[len(out)-1])
			if err := ctx.Err(); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

func warmups(n int, l Level) int {
	if n >= 0 {
		return n
	}
	return max(l.Concurrency, 1)
}

// runLevel runs one level against one target; request i sends
// prompts.Get(first+i). It returns the samples in the order sent and the
// wall time from the start to the last response.
func runLevel(ctx context.Context, c *Client, t *Target, prompts *Prompts, cfg LoadConfig, l Level, prog Progress, first int) ([]Sample, time.Duration) {
	start := c.now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	more := func(i int) bool {
		if ctx.Err() != nil || (cfg.Requests > 0 && i >= cfg.Requests) {
			return false
		}
		return deadline.IsZero() || c.now().Before(deadline)
	}
	var (
		mu      sync.Mutex
		samples = map[int]Sample{}
		wg      sync.WaitGroup
	)
	do := func(i int) {
		s := c.Do(ctx, t, prompts.Get(first+i), start)
		mu.Lock()
		samples[i] = s
		mu.Unlock()
		prog.Done()
	}
	if l.Rate > 0 {
		rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
		limit := cfg.MaxInFlight
		if limit <= 0 {
			limit = 1024
		}
		slots := make(chan struct{}, limit)
		at := time.Duration(0)
		for i := 0; ; i++ {
			at += time.Duration(rng.ExpFloat64() / l.Rate * float64(time.Second))
			if wait := start.Add(at).Sub(c.now()); wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
			if !more(i) {
				break
			}
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				do(i)
				<-slots
			}()
		}
	} else {
		var next atomic.Int64
		for range l.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if !more(i) {
						return
					}
					do(i)
				}
			}()
		}
	}
	wg.Wait()
	wall := c.now().Sub(start)
	out := make([]Sample, 0, len(samples))
	for _, i := range slices.Sorted(maps.Keys(samples)) {
		out = append(out, samples[i])
	}
	return out, wall
}
