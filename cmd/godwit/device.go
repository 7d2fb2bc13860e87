package main

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/godwit-ai/godwit/kernels/cuda"
)

// deviceFlag is --device, for the commands that compute: auto, cpu or
// cuda[:N].
type deviceFlag struct{ spec string }

func (d *deviceFlag) register(f *pflag.FlagSet) {
	f.StringVar(&d.spec, "device", "auto", "where to compute: auto (a GPU when one can run the model, else the CPU), cpu, or cuda[:N] (GPU N, 0 by default)")
}

// gpu is a GPU found, with its driver's CUDA version.
type gpu struct {
	dev    cuda.Device
	driver string
}

func (g gpu) String() string { return fmt.Sprintf("%s, driver CUDA %s", g.dev, g.driver) }

// gpuProbe finds GPU ordinal, or says why it cannot be used.
type gpuProbe func(ordinal int) (gpu, error)

// probeGPU looks for GPU ordinal through the CUDA driver.
func probeGPU(ordinal int) (gpu, error) {
	d, err := cuda.Open()
	if err != nil {
		return gpu{}, err
	}
	devs, err := d.Devices()
	if err != nil {
		return gpu{}, err
	}
	if ordinal >= len(devs) {
		return gpu{}, fmt.Errorf("cuda: no GPU %d (the driver sees %d)", ordinal, len(devs))
	}
	v, err := d.Version()
	if err != nil {
		return gpu{}, err
	}
	g := gpu{dev: devs[ordinal], driver: v}
	return g, g.dev.Supported()
}

// errNoCUDABackend: the CUDA bindings and kernels exist, the backend that
// runs a model on them does not yet (issue 15).
const errNoCUDABackend = "godwit's CUDA backend does not run models yet"

// choose decides where the command computes and logs it in one line: the
// CPU, whatever the GPU, until the CUDA backend runs models. An explicit
// cuda[:N] is refused, saying why.
func (d deviceFlag) choose(probe gpuProbe) error {
	why, err := chooseDevice(d.spec, probe)
	if err != nil {
		return err
	}
	slog.Info("device", "using", "cpu", "why", why)
	return nil
}

// chooseDevice is choose's decision for the --device value spec: the
// reason the CPU computes, or why the device asked for cannot.
func chooseDevice(spec string, probe gpuProbe) (string, error) {
	kind, n, hasN := strings.Cut(spec, ":")
	ordinal := 0
	if hasN {
		o, err := strconv.Atoi(n)
		if kind != "cuda" || err != nil || o < 0 {
			return "", fmt.Errorf("--device %q: want auto, cpu, cuda or cuda:N", spec)
		}
		ordinal = o
	}
	switch kind {
	case "cpu":
		return "--device cpu", nil
	case "auto":
		g, err := probe(0)
		if err != nil {
			return fmt.Sprintf("no usable GPU: %v", err), nil
		}
		return fmt.Sprintf("%s found, but %s (issue 15)", g, errNoCUDABackend), nil
	case "cuda":
		g, err := probe(ordinal)
		if err != nil {
			return "", fmt.Errorf("--device %s: %w; use --device cpu", spec, err)
		}
		return "", fmt.Errorf("--device %s: %s found, but %s; use --device cpu or auto", spec, g, errNoCUDABackend)
	}
	return "", fmt.Errorf("--device %q: want auto, cpu, cuda or cuda:N", spec)
}

// describeDevice is the device line of godwit version: the GPU auto would
// find, or why there is none.
func describeDevice(probe gpuProbe) string {
	g, err := probe(0)
	if err != nil {
		return fmt.Sprintf("device: cpu (no usable GPU: %v)", err)
	}
	return fmt.Sprintf("device: cpu (%s found, but %s)", g, errNoCUDABackend)
}
