package main

import (
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// demoModel is stories260K, a real 260K-parameter llama trained on
// TinyStories (MIT; origin and licence in demo/): the model served when none
// is named, so that a first run tells a little story rather than noise.
//
//go:embed demo/stories260K.gguf
var demoModel []byte

// demoFile is the demo model's file name in the models folder;
// oldDemoFile, the random-weight demo of earlier versions, is passed over
// too.
const (
	demoFile    = "stories260K.gguf"
	oldDemoFile = "godwit-demo.gguf"
)

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
		if b := filepath.Base(m); b != demoFile && b != oldDemoFile {
			return m, nil
		}
	}
	demo := filepath.Join(dir, demoFile)
	if _, err := os.Stat(demo); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("create %s for the demo model: %w", dir, err)
		}
		if err := writeDemo(demo); err != nil {
			return "", fmt.Errorf("write the demo model %s: %w", demo, err)
		}
	}
	fmt.Fprintf(log, "godwit: no model given, so using the demo model %s: stories260K, a 260K-parameter llama that tells tiny stories.\n"+
		"godwit: serve a real model with -m FILE.gguf (llama, qwen2, qwen3), or put .gguf files in %s (or $GODWIT_MODELS).\n", demo, dir)
	return demo, nil
}

// writeDemo writes the embedded demo model, atomically so a concurrent run
// never sees half a file; each writer has a file of its own until the rename,
// so nodes started together (README's fleet) do not trip over each other.
func writeDemo(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".demo-*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(demoModel)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
