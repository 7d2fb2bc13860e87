package gguf

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// seedFile is a small valid file with every value kind and two tensors.
func seedFile(tb testing.TB) []byte {
	w := NewWriter()
	w.Set("general.architecture", String("llama"))
	w.Set("tokenizer.ggml.tokens", Strings([]string{"<s>", "a", "b"}))
	w.Set("tokenizer.ggml.scores", Float32s([]float32{0, -1, -2}))
	w.Set("nested", Value{Type: TypeArray, Elem: TypeArray, V: []Value{Int32s([]int32{1})}})
	w.Set("f64", Value{Type: TypeFloat64, V: 1.0})
	if err := w.AddTensor("w", Q4_0, []uint64{32, 2}, make([]byte, 36)); err != nil {
		tb.Fatal(err)
	}
	if err := w.AddTensor("n", F32, []uint64{2}, make([]byte, 8)); err != nil {
		tb.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// FuzzParse checks that no input makes Parse panic, hang or allocate beyond
// the input's size, and that accepted files keep tensors inside the input.
func FuzzParse(f *testing.F) {
	valid := seedFile(f)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte("GGUF\x01\x00\x00\x00"))
	huge := bytes.Clone(valid[:24])
	binary.LittleEndian.PutUint64(huge[8:], 1<<62)
	f.Add(huge)
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Parse(data)
		if err != nil {
			return
		}
		for _, tn := range g.Tensors {
			if len(tn.Data) != tn.Type.RowSize(int(tn.Shape[0]))*tn.Rows() {
				t.Fatalf("tensor %q: %d bytes for shape %v", tn.Name, len(tn.Data), tn.Shape)
			}
		}
	})
}
