package server

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// readmeCurls returns the curl commands of the README's "Talk to it with
// curl" section, continuation lines (and a quoted body's lines) joined.
func readmeCurls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Talk to it with curl")
	if !ok {
		t.Fatal(`README.md has no "## Talk to it with curl" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var cmds []string
	inCode, cur := false, ""
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inCode = !inCode
		case inCode && cur != "":
			cur += "\n" + line
		case inCode && strings.HasPrefix(line, "curl "):
			cur = line
		default:
			continue
		}
		if cur != "" && !strings.HasSuffix(cur, "\\") && strings.Count(cur, "'")%2 == 0 {
			cmds = append(cmds, cur)
			cur = ""
		}
	}
	return cmds
}

// TestReadmeCurl runs the README's curl examples against a server.
func TestReadmeCurl(t *testing.T) {
	need(t, "curl", "the README's examples use it")
	need(t, "sh", "the README's examples are shell commands")
	cmds := readmeCurls(t)
	if len(cmds) < 5 {
		t.Fatalf("only %d curl examples found in the README", len(cmds))
	}
	r := startRig(t, rigOptions{})
	for _, c := range cmds {
		if !strings.Contains(c, "http://127.0.0.1:8080/") {
			t.Fatalf("example does not talk to http://127.0.0.1:8080: %s", c)
		}
		run := strings.ReplaceAll(c, "http://127.0.0.1:8080", r.url)
		out, err := exec.Command("sh", "-c", "set -e; "+run).CombinedOutput()
		if err != nil || len(out) == 0 || strings.Contains(string(out), `"error"`) {
			t.Errorf("%s\n%v: %s", c, err, out)
			continue
		}
		if strings.Contains(c, `"stream": true`) && !strings.HasSuffix(strings.TrimSpace(string(out)), "data: [DONE]") {
			t.Errorf("%s: the stream did not end with data: [DONE]:\n%s", c, out)
		}
	}
}
