package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/dustin/go-humanize"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/gguf"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// loaded is a model ready to generate: weights, tokenizer and engine.
type loaded struct {
	path    string
	model   *models.Model
	tok     *tokenizer.Tokenizer
	eng     *engine.Engine
	backend *cpu.Backend
}

// close releases the backend's threads and the model's mapping.
func (l *loaded) close() {
	l.backend.Close()
	l.model.Close()
}

// load resolves, opens and prepares a model to run in order o; log receives
// notices.
func load(path string, threads int, o kernels.Order, log io.Writer) (*loaded, error) {
	path, m, tok, err := open(path, log)
	if err != nil {
		return nil, err
	}
	backend := cpu.New(threads)
	eng, err := engine.New(m, backend, o)
	if err != nil {
		backend.Close()
		m.Close()
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	slog.Info("cpu backend", "threads", backend.Threads(), "kernels", backend.Variant(), "order", o,
		"repacked_weights", humanize.IBytes(uint64(eng.PreparedBytes)))
	return &loaded{path: path, model: m, tok: tok, eng: eng, backend: backend}, nil
}

// loadTokenizer opens a GGUF file for its tokenizer alone, so a
// vocabulary-only file (llama.cpp's ggml-vocab-*.gguf) will do; done closes
// it.
func loadTokenizer(path string, log io.Writer) (tok *tokenizer.Tokenizer, done func() error, err error) {
	path, err = resolveModel(path, log)
	if err != nil {
		return nil, nil, err
	}
	f, err := gguf.Open(path)
	if err != nil {
		return nil, nil, err
	}
	if tok, err = tokenizer.FromGGUF(f); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("load %s: tokenizer: %w", path, err)
	}
	return tok, f.Close, nil
}

// open resolves path (see resolveModel) and maps the model and its tokenizer.
func open(path string, log io.Writer) (string, *models.Model, *tokenizer.Tokenizer, error) {
	path, err := resolveModel(path, log)
	if err != nil {
		return "", nil, nil, err
	}
	m, err := models.Load(path)
	if err != nil {
		return "", nil, nil, err
	}
	tok, err := tokenizer.FromGGUF(m.File)
	if err != nil {
		m.Close()
		return "", nil, nil, fmt.Errorf("load %s: tokenizer: %w", path, err)
	}
	return path, m, tok, nil
}
