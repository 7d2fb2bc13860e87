package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// Writer builds a GGUF version 3 file. The zero value is not usable: call
// NewWriter.
type Writer struct {
	alignment int
	kv        []KV
	keys      map[string]int
	tensors   []Tensor
	names     map[string]bool
	dataSize  uint64
}

// NewWriter returns an empty writer with the default alignment.
func NewWriter() *Writer {
	return &Writer{alignment: DefaultAlignment, keys: map[string]int{}, names: map[string]bool{}}
}

// Set adds or replaces a metadata entry; entries keep their first position.
func (w *Writer) Set(key string, v Value) {
	if key == "general.alignment" {
		if a, ok := v.V.(uint32); ok && a > 0 && a&(a-1) == 0 {
			w.alignment = int(a)
		}
	}
	if i, ok := w.keys[key]; ok {
		w.kv[i].Value = v
		return
	}
	w.keys[key] = len(w.kv)
	w.kv = append(w.kv, KV{Key: key, Value: v})
}

// AddTensor appends a tensor; shape is in ggml order and data must hold
// exactly the tensor's bytes.
func (w *Writer) AddTensor(name string, typ Type, shape []uint64, data []byte) error {
	if w.names[name] {
		return fmt.Errorf("gguf writer: duplicate tensor %q", name)
	}
	if !typ.Known() || len(shape) == 0 || len(shape) > MaxDims {
		return fmt.Errorf("gguf writer: tensor %q: bad type %s or shape %v", name, typ, shape)
	}
	t := Tensor{Name: name, Type: typ, Shape: append([]uint64(nil), shape...), Data: data}
	if shape[0]%uint64(typ.BlockSize()) != 0 {
		return fmt.Errorf("gguf writer: tensor %q: row of %d is not a multiple of the %s block size %d", name, shape[0], typ, typ.BlockSize())
	}
	want := uint64(typ.RowSize(int(shape[0]))) * uint64(t.Rows())
	if uint64(len(data)) != want {
		return fmt.Errorf("gguf writer: tensor %q: %d bytes of data, want %d", name, len(data), want)
	}
	t.Offset = alignUp(w.dataSize, uint64(w.alignment))
	w.dataSize = t.Offset + want
	w.names[name] = true
	w.tensors = append(w.tensors, t)
	return nil
}

// WriteFile writes the file to path.
func (w *Writer) WriteFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := w.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// WriteTo writes the whole file.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	cw := &countWriter{w: bufio.NewWriterSize(out, 1<<20)}
	e := &encoder{w: cw}
	e.u32(Magic)
	e.u32(3)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kv)))
	for _, kv := range w.kv {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		e.value(kv.Value)
	}
	for _, t := range w.tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for _, d := range t.Shape {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(t.Offset)
	}
	e.pad(w.alignment)
	start := cw.n
	for _, t := range w.tensors {
		e.pad(w.alignment)
		if uint64(cw.n-start) != t.Offset {
			return cw.n, fmt.Errorf("gguf writer: internal offset mismatch for %q", t.Name)
		}
		e.raw(t.Data)
	}
	if e.err != nil {
		return cw.n, e.err
	}
	return cw.n, cw.w.Flush()
}

type countWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// encoder writes little-endian values, remembering the first error.
type encoder struct {
	w   *countWriter
	err error
	buf [8]byte
}

func (e *encoder) raw(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

func (e *encoder) u8(x uint8)   { e.raw([]byte{x}) }
func (e *encoder) u16(x uint16) { binary.LittleEndian.PutUint16(e.buf[:], x); e.raw(e.buf[:2]) }
func (e *encoder) u32(x uint32) { binary.LittleEndian.PutUint32(e.buf[:], x); e.raw(e.buf[:4]) }
func (e *encoder) u64(x uint64) { binary.LittleEndian.PutUint64(e.buf[:], x); e.raw(e.buf[:8]) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.raw([]byte(s)) }

func (e *encoder) pad(align int) {
	if r := int(e.w.n % int64(align)); r != 0 {
		e.raw(make([]byte, align-r))
	}
}

func (e *encoder) value(v Value) {
	if v.Type == TypeArray {
		e.u32(uint32(v.Elem))
		e.u64(uint64(v.Len()))
		e.array(v)
		return
	}
	e.scalar(v.V)
}

func (e *encoder) scalar(x any) {
	switch x := x.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case string:
		e.str(x)
	default:
		if e.err == nil {
			e.err = fmt.Errorf("gguf writer: unsupported value %T", x)
		}
	}
}

func (e *encoder) array(v Value) {
	switch a := v.V.(type) {
	case []Value:
		for _, x := range a {
			e.value(x)
		}
	case []uint8:
		e.raw(a)
	default:
		each(a, e.scalar)
	}
}

func each(a any, f func(any)) {
	switch a := a.(type) {
	case []int8:
		eachOf(a, f)
	case []bool:
		eachOf(a, f)
	case []uint16:
		eachOf(a, f)
	case []int16:
		eachOf(a, f)
	case []uint32:
		eachOf(a, f)
	case []int32:
		eachOf(a, f)
	case []float32:
		eachOf(a, f)
	case []uint64:
		eachOf(a, f)
	case []int64:
		eachOf(a, f)
	case []float64:
		eachOf(a, f)
	case []string:
		eachOf(a, f)
	default:
		f(a)
	}
}

func eachOf[T any](a []T, f func(any)) {
	for _, x := range a {
		f(x)
	}
}
