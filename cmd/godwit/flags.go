package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// logitBias is a repeatable ID=BIAS flag.
type logitBias struct{ m *map[int32]float32 }

func newLogitBias(m *map[int32]float32) *logitBias { return &logitBias{m} }

func (b *logitBias) Type() string { return "ID=BIAS" }

func (b *logitBias) String() string {
	if b.m == nil || *b.m == nil {
		return ""
	}
	var parts []string
	for id, v := range *b.m {
		parts = append(parts, fmt.Sprintf("%d=%g", id, v))
	}
	return strings.Join(parts, ",")
}

func (b *logitBias) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		idStr, biasStr, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("want ID=BIAS, got %q", part)
		}
		id, err := strconv.ParseInt(strings.TrimSpace(idStr), 10, 32)
		if err != nil {
			return fmt.Errorf("token id %q: %w", idStr, err)
		}
		var bias float64
		switch strings.ToLower(strings.TrimSpace(biasStr)) {
		case "-inf":
			bias = math.Inf(-1)
		case "inf", "+inf":
			bias = math.Inf(1)
		default:
			if bias, err = strconv.ParseFloat(strings.TrimSpace(biasStr), 32); err != nil {
				return fmt.Errorf("bias %q: %w", biasStr, err)
			}
		}
		if *b.m == nil {
			*b.m = map[int32]float32{}
		}
		(*b.m)[int32(id)] = float32(bias)
	}
	return nil
}
