package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/cluster"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/tokenizer"
	"github.com/godwit-ai/godwit/server"
)

// fleetFlags are serve's cluster flags; with none of them set, a node runs
// alone exactly as before.
type fleetFlags struct {
	bind, advertise, nodeName string
	region, zone, profile     string
	keyFile                   string
	join                      []string
	insecure                  bool
	forwardThreshold          time.Duration
	maxHops                   int
}

func (c *fleetFlags) add(f *pflag.FlagSet) {
	f.StringVar(&c.bind, "cluster-bind", "", "HOST:PORT the fleet's gossip listens on (UDP and TCP); joins a fleet")
	f.StringSliceVar(&c.join, "join", nil, "HOST:PORT of fleet nodes to join, comma-separated (retried until one answers)")
	f.StringVar(&c.nodeName, "node-name", "", "this node's name in the fleet (default: the host name)")
	f.StringVar(&c.region, "region", "", "this node's region, gossiped to the fleet")
	f.StringVar(&c.zone, "zone", "", "this node's zone, gossiped to the fleet")
	f.StringVar(&c.advertise, "advertise", "", "HOST:PORT the other nodes reach this one's gossip at (default: the bound one)")
	f.StringVar(&c.profile, "gossip-profile", "lan", "gossip timers: lan, wan or local")
	f.StringVar(&c.keyFile, "cluster-key-file", "", "file holding the fleet's base64 key (godwit keygen prints one)")
	f.BoolVar(&c.insecure, "insecure-cluster", false, "gossip with no key (tests and closed networks only)")
	f.DurationVar(&c.forwardThreshold, "forward-threshold", 0, "local wait for a first token above which a request goes to a peer that answers sooner (default: twice the time to first token at idle, as measured)")
	f.IntVar(&c.maxHops, "max-hops", 1, "times one request may be forwarded between nodes (0: never forward)")
}

// forwarding is the forwarding set-up the flags ask for, keyed as gossip is.
// A node that serves TLS reaches its peers over TLS, trusting the system's
// roots and its own certificate's chain (a fleet that shares a certificate
// or a private CA).
func (c *fleetFlags) forwarding(key []byte, serving *tls.Config) (*server.Forwarding, error) {
	if c.maxHops < 0 || c.forwardThreshold < 0 {
		return nil, fmt.Errorf("--max-hops and --forward-threshold cannot be negative")
	}
	cfg := cluster.DefaultForwardConfig(0)
	cfg.Threshold, cfg.MaxHops = c.forwardThreshold, c.maxHops
	f := &server.Forwarding{Config: cfg, Auth: cluster.NewAuth(key)}
	if serving != nil {
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		for _, der := range serving.Certificates[0].Certificate {
			if cert, err := x509.ParseCertificate(der); err == nil {
				roots.AddCert(cert)
			}
		}
		f.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return f, nil
}

// loadTLS reads --tls-cert and --tls-key; nil when neither is given.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together: give both")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// httpAddr is the API's address as peers reach it: the listener's, or,
// when that is a wildcard, the host gossip advertises.
func httpAddr(ln net.Addr, gossip string) string {
	host, port, _ := net.SplitHostPort(ln.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host, _, _ = net.SplitHostPort(gossip)
	}
	return net.JoinHostPort(host, port)
}

// enabled tells whether the node joins a fleet.
func (c *fleetFlags) enabled() bool { return c.bind != "" || len(c.join) > 0 }

// config checks the flags into a cluster.Config.
func (c *fleetFlags) config(log *slog.Logger) (cluster.Config, error) {
	cfg := cluster.Config{NodeName: c.nodeName, BindAddr: c.bind, AdvertiseAddr: c.advertise, Join: c.join,
		Region: c.region, Zone: c.zone, Profile: c.profile, Insecure: c.insecure, Logger: log}
	switch {
	case c.keyFile != "" && c.insecure:
		return cfg, fmt.Errorf("--cluster-key-file and --insecure-cluster: give one of them")
	case c.keyFile != "":
		key, err := cluster.ReadKeyFile(c.keyFile)
		if err != nil {
			return cfg, fmt.Errorf("--cluster-key-file: %w", err)
		}
		cfg.Key = key
	case !c.insecure:
		return cfg, fmt.Errorf("a fleet needs a key: --cluster-key-file FILE (godwit keygen prints one), or --insecure-cluster on a closed network")
	}
	return cfg, nil
}

// fleetState is what this node publishes: its address and model, and its
// load as the batcher counts it.
func fleetState(httpAddr string, model cluster.Model, st batcher.Stats, lim batcher.Limits, decodeTPS float64, draining bool) cluster.State {
	return cluster.State{HTTPAddr: httpAddr, Models: []cluster.Model{model}, Running: st.Running, Waiting: st.Waiting,
		FreeKV: 1 - st.KVUsage, Wait: st.Wait, WaitPerSeq: st.WaitPerSeq, DecodeTPS: decodeTPS, Draining: draining, Full: st.Waiting >= lim.MaxQueue}
}

// numerics names what besides the model file decides the tokens a node
// generates, so that a stream resumes token for token only where it
// matches: the backend, the KV cache's type and the kernels' order.
func numerics(order kernels.Order, kvF32 bool) string {
	kv := "kv-f16"
	if kvF32 {
		kv = "kv-f32"
	}
	return "cpu/" + kv + "/" + order.String()
}

// fileDigest is the start of the SHA-256 of the file at path: 16 hex
// digits tell model files apart and keep the gossiped state small.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing the model file: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// publish hands the node's state to gossip every 100 ms until stop is
// closed; gossip sends at once what changed materially (a sequence more or
// less, a tenth more wait), the rest once a second. Peers forward on it, so
// it must be fresh. The model file's digest joins the state when hashed
// delivers it: hashing a large file takes seconds, which the node does not
// wait for.
func publish(node *cluster.Node, srv *server.Server, b *batcher.Batcher, httpAddr string, model cluster.Model,
	hashed <-chan string, log *slog.Logger, stop <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	// The decode rate is the tokens generated over the last second or so.
	lastAt, lastTokens, tps := time.Now(), b.Stats().GenerationTokens, 0.0
	for {
		st := b.Stats()
		if now := time.Now(); now.Sub(lastAt) >= 900*time.Millisecond {
			tps = float64(st.GenerationTokens-lastTokens) / now.Sub(lastAt).Seconds()
			lastAt, lastTokens = now, st.GenerationTokens
		}
		if err := node.SetState(fleetState(httpAddr, model, st, b.Limits(), tps, srv.Draining())); err != nil {
			log.Warn("publishing the fleet state", "error", err)
		}
		select {
		case <-stop:
			return
		case model.Hash = <-hashed:
			hashed = nil
		case <-t.C:
		}
	}
}

// warmUp runs two one-token requests before the node takes traffic: the
// first pages the weights in, the second gives the wait estimate, which
// peers forward on, a time to first token at idle.
func warmUp(b *batcher.Batcher, tok *tokenizer.Tokenizer, log *slog.Logger) {
	prompt := tok.Encode(strings.Repeat("Once upon a time, ", 4), true, false)
	prompt = prompt[:min(len(prompt), b.Limits().Context/2)]
	for range 2 {
		st, err := b.Submit(context.Background(), batcher.Request{Prompt: prompt, MaxTokens: 1, N: 1})
		if err != nil {
			log.Warn("warm-up", "error", err)
			return
		}
		for {
			ev, ok := st.Next(context.Background())
			if !ok {
				break
			}
			if ev.Err != nil {
				log.Warn("warm-up", "error", ev.Err)
				return
			}
		}
	}
	log.Debug("warmed up", "idle_ttft", b.Stats().IdleTTFT)
}
