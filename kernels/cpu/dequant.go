package cpu

import (
	"encoding/binary"

	"github.com/godwit-ai/godwit/models/gguf"
)

// Dequantize writes len(dst) values decoded from src. len(dst) must be a
// multiple of t's block size and src must hold exactly t.RowSize(len(dst))
// bytes. The values are bit-for-bit those of ggml's dequantize_row_*: each
// product and difference is rounded to float32 in ggml's order.
func Dequantize(t gguf.Type, src []byte, dst []float32) error {
	if err := checkSizes(t, len(dst), len(src)); err != nil {
		return err
	}
	switch t {
	case gguf.F32:
		for i := range dst {
			dst[i] = f32le(src[4*i:])
		}
		return nil
	case gguf.F16:
		for i := range dst {
			dst[i] = FP16ToFP32(binary.LittleEndian.Uint16(src[2*i:]))
		}
		return nil
	case gguf.BF16:
		for i := range dst {
			dst[i] = BF16ToFP32(binary.LittleEndian.Uint16(src[2*i:]))
		}
		return nil
	}
	var f func(x []byte, y []float32)
	switch t {
	case gguf.Q8_0:
		f = dequantBlockQ8_0
	case gguf.Q4_0:
		f = dequantBlockQ4_0
	case gguf.Q4_1:
		f = dequantBlockQ4_1
	case gguf.Q5_0:
		f = dequantBlockQ5_0
	case gguf.Q5_1:
		f = dequantBlockQ5_1
	case gguf.Q4_K:
		f = dequantBlockQ4_K
	case gguf.Q5_K:
		f = dequantBlockQ5_K
	case gguf.Q6_K:
		f = dequantBlockQ6_K
	}
	bs, ts := t.BlockSize(), t.TypeSize()
	for b := 0; b < len(dst)/bs; b++ {
		f(src[b*ts:(b+1)*ts], dst[b*bs:(b+1)*bs])
	}
	return nil
}

// Block layouts (little endian, fp16 scales):
//
//	Q8_0 (34 B): d, qs[32] int8                  x = q·d
//	Q4_0 (18 B): d, qs[16]                       x = (q−8)·d
//	Q4_1 (20 B): d, m, qs[16]                    x = q·d + m
//	Q5_0 (22 B): d, qh u32, qs[16]               x = (q−16)·d
//	Q5_1 (24 B): d, m, qh u32, qs[16]            x = q·d + m
//
// In the 4- and 5-bit types byte j holds value j in its low nibble and value
// j+16 in its high nibble; bit j of qh is the fifth bit of value j.

func dequantBlockQ8_0(x []byte, y []float32) {
	d := getF16(x)
	for j, v := range x[2:34] {
		y[j] = float32(int8(v)) * d
	}
}

func dequantBlockQ4_0(x []byte, y []float32) {
	d := getF16(x)
	for j, v := range x[2:18] {
		y[j] = float32(int(v&0xf)-8) * d
		y[j+16] = float32(int(v>>4)-8) * d
	}
}

func dequantBlockQ4_1(x []byte, y []float32) {
	d, m := getF16(x), getF16(x[2:])
	for j, v := range x[4:20] {
		y[j] = float32(float32(v&0xf)*d) + m
		y[j+16] = float32(float32(v>>4)*d) + m
	}
}

func dequantBlockQ5_0(x []byte, y []float32) {
	d := getF16(x)
	qh := binary.LittleEndian.Uint32(x[2:])
	for j, v := range x[6:22] {
		lo := int(v&0xf) | int(qh>>j&1)<<4
		hi := int(v>>4) | int(qh>>(j+16)&1)<<4
		y[j] = float32(lo-16) * d
		y[j+16] = float32(hi-16) * d
	}
}

func dequantBlockQ5_1(x []byte, y []float32) {
	d, m := getF16(x), getF16(x[2:])
	qh := binary.LittleEndian.Uint32(x[4:])
	for j, v := range x[8:24] {
		lo := v&0xf | uint8(qh>>j&1)<<4
		hi := v>>4 | uint8(qh>>(j+16)&1)<<4
		y[j] = float32(float32(lo)*d) + m
		y[j+16] = float32(float32(hi)*d) + m
	}
}

// Q4_K (144 B): d, dmin, scales[12], qs[128]. Eight sub-blocks of 32 values,
// x = d·sc·q − dmin·m with 6-bit sc and m; each 64-value chunk takes 32 bytes,
// its first half in the low nibbles.
func dequantBlockQ4_K(x []byte, y []float32) {
	d, dmin := getF16(x), getF16(x[2:])
	sc, qs := x[4:16], x[16:144]
	for c := range 4 {
		s1, m1 := scaleMinK4(2*c, sc)
		s2, m2 := scaleMinK4(2*c+1, sc)
		d1, dm1 := d*float32(s1), float32(dmin*float32(m1))
		d2, dm2 := d*float32(s2), float32(dmin*float32(m2))
		q, out := qs[32*c:32*c+32], y[64*c:64*c+64]
		for l, v := range q {
			out[l] = float32(d1*float32(v&0xf)) - dm1
			out[l+32] = float32(d2*float32(v>>4)) - dm2
		}
	}
}

// Q5_K (176 B): d, dmin, scales[12], qh[32], qs[128]. As Q4_K with a fifth
// bit: for chunk c, bit 2c of qh[l] belongs to value l of its first half and
// bit 2c+1 to value l of its second half.
func dequantBlockQ5_K(x []byte, y []float32) {
	d, dmin := getF16(x), getF16(x[2:])
	sc, qh, qs := x[4:16], x[16:48], x[48:176]
	for c := range 4 {
		s1, m1 := scaleMinK4(2*c, sc)
		s2, m2 := scaleMinK4(2*c+1, sc)
		d1, dm1 := d*float32(s1), float32(dmin*float32(m1))
		d2, dm2 := d*float32(s2), float32(dmin*float32(m2))
		q, out := qs[32*c:32*c+32], y[64*c:64*c+64]
		for l, v := range q {
			lo := v&0xf | (qh[l]>>(2*c)&1)<<4
			hi := v>>4 | (qh[l]>>(2*c+1)&1)<<4
			out[l] = float32(d1*float32(lo)) - dm1
			out[l+32] = float32(d2*float32(hi)) - dm2
		}
	}
}

// Q6_K (210 B): ql[128], qh[64], scales[16] int8, d. Sixteen sub-blocks of 16,
// x = d·sc·(q−32). In each 128-value half, value l (l < 32) and l+64 share
// ql[l] (low, high nibble), l+32 and l+96 share ql[l+32], and qh[l] carries
// the top two bits of all four.
func dequantBlockQ6_K(x []byte, y []float32) {
	d := getF16(x[208:])
	for h := range 2 {
		ql, qh, sc := x[64*h:64*h+64], x[128+32*h:160+32*h], x[192+8*h:200+8*h]
		out := y[128*h : 128*h+128]
		for l := range 32 {
			is := l / 16
			q1 := int(ql[l]&0xf|(qh[l]&3)<<4) - 32
			q2 := int(ql[l+32]&0xf|(qh[l]>>2&3)<<4) - 32
			q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
			q4 := int(ql[l+32]>>4|(qh[l]>>6)<<4) - 32
			out[l] = d * float32(int8(sc[is])) * float32(q1)
			out[l+32] = d * float32(int8(sc[is+2])) * float32(q2)
			out[l+64] = d * float32(int8(sc[is+4])) * float32(q3)
			out[l+96] = d * float32(int8(sc[is+6])) * float32(q4)
		}
	}
}
