package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/godwit-ai/godwit/bench"
)

func benchServeCmd() *cobra.Command {
	var (
		target, other   bench.Target
		concurrency     []int
		rates           []float64
		load            bench.LoadConfig
		pc              bench.PromptConfig
		datasetPath     string
		modelPath       string
		timeout         time.Duration
		ignoreEOS       bool
		jsonPath, plotP string
		noProgress      bool
		urls, compare   []string
	)
	cmd := &cobra.Command{
		Use: "serve --url URL[,URL…] [--compare URL2[,URL…]] [--concurrency 1,4,16 | --rate 0.5,1,2] [--duration 60s | --requests N]",
		Short: "Load an OpenAI-compatible server (godwit, llama-server, vLLM) and report throughput and latency; " +
			"--compare runs a second one in the same run",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(urls) == 0 {
				return fmt.Errorf("--url is required")
			}
			target.URL, target.Spread = urls[0], urls
			if len(compare) > 0 {
				other.URL, other.Spread = compare[0], compare
			}
			if cmd.Flags().Changed("requests") && !cmd.Flags().Changed("duration") {
				load.Duration = 0 // --requests alone: that many, however long they take
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			log := cmd.ErrOrStderr()
			client := &bench.Client{Timeout: timeout, IgnoreEOS: ignoreEOS,
				HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}}}
			targets := []*bench.Target{&target}
			if other.URL != "" {
				if other.APIKey == "" {
					other.APIKey = target.APIKey
				}
				targets = append(targets, &other)
			}
			for i, t := range targets {
				if t.Name == "" {
					t.Name = hostOf(t.URL)
					if len(t.Spread) > 1 {
						t.Name += fmt.Sprintf(" +%d", len(t.Spread)-1)
					}
				}
				if i == 1 && t.Name == targets[0].Name {
					t.Name += " (2)"
				}
				if t.Model == "" {
					ids, err := client.Models(ctx, t)
					if err != nil {
						return fmt.Errorf("%s: %w (or give the model's name)", t.URL, err)
					}
					if len(ids) == 0 {
						return fmt.Errorf("%s serves no model", t.URL)
					}
					t.Model = ids[0]
				}
			}
			var tok bench.Tokenizer
			switch {
			case datasetPath != "":
				f, err := os.Open(datasetPath)
				if err != nil {
					return fmt.Errorf("--dataset: %w", err)
				}
				pc.Dataset, err = bench.ReadDataset(f)
				f.Close()
				if err != nil {
					return fmt.Errorf("--dataset %s: %w", datasetPath, err)
				}
			case modelPath != "":
				t, done, err := loadTokenizer(modelPath, log)
				if err != nil {
					return err
				}
				defer done()
				tok = bench.TokenizerFunc(func(s string) []int32 { return t.Encode(s, false, false) })
			default:
				tok = bench.ServerTokenizer{Client: client, Target: targets[0]}
			}
			prompts, err := bench.NewPrompts(ctx, pc, tok)
			if err != nil {
				return err
			}
			for _, c := range concurrency {
				load.Levels = append(load.Levels, bench.Level{Concurrency: c})
			}
			for _, r := range rates {
				load.Levels = append(load.Levels, bench.Level{Rate: r})
			}
			if len(load.Levels) == 0 {
				load.Levels = []bench.Level{{Concurrency: 1}}
			}
			load.Seed = pc.Seed
			prog := bench.NewLineProgress(log, false, nil)
			if f, ok := log.(*os.File); ok && !noProgress && term.IsTerminal(int(f.Fd())) {
				prog = bench.NewLineProgress(f, true, func() int {
					// Asked at each redraw: the window may be resized mid-run.
					w, _, err := term.GetSize(int(f.Fd()))
					if err != nil {
						return 0
					}
					return w
				})
			}
			results, runErr := bench.RunLoad(ctx, client, targets, prompts, load, prog)
			out := cmd.OutOrStdout()
			fmt.Fprintln(out)
			bench.WriteServeTable(out, results, load.SLO)
			if len(targets) == 2 {
				fmt.Fprintln(out)
				bench.WriteRatios(out, results, targets[0].Name, targets[1].Name)
			}
			if jsonPath != "" {
				rep := bench.ServeReport{Results: results, Config: bench.ServeSettings{
					InputTokens: pc.InputTokens, OutputTokens: pc.OutputTokens, InputSpread: pc.InputSpread,
					OutputSpread: pc.OutputSpread, SharedPrefix: pc.SharedPrefix, Dataset: datasetPath,
					Requests: load.Requests, Warmup: load.Warmup, IgnoreEOS: ignoreEOS, SLO: load.SLO}}
				if load.Duration > 0 {
					rep.Config.Duration = load.Duration.String()
				}
				if len(pc.Dataset) > 0 {
					rep.Config.InputTokens = 0
				}
				rep.Targets = targets
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
					return fmt.Errorf("--json: %w", err)
				}
			}
			if plotP != "" && len(results) > 0 {
				var buf bytes.Buffer
				if err := bench.Plot(&buf, plotP, results); err != nil {
					return fmt.Errorf("--plot: %w", err)
				}
				if err := os.WriteFile(plotP, buf.Bytes(), 0o644); err != nil {
					return fmt.Errorf("--plot: %w", err)
				}
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&urls, "url", nil, "base URL of the server to load (http://127.0.0.1:8080, with or without /v1); several: requests go to each in turn")
	f.StringVar(&target.Model, "served-model-name", "", "model name to send (default: the first of GET /v1/models)")
	// --model was this name once; GODWIT_MODEL, serve's model file, must
	// not set it.
	f.StringVar(&target.Model, "model", "", "")
	_ = f.MarkDeprecated("model", "use --served-model-name")
	f.StringVar(&target.APIKey, "api-key", "", "bearer token for --url (and --compare unless --compare-api-key)")
	f.StringVar(&target.Name, "name", "", "label of --url in the tables (default: its host:port)")
	f.StringSliceVar(&compare, "compare", nil, "a second server (or several, each in turn) to load in the same run, levels interleaved; prints ratios")
	f.StringVar(&other.Model, "compare-model", "", "model name to send to --compare (default: the first of its /v1/models)")
	f.StringVar(&other.APIKey, "compare-api-key", "", "bearer token for --compare")
	f.StringVar(&other.Name, "compare-name", "", "label of --compare in the tables (default: its host:port)")
	f.IntSliceVarP(&concurrency, "concurrency", "c", nil, "closed-loop levels: clients sending back to back, comma-separated (default 1)")
	f.Float64SliceVar(&rates, "rate", nil, "open-loop levels: Poisson arrivals in requests/s, comma-separated")
	f.DurationVar(&load.Duration, "duration", 60*time.Second, "how long each level runs against each server (0: until --requests)")
	f.IntVar(&load.Requests, "requests", 0, "requests per level and server (0: until --duration)")
	f.IntVar(&load.Warmup, "warmup", -1, "warm-up requests before each level, not counted (-1: the level's concurrency)")
	f.IntVar(&pc.InputTokens, "input-tokens", 128, "prompt length in tokens, exact (tokenized with the server's /tokenize or -m)")
	f.IntVar(&pc.OutputTokens, "output-tokens", 128, "max_tokens of each request (with ignore_eos, the output length)")
	f.Float64Var(&pc.InputSpread, "input-spread", 0, "draw prompt lengths uniformly from input-tokens·(1±spread)")
	f.Float64Var(&pc.OutputSpread, "output-spread", 0, "draw output lengths uniformly from output-tokens·(1±spread)")
	f.IntVar(&pc.SharedPrefix, "shared-prefix-tokens", 0, "tokens every prompt starts with, before its own input-tokens (prefix caching)")
	f.StringVar(&datasetPath, "dataset", "", `JSONL file of prompts ({"prompt": "...", "max_tokens": N} a line) instead of synthetic ones`)
	f.StringVarP(&modelPath, "model-file", "m", "", "GGUF file whose tokenizer makes the prompts (default: the server's /tokenize)")
	f.Uint64Var(&pc.Seed, "seed", 1, "seed of the prompts, lengths and arrivals")
	f.DurationVar(&load.SLO.TTFT, "slo-ttft", 0, "goodput counts requests with TTFT within this (0: no limit)")
	f.DurationVar(&load.SLO.TPOT, "slo-tpot", 0, "goodput counts requests with time per output token within this (0: no limit)")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "per-request timeout (counted as an error)")
	f.BoolVar(&ignoreEOS, "ignore-eos", true, "send ignore_eos so that every request generates max_tokens (godwit, llama.cpp, vLLM)")
	f.StringVar(&jsonPath, "json", "", "write every level's summary and every sample's timings to this JSON file")
	f.StringVar(&plotP, "plot", "", "draw throughput against latency and the TTFT distribution to this .png or .svg")
	f.BoolVar(&noProgress, "no-progress", false, "no progress line updated in place, even on a terminal (a line as each level ends)")
	return cmd
}

func hostOf(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return u
}
