package cluster

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/cluster/internal/delaynet"
	"github.com/hashicorp/memberlist"
)

// The regions of issue 14's simulation and their round trips, in ms.
var (
	simRegions = []string{"us-east", "us-west", "eu-west", "ap-northeast", "ap-southeast"}
	simRTTms   = [5][5]int{
		{2, 65, 75, 150, 220},
		{65, 2, 140, 100, 170},
		{75, 140, 2, 220, 160},
		{150, 100, 220, 2, 70},
		{220, 170, 160, 70, 2},
	}
	// simRate is the requests per second clients in each region send, and
	// simCalled how many of its nodes they call (the first ones): in us-east
	// and ap-southeast 6/s to each of 4 nodes that serve 4/s, elsewhere
	// 1.75/s a node; 90/s in all, 56% of the fleet's 160/s.
	simRate   = [5]float64{24, 14, 14, 14, 24}
	simCalled = [5]int{4, 8, 8, 8, 4}
)

const (
	simPerRegion = 8
	simSlots     = 4                      // requests an engine runs at once
	simQueueCap  = 16                     // requests it queues before it is full
	simPrefill   = 100 * time.Millisecond // admission to first token
	simService   = time.Second            // admission to last token
	simPublish   = 500 * time.Millisecond // as serve publishes its load
	simClient    = 2 * time.Millisecond   // client to a node of its region
	simLoad      = 20 * time.Second
	simSLO       = time.Second // time-to-first-token objective of goodput
	simStarved   = time.Second // a loop this far behind real time did not simulate
)

func simRTT(a, b int) time.Duration { return time.Duration(simRTTms[a][b]) * time.Millisecond }

// simEngine is a fake engine: FIFO, simSlots at a time, fixed times. A
// request is given the slot that frees first when it is admitted, which is
// exact for FIFO with equal service times.
type simEngine struct {
	free   [simSlots]time.Duration // when each slot is next free
	starts []time.Duration         // of the admitted requests not yet done
}

func (e *simEngine) next() time.Duration { return slices.Min(e.free[:]) }

func (e *simEngine) admit(at time.Duration) time.Duration {
	i := slices.Index(e.free[:], e.next())
	start := max(at, e.free[i])
	e.free[i] = start + simService
	e.starts = append(e.starts, start)
	return start
}

// wait is what the node publishes as State.Wait: time to first token.
func (e *simEngine) wait(at time.Duration) time.Duration {
	return max(0, e.next()-at) + simPrefill
}

func (e *simEngine) room(at time.Duration) bool { return e.next() <= at }

func (e *simEngine) load(at time.Duration) (running, waiting int) {
	e.starts = slices.DeleteFunc(e.starts, func(s time.Duration) bool { return s+simService <= at })
	for _, s := range e.starts {
		if s <= at {
			running++
		} else {
			waiting++
		}
	}
	return running, waiting
}

type simReq struct {
	sent   time.Duration // by the client
	region int           // the client's
	node   int           // the node the client calls, in its region
	hop    time.Duration
	ttft   time.Duration
}

const (
	evArrive  = iota // a request reaches the node its client called
	evReach          // a forwarded request reaches its peer
	evPublish        // a node publishes its engine's state
)

type simEvent struct {
	at         time.Duration
	kind, node int
	req        *simReq
}

type simEvents []simEvent

func (h simEvents) Len() int           { return len(h) }
func (h simEvents) Less(i, j int) bool { return h[i].at < h[j].at }
func (h simEvents) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *simEvents) Push(x any)        { *h = append(*h, x.(simEvent)) }
func (h *simEvents) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// TestSimulation40 is acceptance point 6 of issue 14: 40 real memberlist
// nodes over delaynet with five regions' round trips, synthetic load on fake
// engines whose forwarding decisions use what gossip delivered, and the same
// load through one central router in us-east that knows every queue exactly.
func TestSimulation40(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("40 nodes for a minute: too slow for -short, and for timing under -race")
	}
	const size = simPerRegion * 5
	region := func(i int) int { return i / simPerRegion }
	dn := delaynet.New()
	var trs []*delaynet.Transport
	var names []string
	for i := range size {
		tr, err := dn.Listen()
		if err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
		names = append(names, fmt.Sprintf("%s-%d", simRegions[region(i)], i%simPerRegion))
	}
	for i := range size {
		for j := range i {
			dn.SetRTT(trs[i].Addr(), trs[j].Addr(), simRTT(region(i), region(j)))
		}
	}
	start := time.Now()
	nodes := startFleet(t, names, func(i int, c *Config) {
		c.BindAddr, c.Transport, c.Region = trs[i].Addr(), trs[i], simRegions[region(i)]
		// Vivaldi settles over tens of probes, one a second on lan, and a
		// fleet runs for hours before this minute: probing four times as
		// often gets it there in seconds.
		c.tune = func(mc *memberlist.Config) { mc.ProbeInterval = 250 * time.Millisecond }
	})
	waitFor(t, 30*time.Second, "40 nodes see 40 alive", func() bool {
		for _, n := range nodes {
			if alive(n) != size {
				return false
			}
		}
		return true
	})
	converged := time.Since(start)
	allRTT := waitFor(t, 30*time.Second, "every node estimates every peer", func() bool {
		for _, n := range nodes {
			for _, m := range n.Members() {
				if !m.HasRTT {
					return false
				}
			}
		}
		return true
	})
	sent := func() (s int64) {
		for _, tr := range trs {
			s += tr.Sent()
		}
		return s
	}
	const warm = 15 * time.Second
	// Idle before the load: a peer not yet heard from under load must not
	// look better than idle (a zero Wait).
	idle := func() {
		for _, n := range nodes {
			if err := n.SetState(State{HTTPAddr: n.Addr(), Models: []Model{{Name: "m"}}, Wait: simPrefill}); err != nil {
				t.Fatal(err)
			}
		}
	}
	idle()
	quietFrom, quietBytes := time.Now(), sent()
	time.Sleep(warm)
	quietRate := float64(sent()-quietBytes) / time.Since(quietFrom).Seconds() / size

	reqs := simArrivals(size)
	loadFrom, loadBytes := time.Now(), sent()
	fw, lag := simGodwit(t, nodes, reqs)
	if lag > simStarved {
		// The loop ran far behind real time: the machine was busy (other
		// packages' tests run beside this one), and gossip's staleness was
		// not what the design gives. Once more, idle first.
		t.Logf("the event loop fell %v behind real time; running the load again", lag.Round(time.Millisecond))
		idle()
		time.Sleep(3 * time.Second)
		reqs = simArrivals(size)
		loadFrom, loadBytes = time.Now(), sent()
		fw, lag = simGodwit(t, nodes, reqs)
	}
	loadRate := float64(sent()-loadBytes) / time.Since(loadFrom).Seconds() / size

	// Vivaldi against the matrix, every ordered pair.
	var rel, abs, relCross []float64
	for i, n := range nodes {
		for _, m := range n.Members() {
			if m.Self {
				continue
			}
			j := slices.Index(names, m.Name)
			want := simRTT(region(i), region(j))
			d := (m.RTT - want).Abs()
			rel = append(rel, float64(d)/float64(want))
			abs = append(abs, float64(d)/float64(time.Millisecond))
			if region(i) != region(j) {
				relCross = append(relCross, float64(d)/float64(want))
			}
		}
	}

	router := make([]simReq, len(reqs))
	copy(router, reqs)
	simRouter(router, size)

	t.Logf("40 nodes, 8 in each of 5 regions, lan profile probing every 250 ms, encrypted, over delaynet (%v wall)", time.Since(start).Round(time.Second))
	t.Logf("%-44s %s", "converged (every node sees 40 alive)", converged.Round(time.Millisecond))
	t.Logf("%-44s %s later", "every node has an RTT estimate to every peer", allRTT.Round(time.Millisecond))
	t.Logf("%-44s %.0f B/s (quiet %v), %.0f B/s (under load, %v)", "gossip sent per node", quietRate, warm, loadRate, simLoad)
	t.Logf("%-44s median relative %.1f%% (cross-region %.1f%%), median absolute %.1f ms, over %d pairs after %v",
		"Vivaldi estimate vs the matrix", 100*median(rel), 100*median(relCross), median(abs), len(rel), time.Since(start).Round(time.Second))
	t.Logf("%-44s %d of %d requests (%.1f%%); nearest peer with room %d (%.1f%%); had a free slot %d (%.1f%%)",
		"forwarded", fw.forwards, len(reqs), 100*float64(fw.forwards)/float64(len(reqs)),
		fw.nearest, 100*fw.share(fw.nearest), fw.roomy, 100*fw.share(fw.roomy))
	t.Logf("%-44s %v behind real time at most", "event loop", lag.Round(time.Millisecond))
	gp, rp := goodput(reqs, simSLO), goodput(router, simSLO)
	t.Logf("%-44s godwit %.1f%%, router %.1f%%, ratio %.3f (at 500 ms: %.1f%% vs %.1f%%)", "goodput (TTFT ≤ 1 s)",
		100*gp, 100*rp, gp/rp, 100*goodput(reqs, simSLO/2), 100*goodput(router, simSLO/2))
	t.Logf("%-14s %8s %12s %12s %12s %12s", "client region", "requests", "godwit p50", "router p50", "godwit p99", "router p99")
	var far []string
	for r, name := range simRegions {
		g, c := ttfts(reqs, r), ttfts(router, r)
		t.Logf("%-14s %8d %12v %12v %12v %12v", name, len(g), pct(g, 50), pct(c, 50), pct(g, 99), pct(c, 99))
		if r >= 2 && pct(g, 50) >= pct(c, 50) {
			far = append(far, name)
		}
	}

	if s := fw.share(fw.nearest); s < 0.9 {
		t.Errorf("%.1f%% of forwards went to the nearest peer with room, want ≥ 90%%", 100*s)
	}
	if gp < 0.9*rp {
		t.Errorf("godwit's goodput %.1f%% is under 90%% of the router's %.1f%%", 100*gp, 100*rp)
	}
	if len(far) > 0 {
		t.Errorf("godwit's p50 does not beat the router's for clients in %s", strings.Join(far, ", "))
	}
}

// simArrivals draws the clients' requests: Poisson in each region at
// simRate, each to one of the first simCalled nodes of its region at random,
// sorted by time sent.
func simArrivals(size int) []simReq {
	rng := rand.New(rand.NewPCG(14, 6))
	var reqs []simReq
	for r, rate := range simRate {
		for at := time.Duration(0); ; {
			at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
			if at >= simLoad {
				break
			}
			reqs = append(reqs, simReq{sent: at, region: r, node: r*simPerRegion + rng.IntN(simCalled[r])})
		}
	}
	slices.SortFunc(reqs, func(a, b simReq) int { return int(a.sent - b.sent) })
	return reqs
}

type simForwards struct{ forwards, nearest, roomy int }

func (f simForwards) share(k int) float64 { return float64(k) / float64(f.forwards) }

// simGodwit runs the requests through the fleet in real time: simulated time
// is time since the load began, so the views Choose is given are as stale as
// gossip made them. It fills in each request's TTFT and reports the forwards
// and how far the loop fell behind real time.
func simGodwit(t *testing.T, nodes []*Node, reqs []simReq) (simForwards, time.Duration) {
	engines := make([]simEngine, len(nodes))
	index := map[string]int{}
	for i, n := range nodes {
		index[n.Name()] = i
	}
	var ev simEvents
	for i := range reqs {
		ev = append(ev, simEvent{at: reqs[i].sent + simClient/2, kind: evArrive, node: reqs[i].node, req: &reqs[i]})
	}
	for i := range nodes {
		ev = append(ev, simEvent{at: simPublish * time.Duration(i) / time.Duration(len(nodes)), kind: evPublish, node: i})
	}
	heap.Init(&ev)
	cfg := DefaultForwardConfig(simPrefill)
	rng := rand.New(rand.NewPCG(14, 7))
	var fw simForwards
	var lag time.Duration
	t0 := time.Now()
	for ev.Len() > 0 {
		e := heap.Pop(&ev).(simEvent)
		if d := e.at - time.Since(t0); d > 0 {
			time.Sleep(d)
		} else {
			lag = max(lag, -d)
		}
		eng := &engines[e.node]
		switch e.kind {
		case evPublish:
			running, waiting := eng.load(e.at)
			s := State{HTTPAddr: nodes[e.node].Addr(), Models: []Model{{Name: "m"}}, Running: running, Waiting: waiting, Wait: eng.wait(e.at),
				Full: running+waiting >= simSlots+simQueueCap}
			if err := nodes[e.node].SetState(s); err != nil {
				t.Fatal(err)
			}
			if e.at+simPublish < simLoad {
				e.at += simPublish
				heap.Push(&ev, e)
			}
		case evReach:
			e.req.ttft = eng.admit(e.at) + simPrefill + e.req.hop/2 + simClient/2 - e.req.sent
		case evArrive:
			running, waiting := eng.load(e.at)
			in := ForwardInput{Model: "m", Local: LocalView{
				Name: nodes[e.node].Name(), Region: simRegions[e.req.region], Serves: true,
				Wait: eng.wait(e.at), QueueFull: running+waiting >= simSlots+simQueueCap,
			}}
			// A peer with no round-trip estimate yet cannot be weighed.
			members := slices.DeleteFunc(nodes[e.node].Members(), func(m Member) bool { return !m.HasRTT })
			in.Peers = Candidates(members, nil)
			d, err := Choose(in, cfg, rng)
			if err != nil {
				t.Fatal(err)
			}
			if d.Local {
				e.kind = evReach
				heap.Push(&ev, e)
				continue
			}
			j := index[d.Peer]
			fw.forwards++
			if engines[j].room(e.at) {
				fw.roomy++
			}
			from := e.req.region
			nearest := time.Duration(-1)
			for k := range engines {
				if k != e.node && engines[k].room(e.at) {
					if rtt := simRTT(from, k/simPerRegion); nearest < 0 || rtt < nearest {
						nearest = rtt
					}
				}
			}
			e.req.hop = simRTT(from, j/simPerRegion)
			if e.req.hop == nearest {
				fw.nearest++
			}
			heap.Push(&ev, simEvent{at: e.at + e.req.hop/2, kind: evReach, node: j, req: e.req})
		}
	}
	return fw, lag
}

// simRouter runs the requests through one proxy router in us-east that sees
// every queue exactly and at once, its own dispatches in flight included,
// and sends each request to the node that gives it the first token soonest.
func simRouter(reqs []simReq, size int) {
	engines := make([]simEngine, size)
	at := func(r simReq) time.Duration { return r.sent + simRTT(r.region, 0)/2 }
	slices.SortStableFunc(reqs, func(a, b simReq) int { return int(at(a) - at(b)) })
	for i := range reqs {
		r := &reqs[i]
		tr := at(*r)
		best, bestT := 0, time.Duration(-1)
		for j := range engines {
			half := simRTT(0, j/simPerRegion) / 2
			if ft := max(tr+half, engines[j].next()) + simPrefill + half; bestT < 0 || ft < bestT {
				best, bestT = j, ft
			}
		}
		r.ttft = engines[best].admit(tr+simRTT(0, best/simPerRegion)/2) + simPrefill + simRTT(0, best/simPerRegion)/2 + simRTT(r.region, 0)/2 - r.sent
	}
}

func goodput(reqs []simReq, slo time.Duration) float64 {
	k := 0
	for _, r := range reqs {
		if r.ttft <= slo {
			k++
		}
	}
	return float64(k) / float64(len(reqs))
}

func ttfts(reqs []simReq, region int) []time.Duration {
	var out []time.Duration
	for _, r := range reqs {
		if r.region == region {
			out = append(out, r.ttft)
		}
	}
	slices.Sort(out)
	return out
}

// pct is the p-th percentile of sorted ds, to the millisecond.
func pct(ds []time.Duration, p int) time.Duration {
	return ds[min(len(ds)-1, len(ds)*p/100)].Round(time.Millisecond)
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}
