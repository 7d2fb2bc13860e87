package cpu

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/internal/shared"
	"github.com/godwit-ai/godwit/models/gguf"
)

// golden is the part of a random model's NAME.golden.json this package checks.
type golden struct {
	BaseModelFile string `json:"base_model_file"`
	Tensors       []struct {
		Name   string   `json:"name"`
		Type   string   `json:"type"`
		Ne     []uint64 `json:"ne"`
		SHA256 string   `json:"dequant_f32_sha256"`
	} `json:"tensors"`
}

// randomModels returns the paths of every .gguf file in shared/models/random.
func randomModels(t *testing.T) []string {
	t.Helper()
	var all []string
	// Dequantization does not depend on the architecture: the families
	// the engine does not run yet are checked too.
	for _, rel := range []string{"models/random", "models/random-families"} {
		dir := shared.Path(t, rel)
		files, err := filepath.Glob(filepath.Join(dir, "*.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no .gguf files in %s", dir)
		}
		all = append(all, files...)
	}
	return all
}

func openModel(t *testing.T, path string) (*gguf.File, *golden) {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	raw, err := os.ReadFile(strings.TrimSuffix(path, ".gguf") + ".golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return f, &g
}

func dequantTensor(t *testing.T, tn *gguf.Tensor) []float32 {
	t.Helper()
	out := make([]float32, tn.Elements())
	if err := Dequantize(tn.Type, tn.Data, out); err != nil {
		t.Fatalf("%s: %v", tn.Name, err)
	}
	return out
}

// TestDequantizeGolden checks every tensor of every random model against the
// sha256 of ggml's own dequantization recorded beside it: bit-for-bit.
func TestDequantizeGolden(t *testing.T) {
	for _, path := range randomModels(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, g := openModel(t, path)
			if len(g.Tensors) != len(f.Tensors) {
				t.Errorf("golden lists %d tensors, file has %d", len(g.Tensors), len(f.Tensors))
			}
			for _, want := range g.Tensors {
				tn, ok := f.Tensor(want.Name)
				if !ok {
					t.Errorf("%s: not in file", want.Name)
					continue
				}
				if tn.Type.String() != want.Type || !slices.Equal(tn.Shape, want.Ne) {
					t.Errorf("%s: file has %v %v, golden %s %v", want.Name, tn.Type, tn.Shape, want.Type, want.Ne)
					continue
				}
				vals := dequantTensor(t, tn)
				buf := make([]byte, 4*len(vals))
				for i, v := range vals {
					binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
				}
				sum := sha256.Sum256(buf)
				if got := hex.EncodeToString(sum[:]); got != want.SHA256 {
					t.Errorf("%s (%s): dequantized sha256 %s, ggml's %s", want.Name, want.Type, got, want.SHA256)
				}
			}
		})
	}
}

// le16 appends v little endian.
func le16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }

// TestDequantizeHandBuilt decodes one block per type built by hand from the
// layouts in ggml-common.h, against values worked out independently.
func TestDequantizeHandBuilt(t *testing.T) {
	const (
		half     = 0x3800 // fp16 0.5
		quarter  = 0x3400 // fp16 0.25
		one      = 0x3c00 // fp16 1
		minusTwo = 0xc000 // fp16 −2
	)
	type tc struct {
		name string
		typ  gguf.Type
		blk  []byte
		want func(i int) float32
	}
	var cases []tc

	// Q8_0: d = 0.5, q_i = i − 16.
	b := le16(nil, half)
	for i := range 32 {
		b = append(b, byte(int8(i-16)))
	}
	cases = append(cases, tc{"Q8_0", gguf.Q8_0, b, func(i int) float32 { return float32(i-16) / 2 }})

	// Q4_0: d = 0.5; byte j holds q_j = j in the low nibble, q_{j+16} = 15−j high.
	b = le16(nil, half)
	for j := range 16 {
		b = append(b, byte(j)|byte(15-j)<<4)
	}
	cases = append(cases, tc{"Q4_0", gguf.Q4_0, b, func(i int) float32 {
		if i < 16 {
			return float32(i-8) * 0.5
		}
		return float32(15-(i-16)-8) * 0.5
	}})

	// Q4_1: d = 0.25, m = −2; q_j = j, q_{j+16} = 15−j.
	b = le16(le16(nil, quarter), minusTwo)
	for j := range 16 {
		b = append(b, byte(j)|byte(15-j)<<4)
	}
	cases = append(cases, tc{"Q4_1", gguf.Q4_1, b, func(i int) float32 {
		if i < 16 {
			return float32(i)*0.25 - 2
		}
		return float32(31-i)*0.25 - 2
	}})

	// Q5_0: d = 1; fifth bit set for odd i, so q_i = (i mod 16) + 16·(i odd).
	b = le16(nil, one)
	b = binary.LittleEndian.AppendUint32(b, 0xaaaaaaaa)
	for j := range 16 {
		b = append(b, byte(j)|byte(j)<<4)
	}
	q5 := func(i int) int { return i%16 + 16*(i%2) }
	cases = append(cases, tc{"Q5_0", gguf.Q5_0, b, func(i int) float32 { return float32(q5(i) - 16) }})

	// Q5_1: d = 0.5, m = 1, same levels.
	b = le16(le16(nil, half), one)
	b = binary.LittleEndian.AppendUint32(b, 0xaaaaaaaa)
	for j := range 16 {
		b = append(b, byte(j)|byte(j)<<4)
	}
	cases = append(cases, tc{"Q5_1", gguf.Q5_1, b, func(i int) float32 { return float32(q5(i))*0.5 + 1 }})

	// Q4_K: d = 1, dmin = 0.5. Sub-block s has scale s+1 and min 2s; the
	// 6-bit fields of sub-blocks 4..7 put their low 4 bits in bytes 8..11 and
	// their top 2 bits in the top of bytes 0..7 (all zero here, as s+1 ≤ 8 and
	// 2s ≤ 14 fit 4 bits). Level of value i: i mod 16.
	kscales := []byte{1, 2, 3, 4, 0, 2, 4, 6, 5 | 8<<4, 6 | 10<<4, 7 | 12<<4, 8 | 14<<4}
	b = append(le16(le16(nil, one), half), kscales...)
	for c := range 4 {
		for l := range 32 {
			lo, hi := (64*c+l)%16, (64*c+32+l)%16
			b = append(b, byte(lo)|byte(hi)<<4)
		}
	}
	cases = append(cases, tc{"Q4_K", gguf.Q4_K, b, func(i int) float32 {
		s := i / 32
		return float32((s+1)*(i%16)) - 0.5*float32(2*s)
	}})

	// Q5_K: as Q4_K with d = 0.5, dmin = 1 and the fifth bit set on every
	// value of sub-blocks 1, 2 and 7 (bits 1, 2, 7 of every qh byte).
	b = append(le16(le16(nil, half), one), kscales...)
	for range 32 {
		b = append(b, 0x86)
	}
	for c := range 4 {
		for l := range 32 {
			lo, hi := (64*c+l)%16, (64*c+32+l)%16
			b = append(b, byte(lo)|byte(hi)<<4)
		}
	}
	cases = append(cases, tc{"Q5_K", gguf.Q5_K, b, func(i int) float32 {
		s := i / 32
		q := i % 16
		if s == 1 || s == 2 || s == 7 {
			q += 16
		}
		return 0.5*float32((s+1)*q) - float32(2*s)
	}})

	// Q6_K: d = 0.25; sub-block s (16 values) has scale s−8; every level is
	// 32 + (i mod 32) − 16, so q−32 = (i mod 32) − 16. Low nibbles: ql[l] holds
	// values l and l+64 of a 128-value half, ql[l+32] values l+32 and l+96;
	// qh[l] holds the top 2 bits of l, l+32, l+64, l+96 at shifts 0, 2, 4, 6.
	lev := func(i int) int { return 32 + i%32 - 16 }
	ql, qh := make([]byte, 128), make([]byte, 64)
	for h := range 2 {
		for l := range 32 {
			v := func(k int) int { return lev(128*h + l + k) }
			ql[64*h+l] = byte(v(0)&0xf) | byte(v(64)&0xf)<<4
			ql[64*h+l+32] = byte(v(32)&0xf) | byte(v(96)&0xf)<<4
			qh[32*h+l] = byte(v(0)>>4) | byte(v(32)>>4)<<2 | byte(v(64)>>4)<<4 | byte(v(96)>>4)<<6
		}
	}
	b = append(append([]byte{}, ql...), qh...)
	for s := range 16 {
		b = append(b, byte(int8(s-8)))
	}
	b = le16(b, quarter)
	cases = append(cases, tc{"Q6_K", gguf.Q6_K, b, func(i int) float32 {
		return 0.25 * float32(i/16-8) * float32(i%32-16)
	}})

	// F16 and BF16: a few encodings spelled out.
	f16 := map[uint16]float32{0x0000: 0, 0x8000: float32(math.Copysign(0, -1)), 0x3c00: 1, 0xc000: -2, 0x7bff: 65504,
		0x0001: 0x1p-24, 0x03ff: 1023 * 0x1p-24, 0x0400: 0x1p-14, 0x3555: 0.333251953125, 0x7c00: float32(math.Inf(1))}
	bf16 := map[uint16]float32{0x0000: 0, 0x3f80: 1, 0xc000: -2, 0x3eab: 0.333984375, 0x7f7f: 0x1.fep127,
		0x0001: 0x1p-133, 0xff80: float32(math.Inf(-1))}
	for name, m := range map[string]map[uint16]float32{"F16": f16, "BF16": bf16} {
		typ := gguf.F16
		if name == "BF16" {
			typ = gguf.BF16
		}
		var keys []uint16
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = nil
		for _, k := range keys {
			b = le16(b, k)
		}
		cases = append(cases, tc{name, typ, b, func(i int) float32 { return m[keys[i]] }})
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := c.typ.BlockSize()
			if n == 1 {
				n = len(c.blk) / 2
			}
			if len(c.blk) != c.typ.RowSize(n) {
				t.Fatalf("hand-built block has %d bytes, want %d", len(c.blk), c.typ.RowSize(n))
			}
			got := make([]float32, n)
			if err := Dequantize(c.typ, c.blk, got); err != nil {
				t.Fatal(err)
			}
			for i, v := range got {
				if w := c.want(i); math.Float32bits(v) != math.Float32bits(w) {
					t.Errorf("value %d: got %v, want %v", i, v, w)
				}
			}
		})
	}
}

func TestDequantizeErrors(t *testing.T) {
	dst := make([]float32, 64)
	if err := Dequantize(gguf.Q2_K, make([]byte, 84), make([]float32, 256)); err == nil {
		t.Error("Q2_K: no error for an unsupported type")
	}
	if err := Dequantize(gguf.Q8_0, make([]byte, 68), dst[:40]); err == nil {
		t.Error("Q8_0: no error for 40 values")
	}
	if err := Dequantize(gguf.Q8_0, make([]byte, 67), dst); err == nil {
		t.Error("Q8_0: no error for a short source")
	}
	if err := Dequantize(gguf.Q8_0, make([]byte, 68), dst); err != nil {
		t.Errorf("Q8_0: %v", err)
	}
	if err := Quantize(gguf.Q4_K, dst, make([]byte, 144)); err == nil {
		t.Error("Q4_K: Quantize accepted 64 values")
	}
}
