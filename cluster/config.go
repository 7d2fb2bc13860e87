// Package cluster makes godwit nodes a fleet: each node joins the others over
// memberlist's SWIM gossip, publishes its serving state (models, load, wait)
// in its memberlist metadata, and keeps Vivaldi network coordinates fed by
// memberlist's ping round trips, so that it can estimate its round trip to
// every member, not only to those it probed. It does membership and gossiped
// state only; choosing and reaching a peer is built on top of it (issue 14).
package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/hashicorp/memberlist"
)

// Config says how a node joins the fleet.
type Config struct {
	// NodeName names the node in the fleet; it must be unique. Empty: the
	// host name.
	NodeName string
	// BindAddr is the HOST:PORT gossip listens on, UDP and TCP. Empty:
	// 0.0.0.0:7946. Port 0 picks a free port.
	BindAddr string
	// AdvertiseAddr is the HOST:PORT the other nodes reach this one at.
	// Empty: the bound address (a private address when bound to 0.0.0.0).
	AdvertiseAddr string
	// Join lists HOST:PORT addresses of nodes already in the fleet; the node
	// retries them in the background until one answers. Empty: the node
	// waits to be joined.
	Join []string
	// Region and Zone are published with the state and break ties between
	// peers that are as near by measurement. Empty: unknown.
	Region, Zone string
	// Profile picks memberlist's timers: "lan", "wan" or "local". Empty: "lan".
	Profile string
	// Key is the AES-GCM key (16, 24 or 32 bytes) that gossip is encrypted
	// and authenticated with; a node without it can neither join nor read
	// gossip. Nil is allowed only with Insecure.
	Key []byte
	// Insecure allows a fleet with no Key (tests, closed networks).
	Insecure bool
	// Transport carries gossip. Nil: memberlist's NetTransport on BindAddr.
	// Tests wrap it to delay packets between chosen nodes.
	Transport memberlist.Transport
	// Logger receives memberlist's and this package's logs. Nil: slog.Default().
	Logger *slog.Logger

	// tune adjusts memberlist's timers in this package's tests, each of
	// which says why it does.
	tune func(*memberlist.Config)
}

// memberlistConfig validates c and turns it into memberlist's config, less
// the delegates.
func (c Config) memberlistConfig() (*memberlist.Config, error) {
	var mc *memberlist.Config
	switch c.Profile {
	case "", "lan":
		mc = memberlist.DefaultLANConfig()
	case "wan":
		mc = memberlist.DefaultWANConfig()
	case "local":
		mc = memberlist.DefaultLocalConfig()
	default:
		return nil, fmt.Errorf("cluster: unknown gossip profile %q: use lan, wan or local", c.Profile)
	}
	if c.NodeName != "" {
		mc.Name = c.NodeName
	}
	if mc.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("cluster: no node name and no host name (%v): set a node name", err)
		}
		mc.Name = h
	}
	if c.BindAddr != "" {
		host, port, err := splitHostPort(c.BindAddr)
		if err != nil {
			return nil, fmt.Errorf("cluster: bind address: %w", err)
		}
		mc.BindAddr, mc.BindPort, mc.AdvertisePort = host, port, port
	}
	if c.AdvertiseAddr != "" {
		host, port, err := splitHostPort(c.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise address: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = host, port
	}
	switch {
	case c.Key == nil && !c.Insecure:
		return nil, errors.New("cluster: no cluster key: give one (godwit keygen prints one) or allow an insecure cluster")
	case c.Key != nil:
		if err := checkKeyLen(len(c.Key)); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		mc.SecretKey = c.Key
		// Both directions are enforced, so plain-text gossip is refused.
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Transport = c.Transport
	if c.tune != nil {
		c.tune(mc)
	}
	return mc, nil
}

func splitHostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w (want HOST:PORT)", s, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port must be a number from 0 to 65535", s)
	}
	return host, port, nil
}
