package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestClassSteps: every regex of the pre-tokenizers that runs as a
// classStep cuts random texts as regexp2 running the regex does, and the
// shapes it takes cover the ones with a per-match cost worth avoiding.
func TestClassSteps(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pieces := []string{"a", "Z", "é", "ß", "日", "本", "1", "٣", "23", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", ".", ",", "!", "…", "。", "$", "+", "<", "`", "(", "|", "'s", "\U00010400", "\u0301", "😀", "ｱ", "\u2581", "\x00"}
	var texts [][]rune
	for _, n := range []int{1, 2, 5, 50, 3000} {
		for range 20 {
			var b strings.Builder
			for range n {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
			texts = append(texts, decodeCpts(b.String()))
		}
	}
	seen := map[string]bool{}
	classSteps := 0
	for name, p := range preTokenizers {
		for _, expr := range p.regexes {
			if seen[expr] || expr == reGPT2 || expr == reLlama3 || expr == reQwen2 {
				continue
			}
			seen[expr] = true
			step, err := newRegexStep(expr)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, expr, err)
			}
			if _, ok := step.(*classStep); !ok {
				t.Errorf("%s: %q runs on regexp2", name, expr)
				continue
			}
			classSteps++
			plain, _, err := compileRegex(expr)
			if err != nil {
				t.Fatal(err)
			}
			for i, cpts := range texts {
				// As one segment, and cut in three.
				for _, segs := range [][]int32{{int32(len(cpts))}, thirds(len(cpts))} {
					got, want := step.split(cpts, segs, nil), plain.split(cpts, segs, nil)
					if !slices.Equal(got, want) {
						t.Errorf("%s: %q: text %d (%q): %v, want %v", name, expr, i, string(cpts[:min(len(cpts), 20)]), got[:min(len(got), 10)], want[:min(len(want), 10)])
					}
				}
			}
		}
	}
	if classSteps == 0 {
		t.Error("no regex runs as a classStep")
	}
}

func thirds(n int) []int32 {
	a := n / 3
	return []int32{int32(a), int32(a), int32(n - 2*a)}
}
