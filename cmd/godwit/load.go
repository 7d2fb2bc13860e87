package main

import (
	"fmt"
	"io"

	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// loaded is a model ready to generate: weights, tokenizer and engine.
type loaded struct {
	path  string
	model *models.Model
	tok   *tokenizer.Tokenizer
	eng   *engine.Engine
}

// load resolves, opens and prepares a model; log receives notices.
func load(path string, log io.Writer) (*loaded, error) {
	path, err := resolveModel(path, log)
	if err != nil {
		return nil, err
	}
	m, err := models.Load(path)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromGGUF(m.File)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("load %s: tokenizer: %w", path, err)
	}
	eng, err := engine.New(m, cpu.New())
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return &loaded{path: path, model: m, tok: tok, eng: eng}, nil
}

// loadTokenizer opens a model file for its tokenizer alone.
func loadTokenizer(path string, log io.Writer) (*tokenizer.Tokenizer, func() error, error) {
	path, err := resolveModel(path, log)
	if err != nil {
		return nil, nil, err
	}
	m, err := models.Load(path)
	if err != nil {
		return nil, nil, err
	}
	tok, err := tokenizer.FromGGUF(m.File)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("load %s: tokenizer: %w", path, err)
	}
	return tok, m.Close, nil
}
