package cuda

import (
	"fmt"
	"runtime"
	"unsafe"
)

// MinMajor is the oldest compute capability godwit's PTX targets: sm_80,
// Ampere (Jetson Orin and Hopper included).
const MinMajor = 8

// Device attributes (CUdevice_attribute).
const (
	attrComputeMajor = 75
	attrComputeMinor = 76
)

// Device describes one GPU.
type Device struct {
	Ordinal      int
	Name         string
	Major, Minor int    // compute capability
	Memory       uint64 // bytes
}

// String is the device as the start-up log names it.
func (dev Device) String() string {
	return fmt.Sprintf("cuda:%d %s (sm_%d%d, %.0f GiB)", dev.Ordinal, dev.Name, dev.Major, dev.Minor, float64(dev.Memory)/(1<<30))
}

// Supported reports why dev cannot run godwit's kernels, or nil.
func (dev Device) Supported() error {
	if dev.Major < MinMajor {
		return fmt.Errorf("cuda:%d %s is sm_%d%d; godwit's kernels need sm_%d0 (Ampere) or newer", dev.Ordinal, dev.Name, dev.Major, dev.Minor, MinMajor)
	}
	return nil
}

// Devices lists the GPUs the driver sees.
func (d *Driver) Devices() ([]Device, error) {
	var n int32
	if err := d.check("cuDeviceGetCount", d.cuDeviceGetCount(&n)); err != nil {
		return nil, err
	}
	out := make([]Device, 0, n)
	for i := range n {
		dev, err := d.device(int(i))
		if err != nil {
			return nil, err
		}
		out = append(out, dev)
	}
	return out, nil
}

// device describes GPU ordinal.
func (d *Driver) device(ordinal int) (Device, error) {
	var h, major, minor int32
	var mem uint64
	name := make([]byte, 256)
	for _, c := range []struct {
		call string
		r    func() Result
	}{
		{"cuDeviceGet", func() Result { return d.cuDeviceGet(&h, int32(ordinal)) }},
		{"cuDeviceGetName", func() Result { return d.cuDeviceGetName(&name[0], int32(len(name)), h) }},
		{"cuDeviceGetAttribute", func() Result { return d.cuDeviceGetAttribute(&major, attrComputeMajor, h) }},
		{"cuDeviceGetAttribute", func() Result { return d.cuDeviceGetAttribute(&minor, attrComputeMinor, h) }},
		{"cuDeviceTotalMem_v2", func() Result { return d.cuDeviceTotalMem_v2(&mem, h) }},
	} {
		if err := d.check(c.call, c.r()); err != nil {
			return Device{}, err
		}
	}
	return Device{Ordinal: ordinal, Name: cString(&name[0]), Major: int(major), Minor: int(minor), Memory: mem}, nil
}

// Context is a device's primary context, current on the OS thread that
// made it: every call on it must come from that thread, so NewContext
// locks the calling goroutine to its thread (Close unlocks it).
type Context struct {
	d   *Driver
	dev int32
	ctx uintptr
}

// NewContext makes GPU ordinal's primary context current on this
// goroutine's thread, which it locks.
func (d *Driver) NewContext(ordinal int) (*Context, error) {
	runtime.LockOSThread()
	c := &Context{d: d}
	if err := d.check("cuDeviceGet", d.cuDeviceGet(&c.dev, int32(ordinal))); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	if err := d.check("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain(&c.ctx, c.dev)); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	if err := d.check("cuCtxSetCurrent", d.cuCtxSetCurrent(c.ctx)); err != nil {
		_ = d.cuDevicePrimaryCtxRelease(c.dev)
		runtime.UnlockOSThread()
		return nil, err
	}
	return c, nil
}

// Close releases the context and unlocks the thread.
func (c *Context) Close() error {
	err := c.d.check("cuDevicePrimaryCtxRelease", c.d.cuDevicePrimaryCtxRelease(c.dev))
	runtime.UnlockOSThread()
	return err
}

// MemInfo is the device memory free and in all.
func (c *Context) MemInfo() (free, total uint64, err error) {
	err = c.d.check("cuMemGetInfo_v2", c.d.cuMemGetInfo_v2(&free, &total))
	return free, total, err
}

// Synchronize waits for the work launched so far.
func (c *Context) Synchronize() error { return c.d.check("cuCtxSynchronize", c.d.cuCtxSynchronize()) }

// Buffer is device memory.
type Buffer struct {
	Ptr   uint64 // the device address
	Bytes uint64
}

// Alloc allocates bytes of device memory.
func (c *Context) Alloc(bytes uint64) (Buffer, error) {
	b := Buffer{Bytes: bytes}
	if err := c.d.check("cuMemAlloc_v2", c.d.cuMemAlloc_v2(&b.Ptr, bytes)); err != nil {
		return Buffer{}, fmt.Errorf("%w (allocating %d bytes)", err, bytes)
	}
	return b, nil
}

// Free releases b.
func (c *Context) Free(b Buffer) error { return c.d.check("cuMemFree_v2", c.d.cuMemFree_v2(b.Ptr)) }

// Upload copies src to the start of b.
func Upload[T any](c *Context, b Buffer, src []T) error {
	n := uint64(len(src)) * uint64(unsafe.Sizeof(*new(T)))
	if n > b.Bytes {
		return fmt.Errorf("cuda: upload of %d bytes into a buffer of %d", n, b.Bytes)
	}
	if n == 0 {
		return nil
	}
	return c.d.check("cuMemcpyHtoD_v2", c.d.cuMemcpyHtoD_v2(b.Ptr, unsafe.Pointer(&src[0]), n))
}

// Download copies the start of b to dst.
func Download[T any](c *Context, dst []T, b Buffer) error {
	n := uint64(len(dst)) * uint64(unsafe.Sizeof(*new(T)))
	if n > b.Bytes {
		return fmt.Errorf("cuda: download of %d bytes from a buffer of %d", n, b.Bytes)
	}
	if n == 0 {
		return nil
	}
	return c.d.check("cuMemcpyDtoH_v2", c.d.cuMemcpyDtoH_v2(unsafe.Pointer(&dst[0]), b.Ptr, n))
}

// Module is loaded PTX.
type Module struct {
	c   *Context
	mod uintptr
}

// Load JIT-compiles ptx (NUL-free text) for the context's device.
func (c *Context) Load(ptx []byte) (*Module, error) {
	img := append(append([]byte(nil), ptx...), 0)
	m := &Module{c: c}
	if err := c.d.check("cuModuleLoadDataEx", c.d.cuModuleLoadDataEx(&m.mod, &img[0], 0, nil, nil)); err != nil {
		return nil, err
	}
	return m, nil
}

// Unload releases the module.
func (m *Module) Unload() error { return m.c.d.check("cuModuleUnload", m.c.d.cuModuleUnload(m.mod)) }

// Function is a kernel of a module.
type Function struct {
	c  *Context
	fn uintptr
}

// Function looks up the kernel name (its extern "C" name).
func (m *Module) Function(name string) (Function, error) {
	f := Function{c: m.c}
	if err := m.c.d.check("cuModuleGetFunction", m.c.d.cuModuleGetFunction(&f.fn, m.mod, cBytes(name))); err != nil {
		return Function{}, fmt.Errorf("%w (kernel %s)", err, name)
	}
	return f, nil
}

// Dim3 is a grid or block shape.
type Dim3 struct{ X, Y, Z uint32 }

// Launch runs f on grid × block threads with shared bytes of dynamic shared
// memory, on the default stream. args point at the kernel's arguments in
// order (a device pointer's *uint64, an int's *int32, a float's *float32).
func (f Function) Launch(grid, block Dim3, shared uint32, args ...unsafe.Pointer) error {
	var params unsafe.Pointer
	if len(args) > 0 {
		params = unsafe.Pointer(&args[0])
	}
	r := f.c.d.cuLaunchKernel(f.fn, max(grid.X, 1), max(grid.Y, 1), max(grid.Z, 1), max(block.X, 1), max(block.Y, 1), max(block.Z, 1),
		shared, 0, params, nil)
	return f.c.d.check("cuLaunchKernel", r)
}
