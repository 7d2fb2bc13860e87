package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/coordinate"
)

// Status is a member's liveness as gossip sees it.
type Status int

const (
	// Alive members answer probes, or are suspected but not yet declared
	// dead: memberlist reports no event when it starts to suspect a node.
	Alive Status = iota
	// Dead members were declared dead or left: memberlist's event does
	// not tell the two apart.
	Dead
)

func (s Status) String() string {
	switch s {
	case Alive:
		return "alive"
	case Dead:
		return "dead"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Member is one node of the fleet as this node sees it.
type Member struct {
	Name string
	// Addr is the member's gossip HOST:PORT.
	Addr   string
	State  State
	Status Status
	// Since is when this node learnt the status.
	Since time.Time
	// RTT estimates the round trip to the member from network coordinates;
	// valid only when HasRTT (the member's coordinate has been heard).
	RTT    time.Duration
	HasRTT bool
	// Self marks this node.
	Self bool
}

// Node is this process's membership in the fleet.
type Node struct {
	ml     *memberlist.Memberlist
	coords *coordinate.Client
	log    *slog.Logger
	name   string
	// reap is how long a dead or left member stays listed: memberlist's
	// own time to forget it.
	reap time.Duration

	mu        sync.Mutex
	state     State                  // the latest SetState
	meta      []byte                 // what NodeMeta hands memberlist
	published State                  // the state in the last UpdateNode
	pubCoord  *coordinate.Coordinate // the coordinate in it
	// measured is set by the first round trip measured; until then this
	// node's coordinate is the origin and publishes none.
	measured bool
	peers    map[string]*peer

	publish  chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
	shutdown sync.Once
}

// peer is what this node knows of another member.
type peer struct {
	addr   string
	state  State
	status Status
	left   bool // it said goodbye: not reconnected
	since  time.Time
	coord  *coordinate.Coordinate
}

// reconnectEvery is how often this node tries to join the members it holds
// dead (not left): after a partition longer than gossip's own memory of
// the dead, both sides hold the other dead and no gossip would ever cross
// again. reconnectFor is how long it keeps trying.
const (
	reconnectEvery = 5 * time.Second
	reconnectFor   = 10 * time.Minute
)

// publishEvery bounds how stale a member's published state is: a change
// that is not material, or a move of the network coordinate, goes out with
// the next refresh, this often. An unchanged state is not sent again, which
// keeps gossip's broadcast queue short in a large fleet.
const publishEvery = time.Second

// Start joins the fleet that cfg describes, publishing initial. It returns
// once gossip listens; joining cfg.Join goes on in the background until one
// of them answers.
func Start(cfg Config, initial State) (*Node, error) {
	mc, err := cfg.memberlistConfig()
	if err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg = lg.With("node", mc.Name)
	coords, err := coordinate.NewClient(coordinate.DefaultConfig())
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n := &Node{
		coords:  coords,
		log:     lg,
		name:    mc.Name,
		reap:    mc.GossipToTheDeadTime,
		peers:   map[string]*peer{},
		publish: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	initial.Region, initial.Zone = cfg.Region, cfg.Zone
	if n.meta, err = encodeMeta(initial, nil); err != nil {
		return nil, err
	}
	n.state, n.published = initial, initial
	d := delegate{n}
	mc.Delegate, mc.Events, mc.Ping = d, d, d
	mc.Logger = log.New(logWriter{lg}, "", 0)
	if n.ml, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("cluster: starting gossip on %s:%d: %w", mc.BindAddr, mc.BindPort, err)
	}
	n.wg.Add(2)
	go n.publishLoop()
	go n.reconnectLoop()
	if len(cfg.Join) > 0 {
		n.wg.Add(1)
		go n.joinLoop(cfg.Join)
	}
	return n, nil
}

// Name is this node's name in the fleet.
func (n *Node) Name() string { return n.name }

// Addr is the gossip HOST:PORT this node advertises.
func (n *Node) Addr() string { return n.ml.LocalNode().Address() }

// SetState publishes s (its Region and Zone are kept from the Config): at
// once when it differs materially from what was last published, otherwise
// with the next periodic refresh. It fails when s does not fit gossip's
// metadata.
func (n *Node) SetState(s State) error {
	n.mu.Lock()
	s.Region, s.Zone = n.state.Region, n.state.Zone
	meta, err := encodeMeta(s, n.coord())
	if err != nil {
		n.mu.Unlock()
		return err
	}
	n.state, n.meta = s, meta
	now := material(n.published, s)
	n.mu.Unlock()
	if now {
		select {
		case n.publish <- struct{}{}:
		default: // a publication is already due
		}
	}
	return nil
}

// coord is the coordinate to publish, nil before any measurement; n.mu is
// held.
func (n *Node) coord() *coordinate.Coordinate {
	if !n.measured {
		return nil
	}
	return n.coords.GetCoordinate()
}

// material says whether the fleet should hear of a change before the next
// periodic refresh: anything but small moves of the measured quantities.
func material(a, b State) bool {
	if a.HTTPAddr != b.HTTPAddr || a.Draining != b.Draining || a.Full != b.Full || len(a.Models) != len(b.Models) ||
		a.Running != b.Running || a.Waiting != b.Waiting {
		return true
	}
	for i := range a.Models {
		if a.Models[i] != b.Models[i] {
			return true
		}
	}
	return math.Abs(a.FreeKV-b.FreeKV) > 0.05 ||
		differ(float64(a.Wait), float64(b.Wait), float64(50*time.Millisecond)) ||
		differ(a.DecodeTPS, b.DecodeTPS, 1)
}

// differ says whether x and y differ by more than a tenth of the larger, and
// by more than floor.
func differ(x, y, floor float64) bool {
	d := math.Abs(x - y)
	return d > floor && d > 0.1*math.Max(math.Abs(x), math.Abs(y))
}

func (n *Node) publishLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(publishEvery)
	defer tick.Stop()
	var push <-chan time.Time // armed while a direct push waits out pushGap
	var pushed time.Time
	for {
		direct := false
		select {
		case <-n.stop:
			return
		case <-tick.C:
		case <-n.publish:
			direct = true
		case <-push:
			push, direct = nil, true
		}
		n.mu.Lock()
		c := n.coord()
		changed := !reflect.DeepEqual(n.state, n.published) || moved(n.pubCoord, c)
		if changed {
			if meta, err := encodeMeta(n.state, c); err == nil {
				n.meta = meta
			}
			n.published, n.pubCoord = n.state, c
		}
		meta := n.meta
		n.mu.Unlock()
		if changed {
			// UpdateNode's one error is that the broadcast has not gone
			// out within the wait; it goes on regardless, so the loop
			// hardly waits (and Shutdown does not wait on it).
			_ = n.ml.UpdateNode(time.Nanosecond)
		}
		switch wait := pushGap - time.Since(pushed); {
		case !direct:
		case wait <= 0:
			n.pushState(meta)
			pushed = time.Now()
		case push == nil:
			push = time.After(wait)
		}
	}
}

// pushGap is the least time between two direct pushes of this node's state.
const pushGap = 250 * time.Millisecond

// msgState tags a state pushed directly to every member.
const msgState = 1

// pushState sends meta to every member at once, as well as through gossip:
// gossip (3 members every 200 ms on lan) takes a second or more to reach
// all of 50 nodes, and longer once its queue fills, while peers forward on
// this state. One UDP packet a member, at most every pushGap.
func (n *Node) pushState(meta []byte) {
	msg := append(appendString([]byte{msgState}, n.name), meta...)
	for _, m := range n.ml.Members() {
		if m.Name != n.name {
			_ = n.ml.SendBestEffort(m, msg)
		}
	}
}

// moved says whether a coordinate moved enough since it was published to be
// published again: by over a millisecond, which round trips estimated from
// it would show.
func moved(was, now *coordinate.Coordinate) bool {
	if was == nil || now == nil {
		return was != now
	}
	if len(was.Vec) != len(now.Vec) {
		return true
	}
	var sq float64
	for i := range was.Vec {
		d := was.Vec[i] - now.Vec[i]
		sq += d * d
	}
	return math.Sqrt(sq)+math.Abs(was.Height-now.Height)+math.Abs(was.Adjustment-now.Adjustment) > 0.001
}

func (n *Node) joinLoop(addrs []string) {
	defer n.wg.Done()
	wait := 500 * time.Millisecond
	for {
		k, err := n.ml.Join(addrs)
		if k > 0 {
			n.log.Info("cluster: joined", "answered", k)
			return
		}
		n.log.Warn("cluster: no node to join answered; retrying", "join", addrs, "in", wait, "err", err)
		select {
		case <-n.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (n *Node) reconnectLoop() {
	defer n.wg.Done()
	t := time.NewTicker(reconnectEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		var dead []string
		n.mu.Lock()
		for _, p := range n.peers {
			if p.status == Dead && !p.left {
				dead = append(dead, p.addr)
			}
		}
		n.mu.Unlock()
		for _, addr := range dead {
			if k, _ := n.ml.Join([]string{addr}); k > 0 {
				n.log.Info("cluster: reached a member held dead", "addr", addr)
			}
		}
	}
}

// Members lists the fleet as this node sees it, itself included; dead and
// left members stay listed until gossip forgets them.
func (n *Node) Members() []Member {
	self := n.coords.GetCoordinate()
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Member, 0, len(n.peers))
	for name, p := range n.peers {
		if p.status != Alive && now.Sub(p.since) > n.reap {
			if p.left || now.Sub(p.since) > n.reap+reconnectFor {
				delete(n.peers, name)
			}
			continue
		}
		m := Member{Name: name, Addr: p.addr, State: p.state, Status: p.status, Since: p.since}
		if name == n.name {
			m.State, m.Self, m.HasRTT = n.state, true, true
		} else if p.coord != nil && self.IsCompatibleWith(p.coord) {
			m.RTT, m.HasRTT = self.DistanceTo(p.coord), true
		}
		out = append(out, m)
	}
	return out
}

// Leave announces that this node leaves, waits up to timeout for the fleet to
// hear it, and shuts the node down.
func (n *Node) Leave(timeout time.Duration) error {
	err := n.ml.Leave(timeout)
	return errors.Join(err, n.Shutdown())
}

// Shutdown stops gossip without announcing it; the others declare the node
// dead after their suspicion time.
func (n *Node) Shutdown() error {
	var err error
	n.shutdown.Do(func() {
		close(n.stop)
		err = n.ml.Shutdown()
		n.wg.Wait()
	})
	return err
}

// delegate receives memberlist's callbacks; a type of its own keeps them
// out of Node's API.
type delegate struct{ n *Node }

func (d delegate) NodeMeta(limit int) []byte {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	if len(d.n.meta) > limit {
		return nil // encodeMeta holds to MetaMaxSize, which limit is
	}
	return d.n.meta
}

// NotifyMsg takes a state pushed by a member (see pushState); one from a
// member not known alive is dropped, as gossip will tell of it.
func (d delegate) NotifyMsg(b []byte) {
	if len(b) == 0 || b[0] != msgState {
		return
	}
	r := reader{b: b[1:]}
	name := r.string()
	s, c, err := decodeMeta(r.b)
	if r.err != nil || err != nil {
		return
	}
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	if p := d.n.peers[name]; p != nil && p.status == Alive && name != d.n.name {
		p.state = s
		if c != nil {
			p.coord = c
		}
	}
}

func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d delegate) NotifyJoin(m *memberlist.Node)   { d.n.heard(m, Alive) }
func (d delegate) NotifyUpdate(m *memberlist.Node) { d.n.heard(m, Alive) }

func (d delegate) NotifyLeave(m *memberlist.Node) {
	d.n.heard(m, Dead)
	if m.State == memberlist.StateLeft {
		d.n.mu.Lock()
		d.n.peers[m.Name].left = true
		d.n.mu.Unlock()
	}
	d.n.coords.ForgetNode(m.Name)
}

// heard records a member's gossiped node; memberlist holds its node lock
// during the call, so m is read here and not kept.
func (n *Node) heard(m *memberlist.Node, st Status) {
	s, c, err := decodeMeta(m.Meta)
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peers[m.Name]
	if p == nil {
		p = &peer{}
		n.peers[m.Name] = p
	}
	p.addr = m.Address()
	if st == Alive {
		p.left = false
	}
	if p.status != st || p.since.IsZero() {
		p.status, p.since = st, time.Now()
	}
	if err != nil {
		if st == Alive {
			n.log.Warn("cluster: unreadable state from a member (a different godwit version?)", "member", m.Name, "err", err)
		}
		return
	}
	p.state = s
	if c != nil {
		p.coord = c
	}
}

// AckPayload hands this node's coordinate to the node that probed it.
func (d delegate) AckPayload() []byte {
	return appendCoord([]byte{metaVersion}, d.n.coords.GetCoordinate())
}

// NotifyPingComplete feeds a probe's round trip to the Vivaldi client, with
// the coordinate the probed node sent back.
func (d delegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	if len(payload) == 0 || payload[0] != metaVersion {
		return
	}
	r := reader{b: payload[1:]}
	c := r.coord()
	if r.err != nil || c == nil {
		return
	}
	if _, err := d.n.coords.Update(other.Name, c, rtt); err != nil {
		d.n.log.Debug("cluster: coordinate update", "member", other.Name, "rtt", rtt, "err", err)
		return
	}
	d.n.mu.Lock()
	d.n.measured = true
	if p := d.n.peers[other.Name]; p != nil {
		p.coord = c
	}
	d.n.mu.Unlock()
}

// logWriter turns memberlist's "[LEVEL] memberlist: …" lines into slog
// records.
type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(b []byte) (int, error) {
	msg := bytes.TrimSpace(b)
	level := slog.LevelInfo
	for _, l := range []struct {
		tag   string
		level slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}} {
		if rest, ok := bytes.CutPrefix(msg, []byte(l.tag)); ok {
			level, msg = l.level, bytes.TrimSpace(rest)
			break
		}
	}
	w.l.Log(context.Background(), level, string(msg))
	return len(b), nil
}
