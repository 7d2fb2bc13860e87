package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/godwit-ai/godwit/engine/sample"
	"github.com/godwit-ai/godwit/kernels"
)

func runCmd() *cobra.Command {
	var (
		modelPath string
		threads   int
		device    deviceFlag
		prompt    string
		n         int
		ids       bool
		ignoreEOS bool
		special   bool
		p         sample.Params
		seed      int64
		ctxSize   int
	)
	cmd := &cobra.Command{
		Use:   "run [-m FILE] -p PROMPT",
		Short: "Generate text from a prompt and stream it to stdout",
		Long: "Generate text from a prompt and stream it to stdout (the prompt itself is not echoed).\n" +
			"With no -m, godwit uses the first model in $GODWIT_MODELS or ~/.cache/godwit/models.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 0 {
				return fmt.Errorf("--n-predict must be at least 0, got %d", n)
			}
			if seed >= 0 {
				p.Seed, p.HasSeed = uint64(seed), true
			}
			if err := device.choose(probeGPU); err != nil {
				return err
			}
			// run mirrors llama-cli, so it sums as llama.cpp does.
			l, err := load(modelPath, threads, kernels.OrderLlama, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer l.close()
			s, err := sample.New(p, l.model.Vocab)
			if err != nil {
				return err
			}
			promptIDs := l.tok.Encode(prompt, true, false)
			if len(promptIDs) == 0 {
				return fmt.Errorf("the prompt is empty and the model adds no BOS token: give a prompt with -p")
			}
			limit := l.model.Context
			if ctxSize > 0 {
				limit = ctxSize
			}
			l.eng.UseContext(limit)
			if len(promptIDs) >= limit {
				return fmt.Errorf("the prompt is %d tokens, but the context holds %d: shorten it or raise --ctx-size", len(promptIDs), limit)
			}
			n = min(n, limit-len(promptIDs))

			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			dec := l.tok.NewStreamDecoder()
			emit := func(id int32) bool {
				if !ignoreEOS && l.tok.IsEOG(id) {
					return false
				}
				switch {
				case ids:
					fmt.Fprintln(out, id)
				case special || !l.tok.IsControl(id):
					out.WriteString(dec.Add(id))
				}
				return out.Flush() == nil
			}
			_, err = l.eng.Generate(ctx, promptIDs, n, l.eng.NewCache(limit), s, emit)
			if !ids {
				out.WriteString(dec.Flush())
				out.WriteString("\n")
			}
			if err == context.Canceled {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	device.register(f)
	f.StringVarP(&modelPath, "model", "m", "", "GGUF model file")
	f.IntVarP(&threads, "threads", "t", 0, "threads to compute on (0: all CPUs)")
	f.StringVarP(&prompt, "prompt", "p", "", "prompt text")
	f.IntVarP(&n, "n-predict", "n", 128, "number of tokens to generate")
	f.BoolVar(&ids, "ids", false, "print the generated token ids, one per line, instead of text")
	f.BoolVar(&ignoreEOS, "ignore-eos", false, "keep generating past end-of-sequence tokens")
	f.BoolVar(&special, "special", false, "print control tokens (</s>, <|im_end|>…) as text too")
	f.IntVar(&ctxSize, "ctx-size", 0, "context length in tokens (0: the model's)")
	f.Float32Var(&p.Temperature, "temp", 0.8, "temperature (0: greedy)")
	f.IntVar(&p.TopK, "top-k", 40, "keep the k most likely tokens (0: off)")
	f.Float32Var(&p.TopP, "top-p", 0.95, "keep the smallest set of tokens with this much probability (1: off)")
	f.Float32Var(&p.MinP, "min-p", 0.05, "drop tokens less likely than this times the most likely (0: off)")
	f.Float32Var(&p.RepetitionPenalty, "repeat-penalty", 1, "divide the logits of recent tokens by this (1: off)")
	f.IntVar(&p.PenaltyLastN, "repeat-last-n", 64, "how many recent tokens the penalties consider (0: all)")
	f.Float32Var(&p.PresencePenalty, "presence-penalty", 0, "subtract this from the logits of tokens already seen")
	f.Float32Var(&p.FrequencyPenalty, "frequency-penalty", 0, "subtract this times the count of each token already seen")
	f.Int64Var(&seed, "seed", -1, "random seed (-1: random)")
	f.Var(newLogitBias(&p.LogitBias), "logit-bias", "add a bias to a token's logit, as ID=BIAS (repeatable; BIAS may be -inf)")
	return cmd
}
