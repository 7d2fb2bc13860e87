package cluster

import (
	"sync"
	"time"
)

// UnknownRTT stands in for the round trip to a member whose coordinate has
// not been heard yet: a plausible WAN distance, so that an unmeasured peer
// is neither preferred nor shut out.
const UnknownRTT = 100 * time.Millisecond

// Candidates turns the members as this node sees them into the forwarding
// decision's peers, leaving out this node. A peer that avoided reports
// (one that failed lately) counts as not alive.
func Candidates(members []Member, avoided func(name string) bool) []Candidate {
	var out []Candidate
	for _, m := range members {
		if m.Self {
			continue
		}
		st := m.State
		c := Candidate{Name: m.Name, Alive: m.Status == Alive && (avoided == nil || !avoided(m.Name)),
			Draining: st.Draining, Full: st.Full, Models: st.Models, Wait: st.Wait, PerSeq: st.WaitPerSeq, RTT: UnknownRTT,
			Region: st.Region, Zone: st.Zone}
		if m.HasRTT {
			c.RTT = m.RTT
		}
		out = append(out, c)
	}
	return out
}

// Avoid remembers peers that failed to answer, so that requests stay away
// from them for AvoidFor even before gossip declares them dead. The zero
// value is ready. Safe for concurrent use.
type Avoid struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// AvoidFor is how long a failed peer is left alone: about the lan profile's
// time to declare a dead node.
const AvoidFor = 5 * time.Second

// Fail records that name failed at now.
func (a *Avoid) Fail(name string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.until == nil {
		a.until = map[string]time.Time{}
	}
	a.until[name] = now.Add(AvoidFor)
}

// Avoided reports whether name failed within the avoidance time before now.
func (a *Avoid) Avoided(name string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.until[name]
	if ok && !now.Before(u) {
		delete(a.until, name)
		return false
	}
	return ok
}
