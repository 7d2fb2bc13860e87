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
	// -m as the other commands take it.
	if byFlag := mustGodwit(t, "inspect", "-m", stories); byFlag != out {
		t.Errorf("inspect -m differs from inspect FILE")
	}
	for _, args := range [][]string{{"inspect"}, {"inspect", "-m", stories, stories}} {
		if _, _, err := godwit(t, args...); err == nil {
			t.Errorf("godwit %v: no error", args)
		}
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

// TestDefaultModel: with no model named and none in the models folder,
// godwit writes the embedded demo, stories260K, and says so; it tells its
// story (llama.cpp's greedy ids from BOS). A model in the folder wins.
func TestDefaultModel(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GODWIT_MODELS", dir)
	out, stderr, err := godwit(t, "run", "-p", "", "--temp", "0", "-n", "5", "--ids", "--ignore-eos")
	if err != nil {
		t.Fatal(err, stderr)
	}
	if !strings.Contains(stderr, "demo model") || !strings.Contains(stderr, "stories260K") || !strings.Contains(stderr, "-m FILE") {
		t.Errorf("no demo notice: %q", stderr)
	}
	if got := strings.Join(strings.Fields(out), " "); got != "403 407 261 378 432" {
		t.Errorf("the demo's greedy ids from BOS: %q, want stories260K's 403 407 261 378 432", got)
	}
	story, _, err := godwit(t, "run", "-p", "Once upon a time", "--temp", "0", "-n", "24")
	if err != nil || !strings.Contains(story, "Lily") && !strings.Contains(story, "little") {
		t.Errorf("the demo's story: %q %v", story, err)
	}
	demo, err := os.ReadFile(filepath.Join(dir, "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(shared.Path(t, "models/stories260K.gguf"))
	if err != nil || !bytes.Equal(demo, want) {
		t.Fatalf("the demo file is not ../shared's stories260K (%v)", err)
	}
	// Nodes started together each write the demo, and none fails.
	together := filepath.Join(t.TempDir(), demoFile)
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- writeDemo(together) }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatalf("a concurrent first run: %v", err)
		}
	}
	if got, err := os.ReadFile(together); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after 8 writers at once the demo file is not whole (%v)", err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(together), ".demo-*")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	// A model in the folder wins over the demo model.
	mustGodwit(t, "gen-model", "--dim", "64", "--layers", "1", "-o", filepath.Join(dir, "a-model.gguf"))
	_, stderr, err = godwit(t, "run", "-p", "hi", "-n", "2", "--ids", "--ignore-eos")
	if err != nil || strings.Contains(stderr, "demo model") {
		t.Errorf("with a model present: %v %q", err, stderr)
	}
}

func TestVersion(t *testing.T) {
	out := mustGodwit(t, "version")
	first, device, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(first, "godwit ") || !strings.HasPrefix(device, "device: ") {
		t.Errorf("version: %q", out)
	}
	if flag := mustGodwit(t, "--version"); strings.TrimSpace(flag) != first {
		t.Errorf("--version: %q, version: %q", flag, first)
	}
	// Every command's help names the environment variables.
	for _, cmd := range [][]string{{"--help"}, {"serve", "--help"}, {"tokenize", "--help"}, {"bench", "serve", "--help"}} {
		if help := mustGodwit(t, cmd...); !strings.Contains(help, "GODWIT_<FLAG>") {
			t.Errorf("godwit %s: no word of GODWIT_<FLAG>:\n%s", strings.Join(cmd, " "), help)
		}
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

// TestTokenizeVocabOnly: tokenize reads a vocabulary-only GGUF (no
// weights), and gives llama.cpp's ids for the first test strings of every
// vocabulary in ../shared/vocab (the .out files hold them without BOS).
func TestTokenizeVocabOnly(t *testing.T) {
	if got := strings.TrimSpace(mustGodwit(t, "tokenize", "-m", shared.Path(t, "vocab/ggml-vocab-llama-bpe.gguf"), "Hello world")); got != "128000 9906 1917" {
		t.Fatalf("llama-bpe, Hello world: %q, want 128000 9906 1917", got)
	}
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(shared.Path(t, "vocab/ggml-vocab-llama-bpe.gguf")), "*.gguf"))
	if len(files) < 11 {
		t.Fatalf("%d vocabularies in ../shared/vocab, want 11", len(files))
	}
	for _, f := range files {
		inp, err1 := os.ReadFile(f + ".inp")
		out, err2 := os.ReadFile(f + ".out")
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		texts := strings.Split(string(inp), "\n__ggml_vocab_test__\n")
		want := strings.Split(string(out), "\n")
		checked := 0
		for i := 0; i < len(texts) && checked < 4; i++ {
			// Flags would eat texts that start with a dash; the CLI is not
			// what those test.
			if texts[i] == "" || strings.HasPrefix(strings.TrimSpace(texts[i]), "-") {
				continue
			}
			got := strings.TrimSpace(mustGodwit(t, "tokenize", "--no-bos", "-m", f, "--", texts[i]))
			if got != strings.TrimSpace(want[i]) {
				t.Errorf("%s, %q: %q, want %q", filepath.Base(f), texts[i], got, want[i])
			}
			checked++
		}
		ids := strings.Fields(strings.TrimSpace(want[0]))
		if len(ids) > 0 {
			if _, _, err := godwit(t, "detokenize", "-m", f, ids[0]); err != nil {
				t.Errorf("%s: detokenize: %v", filepath.Base(f), err)
			}
		}
	}
}

// TestRunControlTokens: run prints control tokens (here EOS, forced by a
// bias and --ignore-eos) as text only with --special.
func TestRunControlTokens(t *testing.T) {
	stories := shared.Path(t, "models/stories260K.gguf")
	args := []string{"run", "-m", stories, "-p", "Once", "--temp", "0", "-n", "3", "--ignore-eos", "--logit-bias", "2=100"}
	if out := mustGodwit(t, args...); strings.TrimSpace(out) != "" {
		t.Errorf("three EOS tokens printed as %q, want nothing", out)
	}
	if out := mustGodwit(t, append(args, "--special")...); strings.TrimSpace(out) != "</s></s></s>" {
		t.Errorf("with --special: %q, want </s></s></s>", out)
	}
}
