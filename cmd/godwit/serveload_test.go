package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/internal/shared"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeInterruptedWhileLoading: SIGTERM or SIGINT while the model is
// loading (here a load that never ends, as a read from a FIFO or a stalled
// disk would) ends serve within a second with an error that says so, and
// the port is closed; until then /health answers 503.
func TestServeInterruptedWhileLoading(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			started, release := make(chan struct{}), make(chan struct{})
			t.Cleanup(func() { close(release) })
			stuck := func(string, int, io.Writer, *slog.Logger) (*loaded, error) {
				close(started)
				<-release
				return nil, errors.New("released at the test's end")
			}
			cmd := serveCmd(stuck)
			stderr := &syncBuffer{}
			cmd.SetErr(stderr)
			cmd.SetOut(io.Discard)
			cmd.SetArgs([]string{"-m", "never-read.gguf", "--port", "0"})
			errc := make(chan error, 1)
			go func() { errc <- cmd.Execute() }()
			select {
			case <-started: // the signal handler is in place before loading starts
			case err := <-errc:
				t.Fatalf("serve ended before loading: %v\n%s", err, stderr)
			}
			m := regexp.MustCompile(`addr=http://(\S+)`).FindStringSubmatch(stderr.String())
			if m == nil {
				t.Fatalf("no address logged:\n%s", stderr)
			}
			resp, err := http.Get("http://" + m[1] + "/health")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("/health while loading: %d, want 503", resp.StatusCode)
			}

			start := time.Now()
			if err := syscall.Kill(os.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errc:
				if took := time.Since(start); took > time.Second {
					t.Errorf("serve took %v to end after %v", took, sig)
				}
				if err == nil || !strings.Contains(err.Error(), "interrupted while loading") {
					t.Fatalf("serve ended with %v, want an interruption error", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("serve still running 5 s after %v:\n%s", sig, stderr)
			}
			if c, err := net.DialTimeout("tcp", m[1], time.Second); err == nil {
				c.Close()
				t.Fatal("the port still accepts connections after serve ended")
			}
		})
	}
}

// TestServeConnFlags: the connection limits come from flags or GODWIT_*
// variables and reach the server (a silent connection is cut after
// GODWIT_HEADER_TIMEOUT); values that would turn a limit off are refused
// before anything starts.
func TestServeConnFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--header-timeout", "0"}, {"--body-timeout", "-1s"}, {"--idle-timeout", "0s"},
		{"--max-conns", "0"}, {"--max-conns-per-ip", "-1"},
	} {
		_, _, err := godwit(t, append([]string{"serve", "-m", "never-read.gguf"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("serve %s: %v, want an error naming %s", strings.Join(args, " "), err, args[0])
		}
	}

	stories := shared.Path(t, "models/stories260K.gguf")
	p := startServe(t, []string{"GODWIT_HEADER_TIMEOUT=300ms", "GODWIT_MAX_CONNS=64"},
		"-m", stories, "--port", "0", "-t", "1", "--kv-cache-mem", "8MiB")
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetReadDeadline(start.Add(5 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("a silent connection: %v after %v, want it closed after 300ms", err, time.Since(start))
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 408 ") {
		t.Fatalf("a silent connection got %q, want a 408", b)
	}
}
