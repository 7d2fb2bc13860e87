// Command testsummary runs go test -json with its arguments and prints what
// go test prints without -v (a line per package, the whole output of the
// tests that failed), then how many tests passed, failed and were skipped,
// the skips grouped by reason. Without it a package whose tests all skipped
// (no ../shared beside the repository) still reads "ok".
//
//	go run ./internal/testsummary -count=1 ./...
//
// The last line is "N passed, N failed, N skipped"; the exit status is 1
// when a test or package failed or go test itself did. $GO names the go
// command (default: go).
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

func main() {
	goCmd := cmp.Or(os.Getenv("GO"), "go")
	cmd := exec.Command(goCmd, append([]string{"test", "-json"}, os.Args[1:]...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s := newSummary(os.Stdout)
	readErr := s.read(stdout)
	waitErr := cmd.Wait()
	s.finish()
	switch {
	case readErr != nil:
		fmt.Fprintln(os.Stderr, "testsummary:", readErr)
		os.Exit(1)
	case waitErr != nil || s.failedAny():
		os.Exit(1)
	}
}

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output events name the package here
	Test       string
	Output     string
}

// outLine is a line of output and the test it belongs to ("" for the
// package).
type outLine struct{ test, text string }

// pkgState is a package's output, kept until the package ends: go test
// prints it only when the package fails.
type pkgState struct {
	lines   []outLine
	failed  map[string]bool
	ended   map[string]bool
	message map[string]string // a test's last logged message: why it skipped
}

type summary struct {
	w                       io.Writer
	pkgs                    map[string]*pkgState
	passed, failed, skipped int
	failedPkgs              int
	skips                   map[string]int // reason → tests
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, pkgs: map[string]*pkgState{}, skips: map[string]int{}}
}

func (s *summary) pkg(name string) *pkgState {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgState{failed: map[string]bool{}, ended: map[string]bool{}, message: map[string]string{}}
		s.pkgs[name] = p
	}
	return p
}

// read handles the events of r until it ends. A line that is not JSON (go
// test writes some errors to stdout as plain text) is printed as it is.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Action == "" {
			fmt.Fprintln(s.w, sc.Text())
			continue
		}
		s.handle(ev)
	}
	return sc.Err()
}

// logPrefix is what t.Log puts before a message: indentation and file:line.
var logPrefix = regexp.MustCompile(`^\s+\S+\.go:\d+: `)

func (s *summary) handle(ev event) {
	switch ev.Action {
	case "build-output":
		fmt.Fprint(s.w, ev.Output)
		return
	case "build-fail":
		s.failedPkgs++
		return
	}
	p := s.pkg(ev.Package)
	switch ev.Action {
	case "output":
		p.lines = append(p.lines, outLine{ev.Test, ev.Output})
		if ev.Test != "" {
			if m := logPrefix.FindString(ev.Output); m != "" {
				p.message[ev.Test] = strings.TrimSpace(ev.Output[len(m):])
			}
		}
	case "pass", "fail", "skip":
		if ev.Test == "" {
			s.endPackage(ev.Package, p, ev.Action == "fail")
			return
		}
		p.ended[ev.Test] = true
		switch ev.Action {
		case "pass":
			s.passed++
		case "fail":
			s.failed++
			p.failed[ev.Test] = true
		case "skip":
			s.skipped++
			s.skips[cmp.Or(p.message[ev.Test], "no reason given")]++
		}
	}
}

// endPackage prints a passed package's ok line, or a failed one's output
// but that of the tests that passed or skipped.
func (s *summary) endPackage(name string, p *pkgState, failed bool) {
	for _, l := range p.lines {
		switch {
		case failed && (l.test == "" || p.failed[l.test] || !p.ended[l.test]):
			fmt.Fprint(s.w, l.text)
		case !failed && l.test == "" && (strings.HasPrefix(l.text, "ok") || strings.HasPrefix(l.text, "?")):
			fmt.Fprint(s.w, l.text)
		}
	}
	if failed {
		s.failedPkgs++
	}
	delete(s.pkgs, name)
}

// finish prints what packages that never ended had written (a crashed
// run), the skip reasons and the counts.
func (s *summary) finish() {
	for _, name := range slices.Sorted(maps.Keys(s.pkgs)) {
		s.endPackage(name, s.pkgs[name], true)
	}
	reasons := slices.SortedFunc(maps.Keys(s.skips), func(a, b string) int {
		return cmp.Or(s.skips[b]-s.skips[a], strings.Compare(a, b))
	})
	for _, r := range reasons {
		fmt.Fprintf(s.w, "%d skipped: %s\n", s.skips[r], r)
	}
	fmt.Fprintf(s.w, "%d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
}

func (s *summary) failedAny() bool { return s.failed > 0 || s.failedPkgs > 0 }
