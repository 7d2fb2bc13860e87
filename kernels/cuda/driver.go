// Package cuda reaches NVIDIA GPUs through the CUDA driver API, loaded at
// run time with purego: the binary is built without cgo, and libcuda.so.1
// (the driver's own library) is the only one it needs. A box without it, or
// without a GPU, gets an error saying why from Open, and runs on the CPU.
//
// Kernels are CUDA C compiled ahead of time to PTX by clang (ptx/, `make
// ptx`), embedded in the binary and compiled for the GPU at hand by the
// driver when loaded, so that one binary serves every GPU from Ampere
// (sm_80) on.
//
// The CUDA backend that runs models on this is issue 15's; this package is
// its first layer: the library, the devices, memory, modules and launches.
package cuda

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Library is the file name Open loads: the driver's soname, which the
// dynamic loader finds wherever the driver is installed.
const Library = "libcuda.so.1"

// Result is a CUresult: 0 is success.
type Result int32

// Error is a driver call that failed.
type Error struct {
	Call string // the driver function, such as cuInit
	Code Result
	Name string // the driver's name for Code, such as CUDA_ERROR_NO_DEVICE
}

func (e *Error) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("cuda: %s failed with error %d", e.Call, e.Code)
	}
	return fmt.Sprintf("cuda: %s: %s (%d)", e.Call, e.Name, e.Code)
}

// errNoDevice is CUDA_ERROR_NO_DEVICE.
const errNoDevice Result = 100

// Driver is the driver API of a loaded libcuda, initialised (cuInit).
type Driver struct {
	path string

	cuInit                    func(flags uint32) Result
	cuDriverGetVersion        func(v *int32) Result
	cuGetErrorName            func(r Result, name **byte) Result
	cuDeviceGetCount          func(n *int32) Result
	cuDeviceGet               func(dev *int32, ordinal int32) Result
	cuDeviceGetName           func(name *byte, n int32, dev int32) Result
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) Result
	cuDeviceTotalMem_v2       func(bytes *uint64, dev int32) Result
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) Result
	cuDevicePrimaryCtxRelease func(dev int32) Result
	cuCtxSetCurrent           func(ctx uintptr) Result
	cuCtxSynchronize          func() Result
	cuMemGetInfo_v2           func(free, total *uint64) Result
	cuMemAlloc_v2             func(ptr *uint64, bytes uint64) Result
	cuMemFree_v2              func(ptr uint64) Result
	cuMemcpyHtoD_v2           func(dst uint64, src unsafe.Pointer, bytes uint64) Result
	cuMemcpyDtoH_v2           func(dst unsafe.Pointer, src uint64, bytes uint64) Result
	cuModuleLoadDataEx        func(mod *uintptr, image *byte, n uint32, opts unsafe.Pointer, vals unsafe.Pointer) Result
	cuModuleUnload            func(mod uintptr) Result
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name *byte) Result
	cuLaunchKernel            func(fn uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params, extra unsafe.Pointer) Result
}

// symbols maps each driver function to the field that calls it.
func (d *Driver) symbols() map[string]any {
	return map[string]any{
		"cuInit": &d.cuInit, "cuDriverGetVersion": &d.cuDriverGetVersion, "cuGetErrorName": &d.cuGetErrorName,
		"cuDeviceGetCount": &d.cuDeviceGetCount, "cuDeviceGet": &d.cuDeviceGet, "cuDeviceGetName": &d.cuDeviceGetName,
		"cuDeviceGetAttribute": &d.cuDeviceGetAttribute, "cuDeviceTotalMem_v2": &d.cuDeviceTotalMem_v2,
		"cuDevicePrimaryCtxRetain": &d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRelease": &d.cuDevicePrimaryCtxRelease,
		"cuCtxSetCurrent": &d.cuCtxSetCurrent, "cuCtxSynchronize": &d.cuCtxSynchronize,
		"cuMemGetInfo_v2": &d.cuMemGetInfo_v2, "cuMemAlloc_v2": &d.cuMemAlloc_v2, "cuMemFree_v2": &d.cuMemFree_v2,
		"cuMemcpyHtoD_v2": &d.cuMemcpyHtoD_v2, "cuMemcpyDtoH_v2": &d.cuMemcpyDtoH_v2,
		"cuModuleLoadDataEx": &d.cuModuleLoadDataEx, "cuModuleUnload": &d.cuModuleUnload,
		"cuModuleGetFunction": &d.cuModuleGetFunction, "cuLaunchKernel": &d.cuLaunchKernel,
	}
}

// Open loads the driver's library and initialises it.
func Open() (*Driver, error) { return OpenLibrary(Library) }

// OpenLibrary loads the driver API from the library at path (a file name
// the dynamic loader searches for, or a path) and initialises it. The
// error says what is missing: the library, one of its functions, or a
// device.
func OpenLibrary(path string) (*Driver, error) {
	lib, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("cuda: cannot load %s (no NVIDIA driver here?): %w", path, err)
	}
	d := &Driver{path: path}
	var missing []string
	for name, fn := range d.symbols() {
		sym, err := purego.Dlsym(lib, name)
		if err != nil {
			missing = append(missing, name)
			continue
		}
		purego.RegisterFunc(fn, sym)
	}
	if len(missing) > 0 {
		_ = purego.Dlclose(lib)
		slices.Sort(missing)
		return nil, fmt.Errorf("cuda: %s lacks %s: not a CUDA driver, or one too old", path, strings.Join(missing, ", "))
	}
	if err := d.check("cuInit", d.cuInit(0)); err != nil {
		var ce *Error
		if errors.As(err, &ce) && ce.Code == errNoDevice {
			return nil, fmt.Errorf("cuda: no GPU (%w)", err)
		}
		return nil, err
	}
	return d, nil
}

// check turns a driver call's result into an error naming the call.
func (d *Driver) check(call string, r Result) error {
	if r == 0 {
		return nil
	}
	e := &Error{Call: call, Code: r}
	var name *byte
	if d.cuGetErrorName != nil && d.cuGetErrorName(r, &name) == 0 && name != nil {
		e.Name = cString(name)
	}
	return e
}

// cString copies a NUL-terminated C string.
func cString(p *byte) string {
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
	}
	return string(b)
}

// cBytes is s NUL-terminated, for a driver call.
func cBytes(s string) *byte {
	b := append([]byte(s), 0)
	return &b[0]
}

// Version is the driver's CUDA version, such as "13.0".
func (d *Driver) Version() (string, error) {
	var v int32
	if err := d.check("cuDriverGetVersion", d.cuDriverGetVersion(&v)); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10), nil
}
