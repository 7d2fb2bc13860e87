// Package delaynet puts chosen round trips between memberlist transports on
// one machine, whose kernel may lack netem: each transport holds back the
// packets and connections it sends by the delay set for the pair. Tests of
// package cluster use it; everything else under test is the production code.
package delaynet

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Net holds the one-way delays between transports, by gossip address.
type Net struct {
	mu    sync.Mutex
	delay map[[2]string]time.Duration
	cut   map[[2]string]bool
}

// New returns a net with no delays.
func New() *Net { return &Net{delay: map[[2]string]time.Duration{}, cut: map[[2]string]bool{}} }

// Partition cuts (on) or heals the link between a and b: packets between
// them are lost and connections refused.
func (n *Net) Partition(a, b string, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[[2]string{a, b}], n.cut[[2]string{b, a}] = on, on
}

func (n *Net) isCut(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[[2]string{from, to}]
}

// SetRTT makes the round trip between a and b (gossip HOST:PORT) rtt on top
// of the loopback's, half each way.
func (n *Net) SetRTT(a, b string, rtt time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delay[[2]string{a, b}] = rtt / 2
	n.delay[[2]string{b, a}] = rtt / 2
}

func (n *Net) oneWay(from, to string) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.delay[[2]string{from, to}]
}

// Transport is a memberlist transport on 127.0.0.1 whose sends are delayed
// and counted. It implements only memberlist.Transport, so that memberlist
// sends through WriteTo and DialTimeout rather than the wrapped transport's
// address-aware methods.
type Transport struct {
	inner   *memberlist.NetTransport
	net     *Net
	addr    string
	streams chan net.Conn
	done    chan struct{}
	stop    sync.Once
	sent    atomic.Int64
}

var _ memberlist.Transport = (*Transport)(nil)

// Listen opens a transport on a free port of 127.0.0.1.
func (n *Net) Listen() (*Transport, error) {
	inner, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}})
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(inner.GetAutoBindPort()))
	t := &Transport{inner: inner, net: n, addr: addr, streams: make(chan net.Conn), done: make(chan struct{})}
	go t.countStreams()
	return t, nil
}

// countStreams hands memberlist the accepted connections wrapped, so that
// what this node answers on them is counted too.
func (t *Transport) countStreams() {
	for {
		select {
		case c := <-t.inner.StreamCh():
			select {
			case t.streams <- countingConn{c, &t.sent}:
			case <-t.done:
				c.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

// Sent is how many bytes this transport has sent: packets, and what it wrote
// on the connections it dialed or accepted.
func (t *Transport) Sent() int64 { return t.sent.Load() }

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	k, err := c.Conn.Write(b)
	c.n.Add(int64(k))
	return k, err
}

// Addr is the transport's HOST:PORT.
func (t *Transport) Addr() string { return t.addr }

func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

// WriteTo reports the packet sent now, so that memberlist's round trip
// includes the delay.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.sent.Add(int64(len(b)))
	if t.net.isCut(t.addr, addr) {
		return time.Now(), nil // lost on the way
	}
	d := t.net.oneWay(t.addr, addr)
	if d == 0 {
		return t.inner.WriteTo(b, addr)
	}
	sent := time.Now()
	p := append([]byte(nil), b...)
	time.AfterFunc(d, func() { t.inner.WriteTo(p, addr) })
	return sent, nil
}

func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.inner.PacketCh() }

// DialTimeout holds a connection back by the round trip its handshake takes.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.net.isCut(t.addr, addr) {
		return nil, fmt.Errorf("delaynet: %s is cut off from %s", addr, t.addr)
	}
	if d := 2 * t.net.oneWay(t.addr, addr); d > 0 {
		time.Sleep(min(d, timeout))
	}
	c, err := t.inner.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return countingConn{c, &t.sent}, nil
}

func (t *Transport) StreamCh() <-chan net.Conn { return t.streams }

func (t *Transport) Shutdown() error {
	t.stop.Do(func() { close(t.done) })
	return t.inner.Shutdown()
}
