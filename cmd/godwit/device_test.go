package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/kernels/cuda"
)

// TestChooseDevice: --device's decision for each value, with no GPU and
// with one: the CPU computes (the CUDA backend does not run models yet),
// saying why; an explicit cuda is refused, and so is a malformed value.
func TestChooseDevice(t *testing.T) {
	none := func(int) (gpu, error) { return gpu{}, errors.New("cuda: cannot load libcuda.so.1") }
	h100 := func(o int) (gpu, error) {
		if o != 0 {
			return gpu{}, errors.New("cuda: no GPU 1 (the driver sees 1)")
		}
		return gpu{dev: cuda.Device{Name: "NVIDIA H100", Major: 9, Memory: 80 << 30}, driver: "13.0"}, nil
	}
	for _, c := range []struct {
		spec  string
		probe gpuProbe
		why   string // the reason logged, or
		err   string // the error
	}{
		{"cpu", none, "--device cpu", ""},
		{"auto", none, "no usable GPU: cuda: cannot load libcuda.so.1", ""},
		{"auto", h100, "cuda:0 NVIDIA H100 (sm_90, 80 GiB), driver CUDA 13.0 found, but godwit's CUDA backend does not run models yet", ""},
		{"cuda", none, "", "--device cuda: cuda: cannot load libcuda.so.1; use --device cpu"},
		{"cuda:1", h100, "", "--device cuda:1: cuda: no GPU 1"},
		{"cuda:0", h100, "", "--device cuda:0: cuda:0 NVIDIA H100 (sm_90, 80 GiB), driver CUDA 13.0 found, but godwit's CUDA backend does not run models yet"},
		{"gpu", h100, "", `--device "gpu": want auto, cpu, cuda or cuda:N`},
		{"cuda:-1", h100, "", `--device "cuda:-1"`},
		{"cpu:0", h100, "", `--device "cpu:0"`},
	} {
		why, err := chooseDevice(c.spec, c.probe)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one containing %q", c.spec, err, c.err)
		case c.err == "" && (err != nil || !strings.HasPrefix(why, c.why)):
			t.Errorf("%s: %q, %v; want %q", c.spec, why, err, c.why)
		}
	}
}

// TestDeviceSupported: GPUs older than Ampere are refused by name.
func TestDeviceSupported(t *testing.T) {
	if err := (cuda.Device{Name: "Tesla T4", Major: 7, Minor: 5}).Supported(); err == nil || !strings.Contains(err.Error(), "Tesla T4 is sm_75") {
		t.Errorf("T4: %v", err)
	}
	if err := (cuda.Device{Name: "NVIDIA A100", Major: 8}).Supported(); err != nil {
		t.Errorf("A100: %v", err)
	}
}
