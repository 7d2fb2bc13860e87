package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/internal/shared"
)

// godwit runs the command in-process and returns stdout and stderr.
func godwit(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := rootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func mustGodwit(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := godwit(t, args...)
	if err != nil {
		t.Fatalf("godwit %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

const goldenFromBOS = "403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337"

func TestRunGreedyIDs(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	out := mustGodwit(t, "run", "-m", stories, "-p", "", "--temp", "0", "-n", "20", "--ids", "--ignore-eos")
	if got := strings.Join(strings.Fields(out), " "); got != goldenFromBOS {
		t.Fatalf("ids %q\nwant %q", got, goldenFromBOS)
	}
}

func TestRunText(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	out := mustGodwit(t, "run", "-m", stories, "-p", "Once upon a time", "--temp", "0", "-n", "16")
	if !strings.HasPrefix(out, ", there was a little girl named Lily.") {
		t.Fatalf("text %q", out)
	}
	// Sampling with a seed is reproducible.
	a := mustGodwit(t, "run", "-m", stories, "-p", "Once", "--seed", "7", "-n", "24")
	b := mustGodwit(t, "run", "-m", stories, "-p", "Once", "--seed", "7", "-n", "24")
	if a != b {
		t.Fatalf("seeded runs differ:\n%q\n%q", a, b)
	}
}

func TestEnvFlags(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	t.Setenv("GODWIT_MODEL", stories)
	t.Setenv("GODWIT_N_PREDICT", "5")
	t.Setenv("GODWIT_TEMP", "0")
	out := mustGodwit(t, "run", "-p", "", "--ids")
	if got := strings.Join(strings.Fields(out), " "); got != goldenFromBOS[:len("403 407 261 378 432")] {
		t.Fatalf("ids %q", got)
	}
	t.Setenv("GODWIT_N_PREDICT", "many")
	if _, _, err := godwit(t, "run", "-p", "x"); err == nil || !strings.Contains(err.Error(), "GODWIT_N_PREDICT") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestInspectTokenize(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	out := mustGodwit(t, "inspect", stories)
	for _, want := range []string{"general.architecture", `"llama"`, "token_embd.weight", "[64 512]", "131072"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q", want)
		}
	}
	if out := mustGodwit(t, "tokenize", "-m", stories, "Once upon a time"); strings.TrimSpace(out) != "1 403 407 261 378" {
		t.Errorf("tokenize: %q", out)
	}
	if out := mustGodwit(t, "tokenize", "-m", stories, "--no-bos", "--pieces", "Once"); !strings.Contains(out, "403\t\" Once\"") {
		t.Errorf("tokenize --pieces: %q", out)
	}
	if out := mustGodwit(t, "detokenize", "-m", stories, "403", "407,261"); strings.TrimSpace(out) != "Once upon a" {
		t.Errorf("detokenize: %q", out)
	}
	if _, _, err := godwit(t, "detokenize", "-m", stories, "9999"); err == nil {
		t.Error("detokenize of an id outside the vocabulary: no error")
	}
	if _, _, err := godwit(t, "inspect", shared.Path(t, "models/legacy-v1-stories260K.gguf")); err == nil || !strings.Contains(err.Error(), "version 1") {
		t.Errorf("inspect of a v1 file: %v", err)
	}
}

func TestGenModel(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	dir := t.TempDir()
	for _, c := range []struct{ arch, typ string }{{"llama", "Q4_K"}, {"qwen2", "Q8_0"}, {"qwen3", "F16"}} {
		out := filepath.Join(dir, c.arch+".gguf")
		mustGodwit(t, "gen-model", "--arch", c.arch, "--dim", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2",
			"--ffn", "512", "--vocab-from", stories, "--type", c.typ, "-o", out)
		info := mustGodwit(t, "inspect", out)
		if !strings.Contains(info, `"`+c.arch+`"`) || !regexp.MustCompile(`blk\.1\.ffn_down\.weight\s+`+c.typ+`\s`).MatchString(info) {
			t.Errorf("%s: inspect:\n%s", c.arch, info)
		}
		ids := strings.Fields(mustGodwit(t, "run", "-m", out, "-p", "Once upon a time", "-n", "4", "--ids", "--ignore-eos"))
		if len(ids) != 4 {
			t.Errorf("%s: generated %v", c.arch, ids)
		}
	}
	_, _, err := godwit(t, "gen-model", "--dim", "64", "--type", "Q4_K", "-o", filepath.Join(dir, "bad.gguf"))
	if err == nil || !strings.Contains(err.Error(), "multiple of 256") {
		t.Errorf("K-quant of a 64-wide model: %v", err)
	}
}

func TestDefaultModel(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GODWIT_MODELS", dir)
	out, stderr, err := godwit(t, "run", "-p", "hello", "-n", "8", "--ids", "--ignore-eos")
	if err != nil {
		t.Fatal(err, stderr)
	}
	if !strings.Contains(stderr, "output is noise") || !strings.Contains(stderr, "-m FILE") {
		t.Errorf("no demo notice: %q", stderr)
	}
	if len(strings.Fields(out)) != 8 {
		t.Errorf("demo output %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "godwit-demo.gguf")); err != nil {
		t.Fatal(err)
	}
	// A real model in the folder wins over the demo model.
	stories, err := os.ReadFile(shared.Path(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a-stories.gguf"), stories, 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err = godwit(t, "run", "-p", "", "--temp", "0", "-n", "5", "--ids", "--ignore-eos")
	if err != nil || strings.Contains(stderr, "noise") || strings.Join(strings.Fields(out), " ") != "403 407 261 378 432" {
		t.Errorf("with a real model present: %v %q %q", err, out, stderr)
	}
}

func TestVersion(t *testing.T) {
	if out := mustGodwit(t, "version"); !strings.HasPrefix(out, "godwit ") {
		t.Errorf("version: %q", out)
	}
}

// TestModelNotARegularFile: a FIFO as the model path is refused at once by
// every command that loads a model, where opening it blocked forever.
func TestModelNotARegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "model.gguf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	for _, args := range [][]string{
		{"inspect", fifo},
		{"run", "-m", fifo, "-p", "Once"},
		{"serve", "-m", fifo, "--port", "0"},
	} {
		done := make(chan error, 1)
		go func() {
			_, _, err := godwit(t, args...)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("godwit %s: %v, want a refusal of a file that is not regular", strings.Join(args, " "), err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("godwit %s blocked", strings.Join(args, " "))
		}
	}
}
