package cluster

// The forwarding decision (issue 14, "Forwarding") is a pure function in the
// spirit of etcd's raft: no I/O, no clock, randomness passed in. The caller
// snapshots the gossiped state into Candidates, and the whole policy is tested
// without a network.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// ErrNotServed is returned, wrapped with the reason, when no node that this
// request may still reach serves the model asked for.
var ErrNotServed = errors.New("cluster: model not served")

// Reason says why a Decision serves locally or forwards; forwarded reasons are
// the reason label of godwit:forwarded_requests_total.
type Reason string

const (
	// Forwarded.
	ReasonOverloaded     Reason = "overloaded"      // local wait above the threshold and a peer answers sooner by MinGain
	ReasonQueueFull      Reason = "queue_full"      // local queue cannot admit the request
	ReasonDraining       Reason = "draining"        // this node takes no new work
	ReasonModelElsewhere Reason = "model_elsewhere" // this node does not serve the model

	// Served locally.
	ReasonLocal        Reason = "local"          // local wait within the threshold
	ReasonHopLimit     Reason = "hop_limit"      // would forward, but the request has used its hops
	ReasonNoPeer       Reason = "no_peer"        // would forward, but no eligible peer serves the model
	ReasonNoBetterPeer Reason = "no_better_peer" // overloaded, but no peer answers sooner by MinGain
)

// Decision is where one request goes.
type Decision struct {
	Local  bool   // serve here; Peer is empty
	Peer   string // node name to forward to when !Local
	Reason Reason
}

// Candidate is a peer as the local node sees it from gossip.
type Candidate struct {
	Name     string
	Alive    bool
	Draining bool
	Full     bool // its queue cannot admit a request
	Models   []Model
	Wait     time.Duration // its estimate of the wait before a new request's first token
	PerSeq   time.Duration // what each more request adds to Wait
	RTT      time.Duration // estimated round trip from the local node (Vivaldi)
	Region   string
	Zone     string
}

// ExpectedTTFT is the time to first token a request forwarded to c should see:
// its queueing wait plus one round trip to carry the request and the first
// byte back.
func (c Candidate) ExpectedTTFT() time.Duration { return c.Wait + c.RTT }

func (c Candidate) serves(model string) (Model, bool) {
	for _, m := range c.Models {
		if m.Name == model {
			return m, true
		}
	}
	return Model{}, false
}

// LocalView is the local node's state at the moment of the decision.
type LocalView struct {
	Name      string
	Region    string
	Zone      string
	Serves    bool          // this node serves the model asked for
	Wait      time.Duration // local estimate of the wait before the first token
	QueueFull bool
	Draining  bool
}

// ForwardConfig tunes the decision. Its zero value never forwards (MaxHops 0).
type ForwardConfig struct {
	// Threshold is the local wait above which a peer is considered.
	Threshold time.Duration
	// MaxHops bounds how many times one request is forwarded.
	MaxHops int
	// Margin is the near-best set's width: candidates whose expected TTFT is
	// within Margin (a fraction) of the best are drawn from, so that several
	// overloaded nodes do not all pick the same peer.
	Margin float64
	// MinGain is the fraction by which a peer's expected TTFT must beat the
	// local wait before an overloaded node bothers forwarding; forwarding costs
	// a proxy hop and risks a mid-stream failure.
	MinGain float64
}

// DefaultForwardThreshold is twice the local time to first token at idle: a
// wait beyond that is queueing, not prefill. Unknown (non-positive) idle TTFT
// gives one second.
func DefaultForwardThreshold(idleTTFT time.Duration) time.Duration {
	if idleTTFT <= 0 {
		return time.Second
	}
	return 2 * idleTTFT
}

// DefaultForwardConfig is the defaults: threshold 2× idle TTFT, one
// hop, a 20% near-best set and a 20% minimum gain.
func DefaultForwardConfig(idleTTFT time.Duration) ForwardConfig {
	return ForwardConfig{
		Threshold: DefaultForwardThreshold(idleTTFT),
		MaxHops:   1,
		Margin:    0.2,
		MinGain:   0.2,
	}
}

// ForwardInput is everything the decision depends on besides the config and
// the randomness.
type ForwardInput struct {
	Model string
	Local LocalView
	Hops  int      // times this request has been forwarded already
	Path  []string // nodes it has visited; never forwarded back to one
	Peers []Candidate
}

// Choose decides whether a request is served locally or forwarded, and to
// whom. Before local admission:
//   - a model this node does not serve goes to the eligible peer with the
//     lowest expected TTFT, or fails with ErrNotServed;
//   - a draining node or a full queue forwards to any eligible peer;
//   - a local wait above cfg.Threshold forwards to a peer whose expected TTFT
//     beats the local wait by cfg.MinGain;
//   - otherwise, or past cfg.MaxHops, the request stays.
//
// Eligible peers are alive, not draining, not full, serve the model and are
// neither this node nor on in.Path. The peer is drawn by pick. The same input,
// config and rng state give the same Decision.
func Choose(in ForwardInput, cfg ForwardConfig, rng *rand.Rand) (Decision, error) {
	canHop := in.Hops < cfg.MaxHops
	var eligible []Candidate
	if canHop {
		eligible = eligiblePeers(in.Peers, in.Model, in.Local.Name, in.Path)
	}

	if !in.Local.Serves {
		if !canHop {
			return Decision{}, fmt.Errorf("%w: %q not here and hop limit %d reached", ErrNotServed, in.Model, cfg.MaxHops)
		}
		if len(eligible) == 0 {
			return Decision{}, fmt.Errorf("%w: %q by no live peer off the path", ErrNotServed, in.Model)
		}
		return forward(pick(eligible, in.Local, cfg.Margin, rng), ReasonModelElsewhere), nil
	}

	var reason Reason
	switch {
	case in.Local.Draining:
		reason = ReasonDraining
	case in.Local.QueueFull:
		reason = ReasonQueueFull
	case in.Local.Wait > cfg.Threshold:
		reason = ReasonOverloaded
	default:
		return Decision{Local: true, Reason: ReasonLocal}, nil
	}
	if !canHop {
		return Decision{Local: true, Reason: ReasonHopLimit}, nil
	}
	if len(eligible) == 0 {
		return Decision{Local: true, Reason: ReasonNoPeer}, nil
	}
	if reason == ReasonOverloaded {
		limit := time.Duration(float64(in.Local.Wait) * (1 - cfg.MinGain))
		eligible = slices.DeleteFunc(eligible, func(c Candidate) bool { return c.ExpectedTTFT() >= limit })
		if len(eligible) == 0 {
			return Decision{Local: true, Reason: ReasonNoBetterPeer}, nil
		}
	}
	return forward(pick(eligible, in.Local, cfg.Margin, rng), reason), nil
}

func forward(c Candidate, r Reason) Decision { return Decision{Peer: c.Name, Reason: r} }

// eligiblePeers returns a new slice, sorted by name so that the draw depends
// on the peers and the rng only, not on the order gossip listed them in.
func eligiblePeers(peers []Candidate, model, self string, path []string) []Candidate {
	var out []Candidate
	for _, p := range peers {
		if !p.Alive || p.Draining || p.Full || p.Name == self || slices.Contains(path, p.Name) {
			continue
		}
		if _, ok := p.serves(model); ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b Candidate) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// pick draws from the near-best set (expected TTFT within margin of the best)
// two candidates independently and uniformly, and takes the better (power of
// two choices). With k candidates of distinct TTFT the i-th best gets
// ((k-i+1)²-(k-i)²)/k² of the draws: the best most, every one some, so a peer
// everyone sees as best is not stampeded. The far peers outside the set get
// none. cands is non-empty.
func pick(cands []Candidate, local LocalView, margin float64, rng *rand.Rand) Candidate {
	best := cands[0].ExpectedTTFT()
	for _, c := range cands[1:] {
		best = min(best, c.ExpectedTTFT())
	}
	limit := best + time.Duration(float64(best)*margin)
	near := slices.DeleteFunc(slices.Clone(cands), func(c Candidate) bool { return c.ExpectedTTFT() > limit })
	if len(near) == 1 {
		return near[0]
	}
	a, b := near[rng.IntN(len(near))], near[rng.IntN(len(near))]
	if better(b, a, local) {
		return b
	}
	return a
}

// better reports whether b beats a: lower expected TTFT, then the local zone,
// then the local region. Full ties go to a, the first draw, so equal peers
// share the load evenly.
func better(b, a Candidate, local LocalView) bool {
	if ta, tb := a.ExpectedTTFT(), b.ExpectedTTFT(); ta != tb {
		return tb < ta
	}
	if za, zb := sameZone(a, local), sameZone(b, local); za != zb {
		return zb
	}
	return sameRegion(b, local) && !sameRegion(a, local)
}

func sameRegion(c Candidate, local LocalView) bool {
	return c.Region != "" && c.Region == local.Region
}

// sameZone requires the region too: zone names need not be unique across
// regions.
func sameZone(c Candidate, local LocalView) bool {
	return sameRegion(c, local) && c.Zone != "" && c.Zone == local.Zone
}

// ResumeInput describes a stream interrupted mid-way that the node the client
// called resumes elsewhere. To let this node resume the stream itself, list it
// among Peers with RTT 0.
type ResumeInput struct {
	Model    string
	Hash     string // of the model file the stream was generated with
	Numerics string // numerics tag the stream was generated with
	Local    LocalView
	Peers    []Candidate
	Exclude  []string // the failed peer and any others to avoid
}

// ChooseResume picks the node to resume a stream on. Peers with the same model
// file hash and numerics tag come first, since only they continue the stream
// token for token (an unknown hash matches none); exact reports whether the
// chosen one is such a peer. Among
// them, or else among any eligible peer serving the model, the choice is pick's.
func ChooseResume(in ResumeInput, cfg ForwardConfig, rng *rand.Rand) (peer string, exact bool, err error) {
	eligible := eligiblePeers(in.Peers, in.Model, "", in.Exclude)
	if len(eligible) == 0 {
		return "", false, fmt.Errorf("%w: %q by no live peer to resume on", ErrNotServed, in.Model)
	}
	same := slices.DeleteFunc(slices.Clone(eligible), func(c Candidate) bool {
		m, _ := c.serves(in.Model)
		return in.Hash == "" || m.Hash != in.Hash || m.Numerics != in.Numerics
	})
	if len(same) > 0 {
		return pick(same, in.Local, cfg.Margin, rng).Name, true, nil
	}
	return pick(eligible, in.Local, cfg.Margin, rng).Name, false, nil
}
