package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"

	"github.com/spf13/cobra"

	"github.com/godwit-ai/godwit/bench"
	"github.com/godwit-ai/godwit/engine/constrain"
	"github.com/godwit-ai/godwit/kernels"
)

func benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure godwit's speed",
	}
	cmd.AddCommand(benchLocalCmd(), benchServeCmd())
	return cmd
}

func benchLocalCmd() *cobra.Command {
	var (
		modelPath  string
		threads    int
		device     deviceFlag
		cfg        bench.LocalConfig
		jsonPath   string
		profile    string
		schemaPath string
		order      string
		kv         kvFlags
	)
	cmd := &cobra.Command{
		Use:   "local [-m FILE] [-p 512] [-n 128] [-b 1,4,16,64] [--reps 5] [--json FILE] [--json-schema FILE]",
		Short: "Time prompt processing and generation in-process, like llama-bench",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var o kernels.Order
			switch order {
			case "batch-invariant":
				o = kernels.OrderBatchInvariant
			case "llama":
				o = kernels.OrderLlama
			default:
				return fmt.Errorf("--order %q: want batch-invariant or llama", order)
			}
			if schemaPath != "" {
				var err error
				if cfg.Format, err = os.ReadFile(schemaPath); err != nil {
					return fmt.Errorf("--json-schema: %w", err)
				}
				// Refused before the model loads, not after the other
				// tests have run.
				if _, err := constrain.CompileSchema(cfg.Format); err != nil {
					return fmt.Errorf("--json-schema %s: %w", schemaPath, err)
				}
			}
			if err := device.choose(probeGPU); err != nil {
				return err
			}
			l, err := load(modelPath, threads, o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer l.close()
			cfg.Tok = l.tok
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			sys := bench.Describe(l.path, l.model, fmt.Sprintf("cpu/%s", l.backend.Variant()), l.backend.Threads(), o)
			sys.ReadGBps = bench.ReadBandwidth(l.backend, l.model)
			// As in llama-bench, a length of 0 skips that kind of test.
			cfg.Prompts = slices.DeleteFunc(cfg.Prompts, func(n int) bool { return n == 0 })
			cfg.Gens = slices.DeleteFunc(cfg.Gens, func(n int) bool { return n == 0 })
			if profile != "" {
				f, err := os.Create(profile)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			if len(cfg.Batches) > 0 || o == kernels.OrderBatchInvariant || schemaPath != "" {
				if cfg.Pool, err = kv.pool(l.eng); err != nil {
					return err
				}
			}
			results, err := bench.RunLocal(ctx, l.eng, cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			// Again after the tests, which may have run at a better time.
			sys.ReadGBps = max(sys.ReadGBps, bench.ReadBandwidth(l.backend, l.model))
			bench.SetShares(results, sys.ReadGBps)
			bench.WriteTable(cmd.OutOrStdout(), sys, results)
			if jsonPath == "" {
				return nil
			}
			b, err := json.MarshalIndent(bench.Report{System: sys, Results: results}, "", "  ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
				return fmt.Errorf("--json: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	device.register(f)
	f.StringVarP(&modelPath, "model", "m", "", "GGUF model file")
	f.IntVarP(&threads, "threads", "t", 0, "threads to compute on (0: all CPUs)")
	f.IntSliceVarP(&cfg.Prompts, "n-prompt", "p", []int{512}, "prompt lengths to time, comma-separated (0: none)")
	f.IntSliceVarP(&cfg.Gens, "n-gen", "n", []int{128}, "generation lengths to time, comma-separated (0: none)")
	f.IntSliceVarP(&cfg.Batches, "batch", "b", nil,
		"decode this many sequences together in each generation test, comma-separated; reports aggregate tokens/s")
	f.IntVarP(&cfg.Reps, "reps", "r", 5, "repetitions of each test")
	f.StringVar(&jsonPath, "json", "", "also write every sample to this JSON file")
	f.StringVar(&schemaPath, "json-schema", "",
		"also run each generation test through the batcher with sampling, free and held to this JSON schema, and report the constrained decode t/s, its ratio to the free one and the first token's extra latency")
	f.StringVar(&profile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	f.StringVar(&order, "order", "batch-invariant",
		"summation order: batch-invariant (the serving path: engine steps on a paged KV cache) or llama (llama.cpp's, as llama-bench measures it)")
	kv.register(f)
	return cmd
}
