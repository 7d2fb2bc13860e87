package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/godwit-ai/godwit/internal/synth"
	"github.com/godwit-ai/godwit/models/gguf"
)

// demoName is the file and general.name of the demo model.
const demoName = "godwit-demo"

// modelsDir is where godwit looks for a model when none is named:
// $GODWIT_MODELS, else ~/.cache/godwit/models.
func modelsDir() (string, error) {
	if d := os.Getenv("GODWIT_MODELS"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no model given (-m FILE), GODWIT_MODELS is unset and the home folder is unknown: %w", err)
	}
	return filepath.Join(home, ".cache", "godwit", "models"), nil
}

// resolveModel returns the model file to load: path when given, else the
// first .gguf file in the models folder, else a demo model written there.
func resolveModel(path string, log io.Writer) (string, error) {
	if path != "" {
		return path, nil
	}
	dir, err := modelsDir()
	if err != nil {
		return "", err
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	sort.Strings(matches)
	for _, m := range matches {
		if filepath.Base(m) != demoName+".gguf" {
			return m, nil
		}
	}
	demo := filepath.Join(dir, demoName+".gguf")
	if _, err := os.Stat(demo); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("create %s for the demo model: %w", dir, err)
		}
		if err := writeDemo(demo); err != nil {
			return "", fmt.Errorf("write the demo model %s: %w", demo, err)
		}
	}
	fmt.Fprintf(log, "godwit: no model given, so using the demo model %s: its weights are random and its output is noise.\n"+
		"godwit: point it at a real model with -m FILE.gguf, or put .gguf files in %s (or $GODWIT_MODELS).\n", demo, dir)
	return demo, nil
}

// writeDemo writes a small random llama with a byte-level vocabulary,
// atomically so a concurrent run never sees half a file.
func writeDemo(path string) error {
	tmp := path + ".tmp"
	err := synth.Write(tmp, synth.Spec{
		Arch: "llama", Name: demoName, Dim: 128, Layers: 4, Heads: 4, KVHeads: 2, FFN: 384,
		Context: 2048, Type: gguf.Q8_0, Seed: 1,
	}, synth.ByteVocab())
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
