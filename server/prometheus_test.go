package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrometheusScrape: a real Prometheus scrapes the server, and after
// some traffic the PromQL query routers use for time to first token
// returns a value.
func TestPrometheusScrape(t *testing.T) {
	prom := need(t, "prometheus", "Debian's prometheus package")
	r := startRig(t, rigOptions{})
	dir := t.TempDir()
	target := strings.TrimPrefix(r.url, "http://")
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: godwit\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})

	// Traffic while Prometheus scrapes, until the query has a value.
	query := `histogram_quantile(0.9, rate(vllm:time_to_first_token_seconds_bucket[1m]))`
	deadline := time.Now().Add(45 * time.Second)
	for {
		r.post("/v1/completions", map[string]any{"prompt": "Once upon a time", "max_tokens": 8, "ignore_eos": true})
		v, err := promQuery(addr, query)
		if err == nil && v != "" && v != "NaN" {
			t.Logf("%s = %s", query, v)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no value for %s (last: %q, %v)\nprometheus log:\n%s", query, v, err, logs.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The target is up and the gauges routers read are there.
	for _, q := range []string{`up{job="godwit"}`, `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`} {
		if v, err := promQuery(addr, q); err != nil || v == "" {
			t.Errorf("%s: %q %v", q, v, err)
		}
	}
}

// promQuery runs an instant query and returns the first sample's value.
func promQuery(addr, q string) (string, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var res struct {
		Status string
		Data   struct {
			Result []struct {
				Value []any
			}
		}
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return "", fmt.Errorf("%v: %s", err, b)
	}
	if res.Status != "success" {
		return "", fmt.Errorf("%s", b)
	}
	if len(res.Data.Result) == 0 || len(res.Data.Result[0].Value) < 2 {
		return "", nil
	}
	return fmt.Sprint(res.Data.Result[0].Value[1]), nil
}
