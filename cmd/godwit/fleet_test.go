package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/internal/shared"
)

// freeAddr is a loopback HOST:PORT free for UDP and TCP a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if pc, err := net.ListenPacket("udp", addr); err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no free port for gossip")
	return ""
}

type clusterList struct {
	Members []struct {
		Name, Status string
		HTTP         string `json:"http_addr"`
		Self         bool
		Models       []struct{ Name, Hash, Numerics string }
	}
}

// TestServeFleet: two `godwit serve` processes form a fleet (the second
// joins the first); GET /v1/cluster on the first lists both alive with
// their HTTP addresses and models (with the file's digest and the
// numerics). A fleet without a key is refused unless
// --insecure-cluster says so.
func TestServeFleet(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	if _, _, err := godwit(t, "serve", "-m", stories, "--port", "0", "--cluster-bind", "127.0.0.1:0"); err == nil ||
		!strings.Contains(err.Error(), "--cluster-key-file") {
		t.Fatalf("a fleet without a key: %v", err)
	}
	gossipA := freeAddr(t)
	args := []string{"-m", stories, "--port", "0", "-t", "1", "--kv-cache-mem", "8MiB", "--insecure-cluster"}
	a := startServe(t, nil, append(args, "--cluster-bind", gossipA, "--node-name", "a", "--served-model-name", "tiny")...)
	b := startServe(t, nil, append(args, "--cluster-bind", freeAddr(t), "--node-name", "b", "--join", gossipA)...)

	raw, err := os.ReadFile(stories)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	digest := hex.EncodeToString(sum[:])[:16]
	var got clusterList
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(a.url + "/v1/cluster")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /v1/cluster: %d %v", resp.StatusCode, err)
		}
		alive := map[string]string{}
		for _, m := range got.Members {
			if m.Status == "alive" && len(m.Models) == 1 && m.Models[0].Hash == digest && m.Models[0].Numerics == "cpu/kv-f16/batch-invariant" {
				alive[m.Name] = m.HTTP + " " + m.Models[0].Name
			}
		}
		if alive["a"] == strings.TrimPrefix(a.url, "http://")+" tiny" && alive["b"] == strings.TrimPrefix(b.url, "http://")+" stories260K" {
			t.Logf("/v1/cluster on a: %+v", got.Members)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s /v1/cluster on a lists %+v", got.Members)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
