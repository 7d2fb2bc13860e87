package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"

	"github.com/godwit-ai/godwit/engine"
)

// kvFlags are the paged KV cache's settings, for the commands that batch.
type kvFlags struct {
	mem string
	f32 bool
}

func (k *kvFlags) register(f *pflag.FlagSet) {
	f.StringVar(&k.mem, "kv-cache-mem", "auto",
		"memory for the KV cache, such as 256MiB or 2GiB (auto: a quarter of the available memory, at most what 64 full contexts take)")
	f.BoolVar(&k.f32, "kv-cache-f32", false, "store the KV cache in f32 instead of fp16 (twice the memory)")
}

// bytes resolves --kv-cache-mem for e's model.
func (k *kvFlags) bytes(e *engine.Engine) (int64, error) {
	if k.mem != "auto" && k.mem != "" {
		n, err := humanize.ParseBytes(k.mem)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("--kv-cache-mem %q: want a size such as 256MiB or 2GiB", k.mem)
		}
		return int64(n), nil
	}
	perPos := e.KVBytes(1, k.f32)
	limit := 64 * int64(e.Context()) * perPos
	if avail := memAvailable(); avail > 0 {
		return max(min(avail/4, limit), 16*perPos), nil
	}
	return min(1<<30, limit), nil
}

// pool allocates the KV pool for e's model and logs its size.
func (k *kvFlags) pool(e *engine.Engine) (*engine.KVPool, error) {
	n, err := k.bytes(e)
	if err != nil {
		return nil, err
	}
	p, err := e.NewKVPool(n, k.f32)
	if err != nil {
		return nil, err
	}
	typ := "f16"
	if k.f32 {
		typ = "f32"
	}
	slog.Info("kv cache", "blocks", p.Blocks(), "block_tokens", p.BlockSize(), "layer_groups", p.Groups(), "tokens", p.Capacity(),
		"memory", humanize.IBytes(uint64(n)), "type", typ)
	return p, nil
}

// memAvailable is the kernel's estimate of memory available to new work,
// or 0 when it cannot be read.
func memAvailable() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
