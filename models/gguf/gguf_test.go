package gguf

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-ai/godwit/internal/shared"
)

func TestOpenStories(t *testing.T) {
	f, err := Open(shared.Path(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Version != 3 {
		t.Errorf("version %d, want 3", f.Version)
	}
	if a, _ := f.String("general.architecture"); a != "llama" {
		t.Errorf("architecture %q", a)
	}
	if n, _ := f.Int("llama.embedding_length"); n != 64 {
		t.Errorf("embedding_length %d, want 64", n)
	}
	toks, ok := f.Strings("tokenizer.ggml.tokens")
	if !ok || len(toks) != 512 {
		t.Fatalf("tokens: %d", len(toks))
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok {
		t.Fatal("no token_embd.weight")
	}
	if emb.Type != F32 || emb.Shape[0] != 64 || emb.Shape[1] != 512 || len(emb.Data) != 64*512*4 {
		t.Errorf("token_embd: %v %v %d bytes", emb.Type, emb.Shape, len(emb.Data))
	}
}

func TestRefusesVersion1(t *testing.T) {
	_, err := Open(shared.Path(t, "models/legacy-v1-stories260K.gguf"))
	if err == nil || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("want an error naming version 1, got %v", err)
	}
}

// TestRoundTrip writes every value type (nested arrays too) and reads it back.
func TestRoundTrip(t *testing.T) {
	w := NewWriter()
	w.Set("general.architecture", String("llama"))
	w.Set("u8", Value{Type: TypeUint8, V: uint8(7)})
	w.Set("i8", Value{Type: TypeInt8, V: int8(-7)})
	w.Set("u16", Value{Type: TypeUint16, V: uint16(700)})
	w.Set("i16", Value{Type: TypeInt16, V: int16(-700)})
	w.Set("u32", Uint32(70000))
	w.Set("i32", Int32(-70000))
	w.Set("f32", Float32(1.5))
	w.Set("bool", Bool(true))
	w.Set("u64", Uint64(1<<40))
	w.Set("i64", Value{Type: TypeInt64, V: int64(-1 << 40)})
	w.Set("f64", Value{Type: TypeFloat64, V: 2.25})
	w.Set("strs", Strings([]string{"a", "", "ü"}))
	w.Set("nested", Value{Type: TypeArray, Elem: TypeArray, V: []Value{Int32s([]int32{1, 2}), Strings([]string{"x"})}})
	w.Set("general.alignment", Uint32(64))
	data := make([]byte, 34*2)
	for i := range data {
		data[i] = byte(i)
	}
	if err := w.AddTensor("a", Q8_0, []uint64{32, 2}, data); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("b", F32, []uint64{3}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Errorf("alignment %d, data offset %d", f.Alignment, f.DataOffset)
	}
	checks := map[string]any{"u8": uint8(7), "i8": int8(-7), "u16": uint16(700), "i16": int16(-700), "u32": uint32(70000),
		"i32": int32(-70000), "f32": float32(1.5), "bool": true, "u64": uint64(1 << 40), "i64": int64(-1 << 40), "f64": 2.25}
	for k, want := range checks {
		if v, _ := f.Get(k); v.V != want {
			t.Errorf("%s = %#v, want %#v", k, v.V, want)
		}
	}
	if s, _ := f.Strings("strs"); len(s) != 3 || s[2] != "ü" {
		t.Errorf("strs = %q", s)
	}
	nested, _ := f.Get("nested")
	inner := nested.V.([]Value)
	if len(inner) != 2 || inner[0].V.([]int32)[1] != 2 || inner[1].V.([]string)[0] != "x" {
		t.Errorf("nested = %#v", nested)
	}
	a, _ := f.Tensor("a")
	if !bytes.Equal(a.Data, data) || a.Offset%64 != 0 {
		t.Errorf("tensor a: offset %d", a.Offset)
	}
	b, _ := f.Tensor("b")
	if b.Offset%64 != 0 || b.Data[11] != 12 {
		t.Errorf("tensor b: offset %d", b.Offset)
	}
	// Every truncation is an error, never a panic.
	raw := buf.Bytes()
	for n := 0; n < len(raw); n++ {
		if _, err := Parse(raw[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(raw))
		} else if n > 8 && !errors.Is(err, ErrFormat) {
			t.Fatalf("truncated to %d: error does not wrap ErrFormat: %v", n, err)
		}
	}
}

func TestHostileCounts(t *testing.T) {
	hdr := func(nt, nkv uint64) []byte {
		var b bytes.Buffer
		e := &encoder{w: &countWriter{w: bufioWriter(&b)}}
		e.u32(Magic)
		e.u32(3)
		e.u64(nt)
		e.u64(nkv)
		e.str("k")
		e.u32(uint32(TypeArray))
		e.u32(uint32(TypeString))
		e.u64(1 << 62)
		e.w.w.Flush()
		return b.Bytes()
	}
	for _, c := range []struct{ nt, nkv uint64 }{{1 << 60, 1}, {0, 1 << 60}, {0, 1}} {
		if _, err := Parse(hdr(c.nt, c.nkv)); err == nil {
			t.Errorf("counts %v: no error", c)
		}
	}
}

// TestOpenRefusesNonRegular: a FIFO or a directory as the model path is an
// error at once, where opening a FIFO would block until something wrote to it.
func TestOpenRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "model.gguf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	for _, p := range []string{fifo, dir} {
		done := make(chan error, 1)
		go func() {
			_, err := Open(p)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("Open(%s): %v, want a refusal of a file that is not regular", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Open(%s) blocked", p)
		}
	}
}
