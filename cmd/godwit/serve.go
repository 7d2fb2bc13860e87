package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/godwit-ai/godwit/batcher"
	"github.com/godwit-ai/godwit/cluster"
	"github.com/godwit-ai/godwit/engine"
	"github.com/godwit-ai/godwit/internal/jinja"
	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models"
	"github.com/godwit-ai/godwit/server"
)

// loadFunc loads the model serve serves (loadWithProgress; tests pass one
// that blocks).
type loadFunc func(path string, threads int, stderr io.Writer, log *slog.Logger) (*loaded, error)

func serveCmd(loadModel loadFunc) *cobra.Command {
	var (
		sc           server.Config
		modelPath    string
		host         string
		port         int
		name         string
		apiKeys      []string
		tlsCert      string
		tlsKey       string
		ctxSize      int
		threads      int
		device       deviceFlag
		kv           kvFlags
		fleet        fleetFlags
		bc           batcher.Config
		maxBody      string
		drainTimeout time.Duration
		templateFile string
		tmplBytes    string
		tmplSteps    int
		logLevel     string
	)
	cmd := &cobra.Command{
		Use:   "serve [-m FILE]",
		Short: "Serve a model over an OpenAI-compatible HTTP API",
		Long: "Serve a model over an OpenAI-compatible HTTP API: /v1/completions, /v1/chat/completions, /v1/models,\n" +
			"/tokenize, /detokenize, /health and Prometheus /metrics. SIGTERM or SIGINT drains: new requests get 503\n" +
			"while those in flight finish (up to --drain-timeout), then godwit exits; while the model loads, it exits at once.\n" +
			"With no -m, godwit uses the first model in $GODWIT_MODELS or ~/.cache/godwit/models.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			// The loading code logs through the default logger: one format.
			slog.SetDefault(log)
			if err := device.choose(probeGPU); err != nil {
				return err
			}
			body, err := humanize.ParseBytes(maxBody)
			if err != nil || body == 0 || body > 1<<30 {
				return fmt.Errorf("--max-body-size %q: want a size such as 4MiB (at most 1GiB)", maxBody)
			}
			tmplMax, err := humanize.ParseBytes(tmplBytes)
			if err != nil || tmplMax == 0 || tmplMax > 1<<30 {
				return fmt.Errorf("--chat-template-max-bytes %q: want a size such as 8MiB (at most 1GiB)", tmplBytes)
			}
			if tmplSteps <= 0 {
				return fmt.Errorf("--chat-template-max-steps %d: want a positive number", tmplSteps)
			}
			// A --chat-template that does not parse fails now, not after
			// the model has loaded.
			var tmplSrc string
			if templateFile != "" {
				src, err := os.ReadFile(templateFile)
				if err != nil {
					return err
				}
				if _, err := jinja.Parse(string(src)); err != nil {
					return fmt.Errorf("chat template (%s): %w", templateFile, err)
				}
				tmplSrc = string(src)
			}
			keys, err := checkAPIKeys(apiKeys, cmd.Flags().Changed("api-key"))
			if err != nil {
				return err
			}
			if err := checkConnLimits(sc); err != nil {
				return err
			}
			tlsCfg, err := loadTLS(tlsCert, tlsKey)
			if err != nil {
				return err
			}
			var fleetCfg cluster.Config
			var forwarding *server.Forwarding
			if fleet.enabled() {
				if fleetCfg, err = fleet.config(log); err != nil {
					return err
				}
				if forwarding, err = fleet.forwarding(fleetCfg.Key, tlsCfg); err != nil {
					return err
				}
			}
			path, err := resolveModel(modelPath, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(path), ".gguf")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()

			// Listen first, so /health answers 503 while the model loads.
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				return err
			}
			sc.ModelName, sc.APIKeys, sc.MaxBodySize, sc.Logger = name, keys, int(body), log
			sc.ChatTemplateLimits = jinja.Limits{Steps: tmplSteps, OutputBytes: int(tmplMax)}
			srv := server.New(sc)
			served := make(chan error, 1)
			scheme := "http://"
			if tlsCfg != nil {
				ln, scheme = tls.NewListener(ln, tlsCfg), "https://"
			}
			go func() { served <- srv.Serve(ln) }()
			log.Info("listening", "addr", scheme+ln.Addr().String(), "model", name, "api_keys", len(keys))

			l, err := loadUnlessInterrupted(ctx, func() (*loaded, error) {
				return loadModel(path, threads, cmd.ErrOrStderr(), log)
			})
			if err != nil {
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
				return err
			}
			defer l.close()
			pool, err := kv.pool(l.eng)
			if err != nil {
				_ = srv.Shutdown(context.Background())
				return err
			}
			bc.Logger = log
			var runner batcher.Runner = l.eng
			ctxLen := l.model.Context
			if ctxSize > 0 {
				if ctxSize > ctxLen {
					_ = srv.Shutdown(context.Background())
					return fmt.Errorf("--ctx-size %d is beyond the model's context of %d tokens", ctxSize, ctxLen)
				}
				runner, ctxLen = shorterContext{l.eng, ctxSize}, ctxSize
			}
			// LongRoPE models rotate by the context served (see UseContext).
			l.eng.UseContext(ctxLen)
			b := batcher.New(runner, l.tok, pool, bc)
			warmUp(b, l.tok, log)
			var node *cluster.Node
			model := cluster.Model{Name: name, Numerics: numerics(l.eng.Order(), kv.f32)}
			if fleet.enabled() {
				node, err = cluster.Start(fleetCfg, cluster.State{Models: []cluster.Model{model}})
				if err != nil {
					b.Close()
					_ = srv.Shutdown(context.Background())
					return err
				}
				defer node.Shutdown()
				log.Info("in the fleet", "node", node.Name(), "gossip", node.Addr(), "join", fleetCfg.Join)
				stopPublish := make(chan struct{})
				defer close(stopPublish)
				hashed := make(chan string, 1)
				go func() {
					digest, err := fileDigest(path)
					if err != nil {
						log.Warn("the model file's digest", "error", err)
						return
					}
					hashed <- digest
				}()
				go publish(node, srv, b, scheme+httpAddr(ln.Addr(), node.Addr()), model, hashed, log, stopPublish)
			}
			tmpl, _ := l.model.File.String("tokenizer.chat_template")
			tmplName := "gguf"
			if templateFile != "" {
				tmpl, tmplName = tmplSrc, templateFile
			}
			ready := server.Model{Batcher: b, Tokenizer: l.tok, Context: ctxLen,
				ChatTemplate: tmpl, ChatTemplateName: tmplName, Arch: l.model.Arch}
			if node != nil {
				ready.Fleet, ready.Forward = node, forwarding
			}
			if err := srv.SetReady(ready); err != nil {
				b.Close()
				_ = srv.Shutdown(context.Background())
				return err
			}
			log.Info("ready", "model", name, "context", ctxLen)

			select {
			case err := <-served:
				b.Close()
				return err
			case <-ctx.Done():
			}
			stop() // a second signal ends the process at once
			log.Info("draining", "in_flight", srv.InFlight(), "timeout", drainTimeout)
			dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			defer cancel()
			if err := srv.Drain(dctx); err != nil {
				log.Warn("drain timed out; cancelling the requests left", "in_flight", srv.InFlight())
			}
			b.Close() // ends what is left with 503s
			if node != nil {
				if err := node.Leave(time.Second); err != nil {
					log.Warn("leaving the fleet", "error", err)
				}
			}
			sctx, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel2()
			if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				log.Warn("shutdown", "error", err)
			}
			log.Info("stopped")
			return nil
		},
	}
	f := cmd.Flags()
	device.register(f)
	f.StringVarP(&modelPath, "model", "m", "", "GGUF model file")
	f.StringVar(&host, "host", "127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
	f.IntVar(&port, "port", 8080, "port to listen on (0: any free port, logged)")
	f.StringVar(&name, "served-model-name", "", "model id the API answers to (default: the file name without .gguf)")
	f.StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain) file; fleet peers are then reached over HTTPS too")
	f.StringVar(&tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	f.StringSliceVar(&apiKeys, "api-key", nil, "require this bearer token on /v1, /tokenize and /detokenize (repeatable, or comma-separated)")
	f.IntVarP(&threads, "threads", "t", 0, "threads to compute on (0: all CPUs)")
	f.IntVar(&ctxSize, "ctx-size", 0, "the most tokens a request may hold, prompt and output (0: the model's context; no more than it)")
	kv.register(f)
	f.IntVar(&bc.MaxSeqs, "max-num-seqs", batcher.DefaultMaxSeqs, "most sequences in a batch")
	f.IntVar(&bc.MaxBatchTokens, "max-batch-tokens", batcher.DefaultMaxBatchTokens, "token budget of a batch step (decodes plus prompt chunks)")
	f.IntVar(&bc.MaxQueue, "max-queue", batcher.DefaultMaxQueue, "most sequences waiting (a request counts prompts × n); more get 429, and a request larger than this 400")
	f.IntVar(&bc.MaxN, "max-n", batcher.DefaultMaxN, "largest n (samples per prompt) a request may ask for")
	f.StringVar(&maxBody, "max-body-size", "4MiB", "largest request body; larger ones get 413")
	f.DurationVar(&drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM/SIGINT, how long requests in flight may take to finish")
	f.DurationVar(&sc.HeaderTimeout, "header-timeout", server.DefaultHeaderTimeout, "how long a client may take to send a request's headers; later gets 408 and the connection closes")
	f.DurationVar(&sc.BodyTimeout, "body-timeout", server.DefaultBodyTimeout, "how long a client may take to send a request's body after its headers (answers are not timed)")
	f.DurationVar(&sc.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "how long a keep-alive connection may wait for its next request")
	f.IntVar(&sc.MaxConns, "max-conns", server.DefaultMaxConns, "most connections at once; more get 503 and are closed")
	f.IntVar(&sc.MaxConnsPerIP, "max-conns-per-ip", 0, "most connections from one address, more get 429 (0: no limit)")
	f.StringVar(&templateFile, "chat-template", "", "Jinja chat template file (default: the model's tokenizer.chat_template, else a built-in one)")
	f.StringVar(&tmplBytes, "chat-template-max-bytes", humanize.IBytes(uint64(jinja.DefaultLimits.OutputBytes)),
		"largest prompt a chat template may render (the strings it builds may come to 16 times as much); past it a request gets 400")
	f.IntVar(&tmplSteps, "chat-template-max-steps", jinja.DefaultLimits.Steps, "most evaluation steps of one chat template render; past them a request gets 400")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fleet.add(f)
	return cmd
}

// loadUnlessInterrupted runs load until it returns or ctx ends (a signal).
// A load cannot be stopped midway (a read from a stalled disk blocks), so
// it is left behind for the process's exit, closed should it still finish.
func loadUnlessInterrupted(ctx context.Context, load func() (*loaded, error)) (*loaded, error) {
	type result struct {
		l   *loaded
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := load()
		done <- result{l, err}
	}()
	select {
	case r := <-done:
		return r.l, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.l != nil {
				r.l.close()
			}
		}()
		return nil, errors.New("interrupted while loading the model")
	}
}

// checkConnLimits refuses timeouts and connection caps that would turn a
// limit off or make every request fail.
func checkConnLimits(c server.Config) error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--header-timeout", c.HeaderTimeout}, {"--body-timeout", c.BodyTimeout}, {"--idle-timeout", c.IdleTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s %v: want a positive duration such as 10s", d.flag, d.v)
		}
	}
	if c.MaxConns < 1 {
		return fmt.Errorf("--max-conns %d: want at least 1", c.MaxConns)
	}
	if c.MaxConnsPerIP < 0 {
		return fmt.Errorf("--max-conns-per-ip %d: want 0 (no limit) or more", c.MaxConnsPerIP)
	}
	return nil
}

// loadWithProgress loads the model and reads its weights into memory once,
// so that the first requests do not wait on the disk: with a progress bar
// on a terminal, log lines otherwise.
func loadWithProgress(path string, threads int, stderr io.Writer, log *slog.Logger) (*loaded, error) {
	start := time.Now()
	log.Info("loading model", "file", path)
	// A request's results must not depend on what it is batched with.
	l, err := load(path, threads, kernels.OrderBatchInvariant, stderr)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, w := range l.model.Weights() {
		total += int64(len(w.Data))
	}
	var bar *progressbar.ProgressBar
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("loading "+filepath.Base(path)), progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond))
	}
	touchWeights(l.model, l.eng.Copied, func(n int) {
		if bar != nil {
			_ = bar.Add(n)
		}
	})
	if bar != nil {
		_ = bar.Finish()
	}
	log.Info("model loaded", "weights", humanize.IBytes(uint64(total)), "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// touchWeights reads a byte of every page of the weights, faulting the
// mapping in, but for those the backend copied (it read them already, and
// multiplies its copy); progress gets the bytes done.
func touchWeights(m *models.Model, copied func(*models.Weight) bool, progress func(int)) byte {
	var sum byte
	for _, w := range m.Weights() {
		for off := 0; !copied(w) && off < len(w.Data); off += 4096 {
			sum += w.Data[off]
		}
		progress(len(w.Data))
	}
	return sum
}

// checkAPIKeys trims the --api-key values. Given at all (set says so), every
// one must be non-empty: --api-key "$KEY" with KEY unset would otherwise
// start a server open to anyone, so an empty key fails closed.
func checkAPIKeys(keys []string, set bool) ([]string, error) {
	var out []string
	for _, k := range keys {
		if k = strings.TrimSpace(k); k == "" {
			return nil, errors.New("--api-key: an empty key would leave the API open; give a non-empty key, or leave --api-key out")
		}
		out = append(out, k)
	}
	if set && len(out) == 0 {
		return nil, errors.New("--api-key: an empty key would leave the API open; give a non-empty key, or leave --api-key out")
	}
	return out, nil
}

// shorterContext is an engine serving a shorter context than its model's
// (--ctx-size): the batcher bounds requests by the runner's Context.
type shorterContext struct {
	*engine.Engine
	ctx int
}

func (s shorterContext) Context() int { return s.ctx }
