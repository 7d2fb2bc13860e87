package cluster

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

const ms = time.Millisecond

func newRNG() *rand.Rand { return rand.New(rand.NewPCG(14, 14)) }

var llama = []Model{{Name: "llama", Hash: "h1", Numerics: "cpu-f32"}}

// candidate is a live, non-draining peer with room, serving llama.
func candidate(name string, wait, rtt time.Duration) Candidate {
	return Candidate{Name: name, Alive: true, Models: llama, Wait: wait, RTT: rtt}
}

func with(c Candidate, f func(*Candidate)) Candidate { f(&c); return c }

// overloaded is a local node serving llama whose wait is above the default
// threshold (2 × 50 ms).
var overloaded = LocalView{Name: "a", Serves: true, Wait: time.Second}

var cfg = DefaultForwardConfig(50 * ms)

func TestDefaultForwardThreshold(t *testing.T) {
	if got := DefaultForwardThreshold(80 * ms); got != 160*ms {
		t.Errorf("DefaultForwardThreshold(80ms) = %v, want 160ms", got)
	}
	if got := DefaultForwardThreshold(0); got != time.Second {
		t.Errorf("DefaultForwardThreshold(0) = %v, want 1s", got)
	}
	if c := DefaultForwardConfig(50 * ms); c.MaxHops != 1 || c.Margin != 0.2 || c.MinGain != 0.2 || c.Threshold != 100*ms {
		t.Errorf("DefaultForwardConfig = %+v", c)
	}
}

func TestChoose(t *testing.T) {
	near := candidate("near", 0, 10*ms)
	tests := []struct {
		name    string
		in      ForwardInput
		cfg     *ForwardConfig // nil: DefaultForwardConfig(50ms)
		want    Decision
		wantErr bool
	}{
		{
			name: "under threshold stays",
			in:   ForwardInput{Model: "llama", Local: LocalView{Name: "a", Serves: true, Wait: 90 * ms}, Peers: []Candidate{near}},
			want: Decision{Local: true, Reason: ReasonLocal},
		},
		{
			name: "over threshold forwards",
			in:   ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{near}},
			want: Decision{Peer: "near", Reason: ReasonOverloaded},
		},
		{
			name: "over threshold, peer not better by MinGain",
			in:   ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{candidate("b", 790*ms, 10*ms)}},
			want: Decision{Local: true, Reason: ReasonNoBetterPeer},
		},
		{
			name: "over threshold, peer better by just over MinGain",
			in:   ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{candidate("b", 780*ms, 10*ms)}},
			want: Decision{Peer: "b", Reason: ReasonOverloaded},
		},
		{
			name: "queue full forwards even to a slower peer",
			in:   ForwardInput{Model: "llama", Local: LocalView{Name: "a", Serves: true, QueueFull: true}, Peers: []Candidate{candidate("b", 5*time.Second, 10*ms)}},
			want: Decision{Peer: "b", Reason: ReasonQueueFull},
		},
		{
			name: "queue full, no peer",
			in:   ForwardInput{Model: "llama", Local: LocalView{Name: "a", Serves: true, QueueFull: true}},
			want: Decision{Local: true, Reason: ReasonNoPeer},
		},
		{
			name: "local draining forwards",
			in:   ForwardInput{Model: "llama", Local: LocalView{Name: "a", Serves: true, Draining: true}, Peers: []Candidate{near}},
			want: Decision{Peer: "near", Reason: ReasonDraining},
		},
		{
			name: "model elsewhere goes to the nearest that serves it",
			in: ForwardInput{Model: "llama", Local: LocalView{Name: "a"}, Peers: []Candidate{
				candidate("far", 0, 120*ms), near, with(candidate("other", 0, 1*ms), func(c *Candidate) { c.Models = []Model{{Name: "qwen"}} }),
			}},
			want: Decision{Peer: "near", Reason: ReasonModelElsewhere},
		},
		{
			name: "model elsewhere counts the peer's wait",
			in: ForwardInput{Model: "llama", Local: LocalView{Name: "a"}, Peers: []Candidate{
				candidate("far", 0, 120*ms), candidate("near", 500*ms, 10*ms),
			}},
			want: Decision{Peer: "far", Reason: ReasonModelElsewhere},
		},
		{
			name: "model elsewhere while not overloaded",
			in:   ForwardInput{Model: "llama", Local: LocalView{Name: "a", Wait: 0}, Peers: []Candidate{candidate("b", 2*time.Second, 10*ms)}},
			want: Decision{Peer: "b", Reason: ReasonModelElsewhere},
		},
		{
			name:    "model served nowhere",
			in:      ForwardInput{Model: "qwen", Local: LocalView{Name: "a"}, Peers: []Candidate{near}},
			wantErr: true,
		},
		{
			name:    "model only on dead, draining or full peers",
			in:      ForwardInput{Model: "llama", Local: LocalView{Name: "a"}, Peers: []Candidate{with(near, func(c *Candidate) { c.Alive = false }), with(candidate("d", 0, ms), func(c *Candidate) { c.Draining = true }), with(candidate("f", 0, ms), func(c *Candidate) { c.Full = true })}},
			wantErr: true,
		},
		{
			name:    "model elsewhere past the hop limit",
			in:      ForwardInput{Model: "llama", Local: LocalView{Name: "a"}, Hops: 1, Path: []string{"x"}, Peers: []Candidate{near}},
			wantErr: true,
		},
		{
			name:    "model elsewhere only on the path",
			in:      ForwardInput{Model: "llama", Local: LocalView{Name: "a"}, Path: []string{"near"}, Peers: []Candidate{near}},
			cfg:     &ForwardConfig{MaxHops: 3, Margin: 0.2},
			wantErr: true,
		},
		{
			name: "hop limit keeps an overloaded request",
			in:   ForwardInput{Model: "llama", Local: overloaded, Hops: 1, Path: []string{"x"}, Peers: []Candidate{near}},
			want: Decision{Local: true, Reason: ReasonHopLimit},
		},
		{
			name: "zero config never forwards",
			in:   ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{near}},
			cfg:  &ForwardConfig{},
			want: Decision{Local: true, Reason: ReasonHopLimit},
		},
		{
			name: "second hop allowed under MaxHops 2, never back on the path",
			in:   ForwardInput{Model: "llama", Local: overloaded, Hops: 1, Path: []string{"near"}, Peers: []Candidate{near, candidate("far", 0, 120*ms)}},
			cfg:  &ForwardConfig{Threshold: 100 * ms, MaxHops: 2, Margin: 0.2, MinGain: 0.2},
			want: Decision{Peer: "far", Reason: ReasonOverloaded},
		},
		{
			name: "never to itself",
			in:   ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{candidate("a", 0, 0), candidate("far", 0, 120*ms)}},
			want: Decision{Peer: "far", Reason: ReasonOverloaded},
		},
		{
			name: "never to a dead, draining or full peer",
			in: ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{
				with(candidate("dead", 0, ms), func(c *Candidate) { c.Alive = false }),
				with(candidate("drain", 0, ms), func(c *Candidate) { c.Draining = true }),
				with(candidate("full", 0, ms), func(c *Candidate) { c.Full = true }),
				candidate("far", 0, 120*ms),
			}},
			want: Decision{Peer: "far", Reason: ReasonOverloaded},
		},
		{
			name: "only dead and draining peers: stay",
			in: ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{
				with(candidate("dead", 0, ms), func(c *Candidate) { c.Alive = false }),
				with(candidate("drain", 0, ms), func(c *Candidate) { c.Draining = true }),
			}},
			want: Decision{Local: true, Reason: ReasonNoPeer},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			if tt.cfg != nil {
				c = *tt.cfg
			}
			// A deterministic answer must hold for every draw, so try many.
			rng := newRNG()
			for range 200 {
				got, err := Choose(tt.in, c, rng)
				if tt.wantErr {
					if !errors.Is(err, ErrNotServed) {
						t.Fatalf("Choose = %+v, %v; want ErrNotServed", got, err)
					}
					continue
				}
				if err != nil || got != tt.want {
					t.Fatalf("Choose = %+v, %v; want %+v", got, err, tt.want)
				}
			}
		})
	}
}

// Equal expected TTFTs: when both are drawn, the local zone beats the local
// region, which beats elsewhere; so the shares are those of three peers of
// distinct TTFT (5/9, 3/9, 1/9).
func TestChooseZoneRegionTies(t *testing.T) {
	local := LocalView{Name: "a", Region: "eu", Zone: "eu-1"}
	in := ForwardInput{Model: "llama", Local: local, Peers: []Candidate{
		with(candidate("other-region", 0, 10*ms), func(c *Candidate) { c.Region, c.Zone = "us", "eu-1" }),
		with(candidate("same-region", 0, 10*ms), func(c *Candidate) { c.Region, c.Zone = "eu", "eu-2" }),
		with(candidate("same-zone", 0, 10*ms), func(c *Candidate) { c.Region, c.Zone = "eu", "eu-1" }),
	}}
	got := shares(t, in, cfg, 9000)
	t.Logf("zone/region ties: %v", got)
	for name, want := range map[string]float64{"same-zone": 5.0 / 9, "same-region": 3.0 / 9, "other-region": 1.0 / 9} {
		if f := got[name]; f < want-0.03 || f > want+0.03 {
			t.Errorf("peer %s share %.3f, want %.3f±0.03", name, f, want)
		}
	}
}

// shares runs n decisions and returns the fraction that went to each peer
// ("" for local).
func shares(t *testing.T, in ForwardInput, c ForwardConfig, n int) map[string]float64 {
	t.Helper()
	rng := newRNG()
	count := map[string]int{}
	for range n {
		d, err := Choose(in, c, rng)
		if err != nil {
			t.Fatal(err)
		}
		count[d.Peer]++
	}
	out := map[string]float64{}
	for k, v := range count {
		out[k] = float64(v) / float64(n)
	}
	return out
}

// Acceptance 3: near (10 ms) and far (120 ms) peers with room take ≥ 90% of
// forwards near; with the near peer full, or its wait high, work spills far
// rather than waiting here beyond the threshold.
func TestChooseDistance(t *testing.T) {
	near, far := candidate("near", 0, 10*ms), candidate("far", 0, 120*ms)
	got := shares(t, ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{near, far}}, cfg, 1000)
	t.Logf("near and far with room: %v", got)
	if got["near"] < 0.9 {
		t.Errorf("near share %.3f, want ≥ 0.9", got["near"])
	}

	// The near peer with a little queue still beats the far one.
	busy := candidate("near", 60*ms, 10*ms)
	got = shares(t, ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{busy, far}}, cfg, 1000)
	t.Logf("near with 60 ms wait: %v", got)
	if got["near"] < 0.9 {
		t.Errorf("near share %.3f with 60 ms wait, want ≥ 0.9", got["near"])
	}

	for _, n := range []Candidate{
		with(near, func(c *Candidate) { c.Full = true }),
		with(near, func(c *Candidate) { c.Wait = 3 * time.Second }),
	} {
		got = shares(t, ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{n, far}}, cfg, 1000)
		t.Logf("near full=%v wait=%v: %v", n.Full, n.Wait, got)
		if got["far"] != 1 {
			t.Errorf("near full=%v wait=%v: far share %.3f, want 1 (shares %v)", n.Full, n.Wait, got["far"], got)
		}
	}
}

// As the near peer's wait grows, its share falls smoothly to none: first
// while both peers are within the margin, then far alone once near's expected
// TTFT is past far's by more than the margin.
func TestChooseSpillSweep(t *testing.T) {
	far := candidate("far", 0, 120*ms)
	prev := 1.0
	for wait := time.Duration(0); wait <= 200*ms; wait += 20 * ms {
		got := shares(t, ForwardInput{Model: "llama", Local: overloaded, Peers: []Candidate{candidate("near", wait, 10*ms), far}}, cfg, 1000)
		t.Logf("near wait %v (expected TTFT %v vs far 120ms): near %.3f far %.3f", wait, wait+10*ms, got["near"], got["far"])
		if got["near"]+got["far"] != 1 {
			t.Errorf("near wait %v: %v, want every request forwarded", wait, got)
		}
		if got["near"] > prev {
			t.Errorf("near wait %v: near share %.3f rose from %.3f", wait, got["near"], prev)
		}
		prev = got["near"]
	}
	if prev != 0 {
		t.Errorf("near wait 200ms (210ms vs 120ms): near share %.3f, want 0", prev)
	}
}

// Power of two choices spreads load among equals, and among peers within the
// margin gives the best the most but every one some.
func TestChooseSpread(t *testing.T) {
	equal := []Candidate{candidate("b", 20*ms, 10*ms), candidate("c", 20*ms, 10*ms), candidate("d", 20*ms, 10*ms)}
	got := shares(t, ForwardInput{Model: "llama", Local: overloaded, Peers: equal}, cfg, 3000)
	t.Logf("three equal peers: %v", got)
	for _, p := range equal {
		if f := got[p.Name]; f < 0.2 || f > 0.5 {
			t.Errorf("peer %s share %.3f, want 20–50%%", p.Name, f)
		}
	}

	// Within 20% of the best (30 ms): 30, 33, 35 ms; 40 ms is out.
	within := []Candidate{candidate("b", 20*ms, 10*ms), candidate("c", 23*ms, 10*ms), candidate("d", 25*ms, 10*ms), candidate("e", 30*ms, 10*ms)}
	got = shares(t, ForwardInput{Model: "llama", Local: overloaded, Peers: within}, cfg, 9000)
	t.Logf("30/33/35/40 ms peers: %v", got)
	for name, want := range map[string]float64{"b": 5.0 / 9, "c": 3.0 / 9, "d": 1.0 / 9, "e": 0} {
		if f := got[name]; f < want-0.03 || f > want+0.03 {
			t.Errorf("peer %s share %.3f, want %.3f±0.03", name, f, want)
		}
	}
}

// The draw depends on the peers and the seed, not on the order gossip listed
// the peers in.
func TestChooseDeterministic(t *testing.T) {
	a := []Candidate{candidate("b", 20*ms, 10*ms), candidate("c", 20*ms, 10*ms), candidate("d", 21*ms, 10*ms)}
	b := []Candidate{a[2], a[0], a[1]}
	r1, r2 := newRNG(), newRNG()
	for i := range 100 {
		d1, _ := Choose(ForwardInput{Model: "llama", Local: overloaded, Peers: a}, cfg, r1)
		d2, _ := Choose(ForwardInput{Model: "llama", Local: overloaded, Peers: b}, cfg, r2)
		if d1 != d2 {
			t.Fatalf("draw %d: %+v with one order, %+v with another", i, d1, d2)
		}
	}
}

func TestChooseResume(t *testing.T) {
	exactModel := []Model{{Name: "llama", Hash: "h1", Numerics: "cpu-f32"}}
	otherHash := []Model{{Name: "llama", Hash: "h2", Numerics: "cpu-f32"}}
	otherNum := []Model{{Name: "llama", Hash: "h1", Numerics: "cuda-f16"}}
	mk := func(name string, rtt time.Duration, m []Model) Candidate {
		return Candidate{Name: name, Alive: true, Models: m, RTT: rtt}
	}
	tests := []struct {
		name      string
		in        ResumeInput
		want      string
		wantExact bool
		wantErr   bool
	}{
		{
			name:      "same hash and numerics preferred over nearer",
			in:        ResumeInput{Model: "llama", Hash: "h1", Numerics: "cpu-f32", Peers: []Candidate{mk("hash", 5*ms, otherHash), mk("num", 5*ms, otherNum), mk("exact", 200*ms, exactModel)}},
			want:      "exact",
			wantExact: true,
		},
		{
			name: "falls back to any peer with the model, nearest",
			in:   ResumeInput{Model: "llama", Hash: "h1", Numerics: "cpu-f32", Peers: []Candidate{mk("hash", 5*ms, otherHash), mk("num", 50*ms, otherNum)}},
			want: "hash",
		},
		{
			name: "failed peer excluded",
			in:   ResumeInput{Model: "llama", Hash: "h1", Numerics: "cpu-f32", Exclude: []string{"exact"}, Peers: []Candidate{mk("exact", 5*ms, exactModel), mk("hash", 50*ms, otherHash)}},
			want: "hash",
		},
		{
			name: "unknown hash matches none",
			in:   ResumeInput{Model: "llama", Peers: []Candidate{mk("a", 5*ms, []Model{{Name: "llama"}})}},
			want: "a",
		},
		{
			name: "dead and draining excluded",
			in: ResumeInput{Model: "llama", Hash: "h1", Numerics: "cpu-f32", Peers: []Candidate{
				with(mk("dead", 5*ms, exactModel), func(c *Candidate) { c.Alive = false }),
				with(mk("drain", 5*ms, exactModel), func(c *Candidate) { c.Draining = true }),
				mk("hash", 50*ms, otherHash),
			}},
			want: "hash",
		},
		{
			name:    "no peer with the model",
			in:      ResumeInput{Model: "llama", Hash: "h1", Exclude: []string{"exact"}, Peers: []Candidate{mk("exact", 5*ms, exactModel), mk("q", 5*ms, []Model{{Name: "qwen"}})}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRNG()
			for range 200 {
				got, exact, err := ChooseResume(tt.in, cfg, rng)
				if tt.wantErr {
					if !errors.Is(err, ErrNotServed) {
						t.Fatalf("ChooseResume = %q, %v, %v; want ErrNotServed", got, exact, err)
					}
					continue
				}
				if err != nil || got != tt.want || exact != tt.wantExact {
					t.Fatalf("ChooseResume = %q, %v, %v; want %q, %v", got, exact, err, tt.want, tt.wantExact)
				}
			}
		})
	}
}
