package cluster

import (
	"log/slog"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/cluster/internal/delaynet"
	"github.com/hashicorp/memberlist"
)

// testKey is a fixed AES-256 key: gossip in the tests is encrypted as in
// production.
var testKey = []byte("0123456789abcdef0123456789abcdef")

func testConfig(name string) Config {
	return Config{
		NodeName: name,
		BindAddr: "127.0.0.1:0",
		Profile:  "lan",
		Key:      testKey,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
}

// startFleet starts nodes named n0…, each joining n0, and shuts them down
// when the test ends.
func startFleet(t *testing.T, names []string, cfg func(i int, c *Config)) []*Node {
	t.Helper()
	var nodes []*Node
	for i, name := range names {
		c := testConfig(name)
		if i > 0 {
			c.Join = []string{nodes[0].Addr()}
		}
		if cfg != nil {
			cfg(i, &c)
		}
		n, err := Start(c, State{HTTPAddr: "127.0.0.1:80" + string(rune('0'+i))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown() })
		nodes = append(nodes, n)
	}
	return nodes
}

// waitFor polls cond until it holds, failing the test after limit; it
// returns how long it took.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func member(n *Node, name string) (Member, bool) {
	for _, m := range n.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func alive(n *Node) int {
	k := 0
	for _, m := range n.Members() {
		if m.Status == Alive {
			k++
		}
	}
	return k
}

// TestFleet runs one five-node fleet on the lan profile's own timers through
// convergence, a state change, round-trip estimates and a killed node.
func TestFleet(t *testing.T) {
	names := []string{"n0", "n1", "n2", "n3", "n4"}
	start := time.Now()
	nodes := startFleet(t, names, nil)
	took := waitFor(t, 20*time.Second, "5 nodes see 5 alive", func() bool {
		for _, n := range nodes {
			if alive(n) != len(names) {
				return false
			}
		}
		return true
	})
	t.Logf("converged: every node sees 5 alive %v after the first started (%v after the last)", time.Since(start), took)

	t.Run("StateReachesEveryNode", func(t *testing.T) {
		s := State{HTTPAddr: "127.0.0.1:8002", Waiting: 7, Wait: 3 * time.Second, FreeKV: 0.5,
			Models: []Model{{Name: "m", Hash: "abc", Numerics: "cpu/f16"}}}
		if err := nodes[2].SetState(s); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 10*time.Second, "the change reaches every node", func() bool {
			for _, n := range nodes {
				if m, _ := member(n, "n2"); m.State.Waiting != 7 || len(m.State.Models) != 1 {
					return false
				}
			}
			return true
		})
		t.Logf("a state change reached every node in %v", took)

		// A small move of the free KV is not material: it goes out with
		// the next refresh, within publishEvery. (17/32 survives float32.)
		s.FreeKV = 0.53125
		if err := nodes[2].SetState(s); err != nil {
			t.Fatal(err)
		}
		took = waitFor(t, 10*time.Second, "a small change reaches every node", func() bool {
			for _, n := range nodes {
				if m, _ := member(n, "n2"); m.State.FreeKV != 0.53125 {
					return false
				}
			}
			return true
		})
		t.Logf("a change that is not material reached every node in %v (refresh every %v)", took, publishEvery)
		if err := nodes[2].SetState(fullState(20)); err == nil {
			t.Error("a state over gossip's limit was taken")
		}
	})

	t.Run("RTTForEveryPeer", func(t *testing.T) {
		// Each node probes one peer a second (lan), so every coordinate
		// is measured within a few rounds.
		took := waitFor(t, 30*time.Second, "every node estimates its round trip to every peer", func() bool {
			for _, n := range nodes {
				for _, m := range n.Members() {
					if !m.HasRTT {
						return false
					}
				}
			}
			return true
		})
		for _, m := range nodes[0].Members() {
			t.Logf("n0 → %s: %v", m.Name, m.RTT)
			if m.RTT > 100*time.Millisecond {
				t.Errorf("n0 → %s: %v estimated on the loopback", m.Name, m.RTT)
			}
		}
		t.Logf("every node had a round-trip estimate to every peer %v later", took)
	})

	t.Run("KilledNodeDeclaredDead", func(t *testing.T) {
		// The lan profile's suspicion lasts SuspicionMult × log10(N) probe
		// intervals, up to SuspicionMaxTimeoutMult times that while few
		// confirm it: 4 s to 24 s at 5 nodes; detecting takes a probe round.
		mc := memberlist.DefaultLANConfig()
		bound := time.Duration(mc.SuspicionMult*mc.SuspicionMaxTimeoutMult)*mc.ProbeInterval + time.Duration(len(names))*mc.ProbeInterval + 5*time.Second
		if err := nodes[4].Shutdown(); err != nil { // killed: no leave message
			t.Fatal(err)
		}
		took := waitFor(t, bound, "the others declare n4 dead", func() bool {
			for _, n := range nodes[:4] {
				if m, ok := member(n, "n4"); !ok || m.Status != Dead {
					return false
				}
			}
			return true
		})
		t.Logf("every other node declared the killed node dead in %v (bound %v)", took, bound)
	})

	t.Run("LeaveIsHeardAtOnce", func(t *testing.T) {
		start := time.Now()
		if err := nodes[3].Leave(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 5*time.Second, "the others hear n3 leave", func() bool {
			for _, n := range nodes[:3] {
				if m, ok := member(n, "n3"); !ok || m.Status != Dead {
					return false
				}
			}
			return true
		})
		t.Logf("every other node heard n3 leave %v after Leave returned (Leave took %v)", took, time.Since(start)-took)
	})
}

func TestLateJoin(t *testing.T) {
	// n1 starts with n0 not yet there: it keeps trying until n0 answers.
	late := testConfig("n0")
	late.BindAddr = freeAddr(t)
	first := startFleet(t, []string{"n1"}, func(i int, c *Config) { c.Join = []string{late.BindAddr} })[0]
	time.Sleep(time.Second)
	n0, err := Start(late, State{})
	if err != nil {
		t.Fatal(err)
	}
	defer n0.Shutdown()
	took := waitFor(t, 30*time.Second, "n1 joins n0 once it is up", func() bool { return alive(first) == 2 && alive(n0) == 2 })
	t.Logf("joined %v after n0 started", took)
}

// freeAddr finds a free gossip port on 127.0.0.1 by letting memberlist's
// transport pick one and closing it.
func freeAddr(t *testing.T) string {
	tr, err := delaynet.New().Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	return tr.Addr()
}

func TestWrongKeyCannotJoin(t *testing.T) {
	nodes := startFleet(t, []string{"n0", "n1"}, nil)
	waitFor(t, 10*time.Second, "two nodes converge", func() bool { return alive(nodes[0]) == 2 && alive(nodes[1]) == 2 })
	for _, c := range []struct {
		name string
		set  func(*Config)
	}{
		{"wrongkey", func(c *Config) { c.Key = []byte("fedcba9876543210fedcba9876543210") }},
		{"nokey", func(c *Config) { c.Key, c.Insecure = nil, true }},
	} {
		cfg := testConfig(c.name)
		c.set(&cfg)
		cfg.Join = []string{nodes[0].Addr(), nodes[1].Addr()}
		x, err := Start(cfg, State{})
		if err != nil {
			t.Fatal(err)
		}
		defer x.Shutdown()
		time.Sleep(3 * time.Second)
		for _, n := range nodes {
			if _, ok := member(n, c.name); ok || alive(n) != 2 {
				t.Errorf("%s got in: %s sees %+v", c.name, n.Name(), n.Members())
			}
		}
		if alive(x) != 1 {
			t.Errorf("%s sees %+v", c.name, x.Members())
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{BindAddr: "127.0.0.1:0"},                       // no key, not insecure
		{BindAddr: "127.0.0.1:0", Key: []byte("short")}, // bad key length
		{BindAddr: "127.0.0.1", Insecure: true},         // no port
		{BindAddr: "127.0.0.1:0", Insecure: true, Profile: "x"},
	} {
		if n, err := Start(c, State{}); err == nil {
			n.Shutdown()
			t.Errorf("%+v: started", c)
		}
	}
}

// TestVivaldiSeesDelay puts 100 ms between n2 and the two others, which are
// near each other, and checks that n0's estimate to n2 comes out far larger
// than to n1.
func TestVivaldiSeesDelay(t *testing.T) {
	dn := delaynet.New()
	var trs []*delaynet.Transport
	for range 3 {
		tr, err := dn.Listen()
		if err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}
	dn.SetRTT(trs[0].Addr(), trs[2].Addr(), 100*time.Millisecond)
	dn.SetRTT(trs[1].Addr(), trs[2].Addr(), 100*time.Millisecond)
	nodes := startFleet(t, []string{"n0", "n1", "n2"}, func(i int, c *Config) {
		c.BindAddr, c.Transport = trs[i].Addr(), trs[i]
		// Vivaldi settles over tens of samples, one per probe: probing
		// four times as often as lan gets them in seconds.
		c.tune = func(mc *memberlist.Config) { mc.ProbeInterval = 250 * time.Millisecond }
	})
	var near, far Member
	took := waitFor(t, 60*time.Second, "n0's estimate to n2 well above that to n1", func() bool {
		near, _ = member(nodes[0], "n1")
		far, _ = member(nodes[0], "n2")
		return near.HasRTT && far.HasRTT && far.RTT > 70*time.Millisecond && far.RTT > 5*near.RTT
	})
	t.Logf("after %v: n0 → n1 (near) %v, n0 → n2 (100 ms) %v", took, near.RTT, far.RTT)
}

func TestMaterial(t *testing.T) {
	base := State{Running: 4, FreeKV: 0.5, Wait: time.Second, DecodeTPS: 100, Models: []Model{{Name: "m"}}}
	for _, c := range []struct {
		name string
		edit func(*State)
		want bool
	}{
		{"same", func(*State) {}, false},
		{"free KV by 0.02", func(s *State) { s.FreeKV = 0.52 }, false},
		{"free KV by 0.1", func(s *State) { s.FreeKV = 0.4 }, true},
		{"wait by 5%", func(s *State) { s.Wait = 1050 * time.Millisecond }, false},
		{"wait by 50%", func(s *State) { s.Wait = 1500 * time.Millisecond }, true},
		{"tokens/s by 5%", func(s *State) { s.DecodeTPS = 105 }, false},
		{"one more running", func(s *State) { s.Running = 5 }, true},
		{"draining", func(s *State) { s.Draining = true }, true},
		{"another model", func(s *State) { s.Models = []Model{{Name: "n"}} }, true},
	} {
		s := base
		c.edit(&s)
		if got := material(base, s); got != c.want {
			t.Errorf("%s: material %v, want %v", c.name, got, c.want)
		}
	}
}

// TestPartitionHeals: two nodes cut off from each other each declare the
// other dead and stop forwarding to it; once the link is back (after
// gossip has stopped gossiping to the dead) they reach each other again
// and each forwards to the other.
func TestPartitionHeals(t *testing.T) {
	dn := delaynet.New()
	var trs []*delaynet.Transport
	for range 2 {
		tr, err := dn.Listen()
		if err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}
	nodes := startFleet(t, []string{"n0", "n1"}, func(i int, c *Config) {
		c.BindAddr, c.Transport = trs[i].Addr(), trs[i]
		c.tune = func(mc *memberlist.Config) { mc.GossipToTheDeadTime = time.Second }
	})
	for _, n := range nodes {
		if err := n.SetState(State{Models: []Model{{Name: "m"}}}); err != nil {
			t.Fatal(err)
		}
	}
	// forwards says whether n, overloaded, forwards to its peer.
	forwards := func(n *Node) bool {
		d, err := Choose(ForwardInput{Model: "m", Local: LocalView{Name: n.Name(), Serves: true, Wait: 10 * time.Second},
			Peers: Candidates(n.Members(), nil)}, DefaultForwardConfig(0), rand.New(rand.NewPCG(1, 2)))
		return err == nil && !d.Local
	}
	both := func(ok func(*Node) bool) func() bool {
		return func() bool { return ok(nodes[0]) && ok(nodes[1]) }
	}
	waitFor(t, 10*time.Second, "both forward to each other", both(forwards))
	dn.Partition(trs[0].Addr(), trs[1].Addr(), true)
	took := waitFor(t, 30*time.Second, "both stop forwarding across the partition", both(func(n *Node) bool { return !forwards(n) }))
	t.Logf("partitioned: both held the other dead after %v", took)
	time.Sleep(2 * time.Second) // past GossipToTheDeadTime: only reconnecting can heal it
	dn.Partition(trs[0].Addr(), trs[1].Addr(), false)
	took = waitFor(t, 3*reconnectEvery, "both forward again after the partition heals", both(forwards))
	t.Logf("healed: both forward to each other again %v after the link came back", took)
}
