package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/godwit-ai/godwit/internal/synth"
	"github.com/godwit-ai/godwit/models/gguf"
)

func genModelCmd() *cobra.Command {
	var (
		s         synth.Spec
		typ       string
		vocabFrom string
		out       string
	)
	cmd := &cobra.Command{
		Use:   "gen-model --arch llama|qwen2|qwen3|phi3|gemma2|gemma3 --dim D --layers L --heads H --kv-heads K --ffn F --vocab-from FILE --type T -o OUT",
		Short: "Write a random-weight model of any shape (for benchmarks and tests)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := s.ParseType(typ); err != nil {
				return fmt.Errorf("--type: %w", err)
			}
			if out == "" {
				return fmt.Errorf("name the output file with -o")
			}
			vocab := synth.ByteVocab()
			if vocabFrom != "" {
				f, err := gguf.Open(vocabFrom)
				if err != nil {
					return fmt.Errorf("--vocab-from: %w", err)
				}
				defer f.Close()
				if vocab, err = synth.VocabFrom(f); err != nil {
					return fmt.Errorf("--vocab-from %s: %w", vocabFrom, err)
				}
			}
			if s.Name == "" {
				s.Name = fmt.Sprintf("random-%s-%s", s.Arch, typ)
			}
			if err := synth.Write(out, s, vocab); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&s.Arch, "arch", "llama", "architecture: llama, qwen2, qwen3, phi3, gemma2 or gemma3")
	f.IntVar(&s.Dim, "dim", 256, "embedding width")
	f.IntVar(&s.Layers, "layers", 2, "number of layers")
	f.IntVar(&s.Heads, "heads", 4, "attention heads")
	f.IntVar(&s.KVHeads, "kv-heads", 0, "key/value heads (0: as many as --heads)")
	f.IntVar(&s.HeadDim, "head-dim", 0, "width of a head (0: dim/heads)")
	f.IntVar(&s.FFN, "ffn", 768, "feed-forward width")
	f.IntVar(&s.Context, "ctx", 2048, "context length written to the metadata")
	f.IntVar(&s.Window, "window", 0, "gemma's sliding window in positions (0: 4096 for gemma2, 512 for gemma3)")
	f.StringVar(&typ, "type", "F32", "tensor type of the matrices: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, or the mixes Q4_K_M, Q5_K_M")
	f.StringVar(&vocabFrom, "vocab-from", "", "copy the tokenizer of this GGUF file (default: a byte-level vocabulary)")
	f.Uint64Var(&s.Seed, "seed", 1, "random seed")
	f.StringVar(&s.Name, "name", "", "general.name (default: random-ARCH-TYPE)")
	f.StringVarP(&out, "output", "o", "", "output file")
	return cmd
}
