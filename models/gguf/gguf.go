// Package gguf reads and writes GGUF model files (versions 2 and 3): metadata,
// tensor infos and memory-mapped tensor data. Every count, length and offset is
// checked against the file size before use, so a truncated or hostile file
// yields an error rather than a panic or a giant allocation.
package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
)

// Magic is "GGUF" read as a little-endian uint32.
const Magic = 0x46554747

// DefaultAlignment is the tensor data alignment when general.alignment is absent.
const DefaultAlignment = 32

// MaxDims is ggml's limit on tensor dimensions.
const MaxDims = 4

// maxArrayDepth bounds nested arrays so a hostile file cannot recurse deeply.
const maxArrayDepth = 8

// ErrFormat is wrapped by every error about a malformed file.
var ErrFormat = errors.New("malformed gguf")

// Tensor describes one tensor. Shape is in ggml order: Shape[0] is the
// number of elements in a row (the fastest-varying dimension).
type Tensor struct {
	Name   string
	Type   Type
	Shape  []uint64
	Offset uint64 // from the start of the data section
	Data   []byte // the tensor's bytes inside the mapped file
}

// Elements is the total number of elements.
func (t *Tensor) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Rows is the number of rows: the product of all dimensions but the first.
func (t *Tensor) Rows() int {
	n := 1
	for _, d := range t.Shape[1:] {
		n *= int(d)
	}
	return n
}

// File is a parsed GGUF file. Its tensors' Data alias the mapping, which stays
// valid until Close.
type File struct {
	Version    uint32
	Alignment  int
	KV         []KV
	Tensors    []Tensor
	DataOffset int64 // where the data section starts in the file

	index   map[string]int // key → position in KV
	tensors map[string]int
	unmap   func() error
}

// Open maps and parses a GGUF file.
// Anything but a regular file is refused before it is opened: opening a
// FIFO would block until something writes to it.
func Open(path string) (*File, error) {
	if st, err := os.Stat(path); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%v); give the path of a .gguf file", path, st.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data, unmap, err := mapFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	g, err := Parse(data)
	if err != nil {
		unmap()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	g.unmap = unmap
	return g, nil
}

// Close releases the mapping; tensor data must not be used afterwards.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap = nil
	return err
}

// Release tells the system that b, tensor data of a file Open mapped, is
// not needed in memory: on Linux the pages wholly inside it leave the
// process (its resident set), and come back from the file if b is read
// again. A backend that keeps its own copy of a weight, laid out for its
// kernels, releases the stored one, so the weight is in memory once. Data
// of a file Parse read from memory is left alone.
func (f *File) Release(b []byte) {
	if f.unmap == nil || len(b) == 0 {
		return
	}
	releasePages(b)
}

// Parse parses a whole GGUF file held in data. Tensor data aliases data.
func Parse(data []byte) (*File, error) {
	r := &reader{b: data}
	magic, err := r.u32()
	if err != nil {
		return nil, fmt.Errorf("%w: file too short for a header", ErrFormat)
	}
	if magic != Magic {
		return nil, fmt.Errorf("%w: bad magic %#08x (not a GGUF file)", ErrFormat, magic)
	}
	version, err := r.u32()
	if err != nil {
		return nil, fmt.Errorf("%w: file too short for a header", ErrFormat)
	}
	switch {
	case version == 1:
		return nil, fmt.Errorf("gguf version 1 is not supported (versions 2 and 3 are): re-convert the model with a current llama.cpp")
	case version != 2 && version != 3:
		return nil, fmt.Errorf("gguf version %d is not supported (versions 2 and 3 are; a big-endian file also reads this way)", version)
	}
	nTensors, err := r.u64()
	if err != nil {
		return nil, r.short("tensor count")
	}
	nKV, err := r.u64()
	if err != nil {
		return nil, r.short("metadata count")
	}
	// Each KV takes at least 12 bytes and each tensor info at least 24.
	if nKV > uint64(r.left())/12 {
		return nil, fmt.Errorf("%w: %d metadata entries cannot fit in %d bytes", ErrFormat, nKV, len(data))
	}
	if nTensors > uint64(r.left())/24 {
		return nil, fmt.Errorf("%w: %d tensors cannot fit in %d bytes", ErrFormat, nTensors, len(data))
	}
	f := &File{Version: version, Alignment: DefaultAlignment, index: map[string]int{}, tensors: map[string]int{}}
	f.KV = make([]KV, 0, nKV)
	for i := uint64(0); i < nKV; i++ {
		key, err := r.str()
		if err != nil {
			return nil, fmt.Errorf("metadata entry %d: key: %w", i, err)
		}
		vt, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, r.short("value type"))
		}
		v, err := r.value(ValueType(vt), 0)
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, err)
		}
		if _, dup := f.index[key]; dup {
			return nil, fmt.Errorf("%w: duplicate metadata key %q", ErrFormat, key)
		}
		f.index[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	if v, ok := f.Get("general.alignment"); ok {
		a, isU32 := v.V.(uint32)
		if !isU32 || a == 0 || a&(a-1) != 0 || a > 1<<20 {
			return nil, fmt.Errorf("%w: general.alignment must be a uint32 power of two, got %s %v", ErrFormat, v.Type, v.V)
		}
		f.Alignment = int(a)
	}
	f.Tensors = make([]Tensor, 0, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		t, err := r.tensorInfo()
		if err != nil {
			return nil, fmt.Errorf("tensor %d: %w", i, err)
		}
		if _, dup := f.tensors[t.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate tensor %q", ErrFormat, t.Name)
		}
		f.tensors[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}
	start := alignUp(uint64(r.off), uint64(f.Alignment))
	if start > uint64(len(data)) {
		if len(f.Tensors) > 0 {
			return nil, fmt.Errorf("%w: data section starts at %d, past the end of the file (%d bytes)", ErrFormat, start, len(data))
		}
		start = uint64(len(data))
	}
	f.DataOffset = int64(start)
	section := data[start:]
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Offset%uint64(f.Alignment) != 0 {
			return nil, fmt.Errorf("%w: tensor %q: offset %d is not a multiple of the alignment %d", ErrFormat, t.Name, t.Offset, f.Alignment)
		}
		size := uint64(t.Type.RowSize(int(t.Shape[0]))) * uint64(t.Rows())
		if t.Offset > uint64(len(section)) || size > uint64(len(section))-t.Offset {
			return nil, fmt.Errorf("%w: tensor %q: %d bytes at offset %d run past the end of the file (data section holds %d bytes; truncated download?)", ErrFormat, t.Name, size, t.Offset, len(section))
		}
		t.Data = section[t.Offset : t.Offset+size : t.Offset+size]
	}
	return f, nil
}

// Get returns the metadata value for key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.index[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// String returns a string value.
func (f *File) String(key string) (string, bool) {
	v, _ := f.Get(key)
	s, ok := v.V.(string)
	return s, ok
}

// Int returns an integer value of any integer type.
func (f *File) Int(key string) (int64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Int()
}

// Float returns a numeric value as float64.
func (f *File) Float(key string) (float64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Float()
}

// Bool returns a bool value.
func (f *File) Bool(key string) (bool, bool) {
	v, _ := f.Get(key)
	b, ok := v.V.(bool)
	return b, ok
}

// Strings returns an array of strings.
func (f *File) Strings(key string) ([]string, bool) {
	v, _ := f.Get(key)
	s, ok := v.V.([]string)
	return s, ok
}

// Float32s returns an array of float32.
func (f *File) Float32s(key string) ([]float32, bool) {
	v, _ := f.Get(key)
	s, ok := v.V.([]float32)
	return s, ok
}

// Int32s returns an array of integers of any 8-, 16- or 32-bit type as int32.
func (f *File) Int32s(key string) ([]int32, bool) {
	v, _ := f.Get(key)
	switch a := v.V.(type) {
	case []int32:
		return a, true
	case []uint32:
		return convert[uint32, int32](a), true
	case []int8:
		return convert[int8, int32](a), true
	case []uint8:
		return convert[uint8, int32](a), true
	case []int16:
		return convert[int16, int32](a), true
	case []uint16:
		return convert[uint16, int32](a), true
	}
	return nil, false
}

func convert[S, D uint8 | int8 | uint16 | int16 | uint32 | int32](s []S) []D {
	d := make([]D, len(s))
	for i, x := range s {
		d[i] = D(x)
	}
	return d
}

// Tensor returns the named tensor.
func (f *File) Tensor(name string) (*Tensor, bool) {
	i, ok := f.tensors[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) / a * a }

// reader decodes little-endian values from b, never reading past its end.
type reader struct {
	b   []byte
	off int
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) short(what string) error {
	return fmt.Errorf("%w: file ends at byte %d while reading %s (truncated?)", ErrFormat, len(r.b), what)
}

func (r *reader) take(n int) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, r.short(fmt.Sprintf("%d bytes", n))
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b, nil
}

func (r *reader) u32() (uint32, error) {
	b, err := r.take(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (r *reader) u64() (uint64, error) {
	b, err := r.take(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (r *reader) str() (string, error) {
	n, err := r.u64()
	if err != nil {
		return "", r.short("string length")
	}
	if n > uint64(r.left()) {
		return "", fmt.Errorf("%w: string of %d bytes at offset %d runs past the end of the file", ErrFormat, n, r.off-8)
	}
	b, _ := r.take(int(n))
	return string(b), nil
}

func (r *reader) value(t ValueType, depth int) (Value, error) {
	if t == TypeArray {
		if depth >= maxArrayDepth {
			return Value{}, fmt.Errorf("%w: arrays nested deeper than %d", ErrFormat, maxArrayDepth)
		}
		et, err := r.u32()
		if err != nil {
			return Value{}, r.short("array element type")
		}
		n, err := r.u64()
		if err != nil {
			return Value{}, r.short("array length")
		}
		arr, err := r.array(ValueType(et), n, depth+1)
		if err != nil {
			return Value{}, err
		}
		return Value{Type: TypeArray, Elem: ValueType(et), V: arr}, nil
	}
	sz := t.size()
	if t == TypeString {
		s, err := r.str()
		return Value{Type: t, V: s}, err
	}
	if sz == 0 {
		return Value{}, fmt.Errorf("%w: unknown value type %d", ErrFormat, uint32(t))
	}
	b, err := r.take(sz)
	if err != nil {
		return Value{}, err
	}
	return Value{Type: t, V: scalar(t, b)}, nil
}

func scalar(t ValueType, b []byte) any {
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return b[0]
	case TypeInt8:
		return int8(b[0])
	case TypeBool:
		return b[0] != 0
	case TypeUint16:
		return le.Uint16(b)
	case TypeInt16:
		return int16(le.Uint16(b))
	case TypeUint32:
		return le.Uint32(b)
	case TypeInt32:
		return int32(le.Uint32(b))
	case TypeFloat32:
		return math.Float32frombits(le.Uint32(b))
	case TypeUint64:
		return le.Uint64(b)
	case TypeInt64:
		return int64(le.Uint64(b))
	case TypeFloat64:
		return math.Float64frombits(le.Uint64(b))
	}
	panic("unreachable")
}

func (r *reader) array(t ValueType, n uint64, depth int) (any, error) {
	// Every element takes at least one byte (strings eight, arrays twelve), so
	// n is bounded by what is left before anything is allocated.
	minSize := uint64(t.size())
	switch t {
	case TypeString:
		minSize = 8
	case TypeArray:
		minSize = 12
	}
	if minSize == 0 {
		return nil, fmt.Errorf("%w: unknown array element type %d", ErrFormat, uint32(t))
	}
	if n > uint64(r.left())/minSize {
		return nil, fmt.Errorf("%w: array of %d %s elements cannot fit in the %d bytes left", ErrFormat, n, t, r.left())
	}
	switch t {
	case TypeString:
		out := make([]string, n)
		for i := range out {
			s, err := r.str()
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case TypeArray:
		out := make([]Value, n)
		for i := range out {
			v, err := r.value(TypeArray, depth)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	b, _ := r.take(int(n * minSize))
	sz := int(minSize)
	switch t {
	case TypeUint8:
		return append([]uint8(nil), b...), nil
	case TypeInt8:
		return fill(b, sz, func(b []byte) int8 { return int8(b[0]) }), nil
	case TypeBool:
		return fill(b, sz, func(b []byte) bool { return b[0] != 0 }), nil
	case TypeUint16:
		return fill(b, sz, binary.LittleEndian.Uint16), nil
	case TypeInt16:
		return fill(b, sz, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) }), nil
	case TypeUint32:
		return fill(b, sz, binary.LittleEndian.Uint32), nil
	case TypeInt32:
		return fill(b, sz, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) }), nil
	case TypeFloat32:
		return fill(b, sz, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }), nil
	case TypeUint64:
		return fill(b, sz, binary.LittleEndian.Uint64), nil
	case TypeInt64:
		return fill(b, sz, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) }), nil
	case TypeFloat64:
		return fill(b, sz, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }), nil
	}
	panic("unreachable")
}

func fill[T any](b []byte, size int, dec func([]byte) T) []T {
	out := make([]T, len(b)/size)
	for i := range out {
		out[i] = dec(b[i*size:])
	}
	return out
}

func (r *reader) tensorInfo() (Tensor, error) {
	name, err := r.str()
	if err != nil {
		return Tensor{}, fmt.Errorf("name: %w", err)
	}
	nd, err := r.u32()
	if err != nil {
		return Tensor{}, fmt.Errorf("%q: %w", name, r.short("dimension count"))
	}
	if nd == 0 || nd > MaxDims {
		return Tensor{}, fmt.Errorf("%w: tensor %q has %d dimensions (1 to %d allowed)", ErrFormat, name, nd, MaxDims)
	}
	shape := make([]uint64, nd)
	total := uint64(1)
	for i := range shape {
		d, err := r.u64()
		if err != nil {
			return Tensor{}, fmt.Errorf("%q: %w", name, r.short("shape"))
		}
		if d == 0 || total > math.MaxInt64/d {
			return Tensor{}, fmt.Errorf("%w: tensor %q has an invalid shape (dimension %d is %d)", ErrFormat, name, i, d)
		}
		shape[i] = d
		total *= d
	}
	tt, err := r.u32()
	if err != nil {
		return Tensor{}, fmt.Errorf("%q: %w", name, r.short("type"))
	}
	typ := Type(tt)
	if !typ.Known() {
		return Tensor{}, fmt.Errorf("%w: tensor %q has unknown type %d", ErrFormat, name, tt)
	}
	if shape[0]%uint64(typ.BlockSize()) != 0 {
		return Tensor{}, fmt.Errorf("%w: tensor %q: row of %d elements is not a multiple of the %s block size %d", ErrFormat, name, shape[0], typ, typ.BlockSize())
	}
	if total/uint64(typ.BlockSize()) > math.MaxInt64/uint64(typ.TypeSize()) {
		return Tensor{}, fmt.Errorf("%w: tensor %q is too large", ErrFormat, name)
	}
	off, err := r.u64()
	if err != nil {
		return Tensor{}, fmt.Errorf("%q: %w", name, r.short("offset"))
	}
	return Tensor{Name: name, Type: typ, Shape: shape, Offset: off}, nil
}
