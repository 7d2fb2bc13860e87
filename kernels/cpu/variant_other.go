//go:build !amd64 && !arm64

package cpu

// archSets is empty: other architectures run the plain Go kernels alone.
var archSets []setKey

func archKernels(*kernelSet) {}
