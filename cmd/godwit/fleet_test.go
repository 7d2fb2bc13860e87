package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
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
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got clusterList
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
		if alive["a"] == a.url+" tiny" && alive["b"] == b.url+" stories260K" {
			t.Logf("/v1/cluster on a: %+v", got.Members)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s /v1/cluster on a lists %+v", got.Members)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fleetNamespace(t, a, b)
}

// fleetNamespace: a serves "tiny", b serves "stories260K" (the same file
// under two names). A request to a for stories260K is answered, via b, with
// what b answers itself, streamed or not; /v1/models on a lists both
// models and where they run; a model no node serves is a 404.
func fleetNamespace(t *testing.T, a, b *serveProcess) {
	req := `{"model":"stories260K","prompt":"Once upon a time","max_tokens":24,"temperature":0}`
	direct := postJSON(t, b.url+"/v1/completions", req)
	via := postJSON(t, a.url+"/v1/completions", req)
	if direct.code != 200 || via.code != 200 {
		t.Fatalf("b: %d %s; a: %d %s", direct.code, direct.body, via.code, via.body)
	}
	if d, v := completionText(t, direct.body), completionText(t, via.body); d != v || d == "" {
		t.Fatalf("via a: %q, from b: %q", v, d)
	}
	stream := `{"model":"stories260K","prompt":"Once upon a time","max_tokens":24,"temperature":0,"stream":true}`
	resp := postJSON(t, a.url+"/v1/completions", stream)
	if resp.code != 200 || !strings.Contains(resp.body, "data: [DONE]") || strings.Contains(resp.body, ": tok") {
		t.Fatalf("streamed via a: %d %s", resp.code, resp.body)
	}
	var text strings.Builder
	for line := range strings.SplitSeq(resp.body, "\n") {
		if rest, ok := strings.CutPrefix(line, "data: {"); ok {
			var chunk struct{ Choices []struct{ Text string } }
			if err := json.Unmarshal([]byte("{"+rest), &chunk); err != nil {
				t.Fatal(err)
			}
			for _, c := range chunk.Choices {
				text.WriteString(c.Text)
			}
		}
	}
	if want := completionText(t, direct.body); text.String() != want {
		t.Fatalf("streamed via a: %q, want %q", text.String(), want)
	}
	models := getJSON(t, a.url+"/v1/models")
	if !strings.Contains(models, `"id":"tiny"`) || !strings.Contains(models, `"id":"stories260K"`) || !strings.Contains(models, `"nodes":["b"]`) {
		t.Fatalf("/v1/models on a: %s", models)
	}
	if r := postJSON(t, a.url+"/v1/completions", `{"model":"nowhere","prompt":"x"}`); r.code != 404 || !strings.Contains(r.body, "model_not_found") {
		t.Fatalf("a model no node serves: %d %s", r.code, r.body)
	}
}

type httpAnswer struct {
	code int
	body string
}

func postJSON(t *testing.T, url, body string) httpAnswer {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpAnswer{resp.StatusCode, string(b)}
}

func getJSON(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func completionText(t *testing.T, body string) string {
	t.Helper()
	var v struct{ Choices []struct{ Text string } }
	if err := json.Unmarshal([]byte(body), &v); err != nil || len(v.Choices) != 1 {
		t.Fatalf("not a completion: %s", body)
	}
	return v.Choices[0].Text
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files, and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "godwit test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = dir+"/cert.pem", dir+"/key.pem"
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestServeFleetTLS: nodes that serve HTTPS forward to each other over
// HTTPS; a request to a for the model only b serves is answered.
func TestServeFleetTLS(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	certFile, keyFile, pool := selfSigned(t)
	if _, _, err := godwit(t, "serve", "-m", stories, "--port", "0", "--tls-cert", certFile); err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Fatalf("--tls-cert alone: %v", err)
	}
	gossipA := freeAddr(t)
	args := []string{"-m", stories, "--port", "0", "-t", "1", "--kv-cache-mem", "8MiB", "--insecure-cluster", "--tls-cert", certFile, "--tls-key", keyFile}
	a := startServe(t, nil, append(args, "--cluster-bind", gossipA, "--node-name", "a", "--served-model-name", "tiny")...)
	b := startServe(t, nil, append(args, "--cluster-bind", freeAddr(t), "--node-name", "b", "--join", gossipA)...)
	if !strings.HasPrefix(a.url, "https://") {
		t.Fatalf("a listens at %s", a.url)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	body := `{"model":"stories260K","prompt":"Once upon a time","max_tokens":8,"temperature":0}`
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Post(a.url+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			if !strings.Contains(string(got), `"text"`) {
				t.Fatalf("via a over TLS: %s", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s, a answers %d %s", resp.StatusCode, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := client.Get(a.url + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list clusterList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Members {
		if m.Name == "b" && m.HTTP != b.url {
			t.Fatalf("a sees b at %s; b serves at %s", m.HTTP, b.url)
		}
	}
}

// waitMembers waits until node sees every name alive with a model.
func waitMembers(t *testing.T, node *serveProcess, names ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got clusterList
		resp, err := http.Get(node.url + "/v1/cluster")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		alive := 0
		for _, m := range got.Members {
			if m.Status == "alive" && len(m.Models) == 1 && m.Models[0].Hash != "" && slices.Contains(names, m.Name) {
				alive++
			}
		}
		if err == nil && alive == len(names) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s %s sees %+v", node.url, got.Members)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sseText reads a completions stream to its end: the text, whether it
// ended with [DONE], and any error event.
func sseText(r io.Reader) (text string, done bool, errEvent string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var b strings.Builder
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		switch {
		case !ok:
		case data == "[DONE]":
			done = true
		case strings.HasPrefix(data, `{"error"`):
			errEvent = data
		default:
			var chunk struct{ Choices []struct{ Text string } }
			if json.Unmarshal([]byte(data), &chunk) == nil {
				for _, c := range chunk.Choices {
					b.WriteString(c.Text)
				}
			}
		}
	}
	return b.String(), done, errEvent
}

// TestFleetKill: a forwards streams for stories260K, which only b and c
// serve. b is killed with SIGKILL while streams run on it: every client's
// stream completes with no error event and the text c gives uninterrupted,
// greedy and seeded, a resumed each stream on c, and new requests still
// succeed (b avoided, then dead).
func TestFleetKill(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	gossipA := freeAddr(t)
	args := []string{"-m", stories, "--port", "0", "-t", "1", "--kv-cache-mem", "16MiB", "--insecure-cluster"}
	a := startServe(t, nil, append(args, "--cluster-bind", gossipA, "--node-name", "a", "--served-model-name", "front")...)
	b := startServe(t, nil, append(args, "--cluster-bind", freeAddr(t), "--node-name", "b", "--join", gossipA)...)
	c := startServe(t, nil, append(args, "--cluster-bind", freeAddr(t), "--node-name", "c", "--join", gossipA)...)
	waitMembers(t, a, "a", "b", "c")

	request := func(i int) string {
		sampling := `"temperature":0`
		if i%2 == 1 {
			sampling = fmt.Sprintf(`"temperature":0.9,"seed":%d`, i)
		}
		return fmt.Sprintf(`{"model":"stories260K","prompt":"Once upon a time %d","max_tokens":250,"ignore_eos":true,"stream":true,%s}`, i, sampling)
	}
	onB := func() float64 { return promMetric(t, b.url, `vllm:num_requests_running{model_name="stories260K"}`) }
	// Open streams through a until three run on b (a picks b or c at
	// random), reading each's first events.
	type stream struct {
		i    int
		body io.ReadCloser
	}
	var streams []stream
	for i := 0; onB() < 3 && i < 24; i++ {
		resp, err := http.Post(a.url+"/v1/completions", "application/json", strings.NewReader(request(i)))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream %d: %v %v", i, resp, err)
		}
		streams = append(streams, stream{i, resp.Body})
	}
	running := onB()
	if running < 3 {
		t.Fatalf("after %d streams, %v on b", len(streams), running)
	}
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		i              int
		text, errEvent string
		done           bool
	}
	results := make(chan result, len(streams))
	for _, s := range streams {
		go func() {
			defer s.body.Close()
			text, done, e := sseText(s.body)
			results <- result{i: s.i, text: text, errEvent: e, done: done}
		}()
	}
	got := map[int]result{}
	for range streams {
		r := <-results
		got[r.i] = r
	}
	for _, s := range streams {
		r := got[s.i]
		resp, err := http.Post(c.url+"/v1/completions", "application/json", strings.NewReader(request(s.i)))
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ := sseText(resp.Body)
		resp.Body.Close()
		if r.errEvent != "" || !r.done || r.text != want {
			t.Fatalf("stream %d: error %q, done %v,\n got %q\nwant %q", s.i, r.errEvent, r.done, r.text, want)
		}
	}
	resumed := promMetric(t, a.url, "godwit:stream_resumes_total")
	t.Logf("%d streams, %v of them on b when it was killed, %v resumed", len(streams), running, resumed)
	if resumed < running {
		t.Fatalf("%v streams resumed, want at least the 3 on b", resumed)
	}
	// New requests are answered: b is avoided, then declared dead.
	for i := range 4 {
		if r := postJSON(t, a.url+"/v1/completions", `{"model":"stories260K","prompt":"Once","max_tokens":4}`); r.code != 200 {
			t.Fatalf("request %d after the kill: %d %s", i, r.code, r.body)
		}
	}
}

// promMetric reads one sample of url's /metrics (0 when absent).
func promMetric(t *testing.T, url, name string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(getJSON(t, url+"/metrics"), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return 0
}
