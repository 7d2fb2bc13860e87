package cpu

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/godwit-ai/godwit/kernels"
	"github.com/godwit-ai/godwit/models/gguf"
)

// The expected bits below come from ggml itself (llama.cpp @ 3f545be, the
// build the random-model goldens were made with): vec.h, vec.cpp and the x86
// quants.c compiled with gcc 12 -O2 -march=native -std=gnu11/gnu++17 on an
// AVX512F machine, fed the inputs that detInputs makes; the sinf/cosf bits
// from glibc 2.36 on a CPU with FMA. They pin the float order, not just the
// accuracy: a kernel that adds in another order fails them.

// detInputs returns n values of the harness's generator: an integer in
// [−10000, 10000] over 4096, so exact in float32 on both sides.
func detInputs(seed uint32, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		seed = seed*1664525 + 1013904223
		v[i] = float32(int((seed>>8)%20001)-10000) / 4096
	}
	return v
}

func checkBits(t *testing.T, what string, got []float32, want []uint32) {
	t.Helper()
	for i, w := range want {
		if g := math.Float32bits(got[i]); g != w {
			t.Errorf("%s[%d] = %g (%#08x), ggml gives %g (%#08x)", what, i, got[i], g, math.Float32frombits(w), w)
		}
	}
}

func TestExpfMatchesGGML(t *testing.T) {
	t.Parallel()
	cases := [][2]uint32{
		{0x00000000, 0x3f800000},
		{0x80000000, 0x3f800000},
		{0x3f800000, 0x402df855},
		{0xbf800000, 0x3ebc5ab3},
		{0x3f000000, 0x3fd3094c},
		{0xbf000000, 0x3f1b4597},
		{0x40135d8d, 0x411ffffe},
		{0xc0135d8d, 0x3dcccccf},
		{0x41200000, 0x46ac14f0},
		{0xc1200000, 0x383e6bce},
		{0x41f00000, 0x551b8238},
		{0xc1f00000, 0x29d2b706},
		{0x42b00000, 0x7ef882b7},
		{0x42b16666, 0x7f7a37fc},
		{0x42b20000, 0x7f800000},
		{0xc2ae0000, 0x00b33686},
		{0xc2c80000, 0x0000001b},
		{0xc2ce0000, 0x00000001},
		{0xc2d00000, 0x00000000},
		{0xc2f00000, 0x00000000},
		{0x33d6bf95, 0x3f800001},
		{0xb3d6bf95, 0x3f7ffffe},
		{0x3f317215, 0x3ffffffd},
		{0xbf317215, 0x3f000001},
		{0x40533333, 0x41d8e6ae},
		{0xc0533333, 0x3d1712cd},
		{0x40f8a3d7, 0x45140789},
		{0xc0f8a3d7, 0x39dd5c81},
		{0x41780000, 0x4aa47b05},
		{0xc1780000, 0x3447389c},
		{0x42480000, 0x638c881f},
		{0xc2480000, 0x1b692beb},
		{0xc043d000, 0x3d402272},
		{0x409d0000, 0x430721b8},
		{0x41122c00, 0x461104a7},
		{0xc0902800, 0x3c351f8c},
		{0xc000d000, 0x3e08d5c8},
		{0x410f7000, 0x45f47946},
		{0x40f12000, 0x44ea1795},
		{0x3f4f4000, 0x400fcde6},
		{0x40d14800, 0x442d1414},
		{0xc0b44000, 0x3b6a8536},
		{0xc1024800, 0x39988218},
		{0xc07bf000, 0x3c9fdfe7},
		{0xbeb30000, 0x3f34787a},
		{0xc1111800, 0x38f1b550},
		{0xc0c43000, 0x3b0e8598},
		{0x409d9000, 0x43098730},
		{0xc0e85000, 0x3a385bd8},
		{0xc0c23000, 0x3b17b6b7},
		{0x3fc82000, 0x4098d007},
		{0x40ba3800, 0x43a85fcb},
		{0xc0e36000, 0x3a571ddc},
		{0x4067a000, 0x421538d2},
		{0xc0cb6800, 0x3ae37a8e},
		{0xbea88000, 0x3f3835bc},
		{0x40f49800, 0x45027265},
		{0xc09b4000, 0x3c000f55},
		{0x41087800, 0x459e2716},
		{0xc0cb8000, 0x3ae2d032},
		{0x3fa46000, 0x40672628},
		{0x40e92800, 0x44b67d3f},
		{0x406ce000, 0x4221fa9b},
		{0x407b1000, 0x424a2d6f},
	}
	for _, c := range cases {
		x := math.Float32frombits(c[0])
		if got := expf(x); math.Float32bits(got) != c[1] {
			t.Errorf("expf(%g) = %g (%#08x), ggml_v_expf gives %g (%#08x)", x, got, math.Float32bits(got), math.Float32frombits(c[1]), c[1])
		}
	}
	if got := expf(float32(math.Inf(-1))); got != 0 {
		t.Errorf("expf(-Inf) = %g, want 0", got)
	}
	if got := expf(200); !math.IsInf(float64(got), 1) {
		t.Errorf("expf(200) = %g, want +Inf", got)
	}
}

// TestSoftmaxMatchesGGML runs under every kernel set.
func TestSoftmaxMatchesGGML(t *testing.T) {
	t.Parallel()
	for _, k := range testSets() {
		softmaxMatchesGGML(t, k)
	}
}

func softmaxMatchesGGML(t *testing.T, k *kernelSet) {
	// 40 scores scaled by 1/8, as ggml_soft_max_ext does for a KV row of 256
	// with the 216 positions past them masked.
	s := detInputs(2, 40)
	for i, v := range s {
		s[i] = float32(v*8) * 0.125
	}
	k.softmax(s)
	checkBits(t, "softmax "+k.String(), s, []uint32{
		0x3ca4afa9, 0x3d39ed00, 0x3c0d4807, 0x3b6fa3d4, 0x3bd963de, 0x3b80b480,
		0x3c87c3e0, 0x3b0bbf22, 0x3c3d010f, 0x3bb2093e, 0x3cab8a17, 0x3d87db1e,
		0x3a8fccf1, 0x3c81a496, 0x3cca9146, 0x3d81394e, 0x3d0cafed, 0x3d9ac626,
		0x3a72b796, 0x3d33057f, 0x3d37f071, 0x3d1a100a, 0x3b9fd312, 0x3c8b6d31,
		0x3b96fc96, 0x3a6bd317, 0x3d42a88b, 0x3d170bc3, 0x3a8ba615, 0x3d596c1f,
		0x3d032288, 0x3d2ce119, 0x3c1df51a, 0x3c676737, 0x3b42f7f9, 0x3d87b92b,
		0x3cb21c96, 0x3d0204e6, 0x3d2d8e51, 0x3c92398d,
	})
}

// TestSwiGLUMatchesGGML runs under every kernel set.
func TestSwiGLUMatchesGGML(t *testing.T) {
	t.Parallel()
	for _, k := range testSets() {
		swiGLUMatchesGGML(t, k)
	}
}

func swiGLUMatchesGGML(t *testing.T, k *kernelSet) {
	gu := detInputs(3, 96)
	g, u := make([]float32, 48), make([]float32, 48)
	for i := range g {
		g[i], u[i] = gu[2*i], gu[2*i+1]
	}
	k.swiGLU(g, u)
	checkBits(t, "swiglu "+k.String(), g, []uint32{
		0x4090dfb5, 0xbf64d456, 0x3d9ea0ea, 0xbf009d5b, 0xbd2cb7b4, 0x3da06682,
		0xbf4c85c5, 0xbf018c21, 0xbe8424b5, 0x3f87f5ae, 0xbfc2d6bf, 0x3fb3d386,
		0x3f679d4f, 0xbe8a123b, 0xbe3616fb, 0x403e5651, 0xbe9e1bcc, 0xc0059083,
		0x3d473360, 0x3ef94cbf, 0x3e80f6ec, 0xc045fb20, 0x3fdbd581, 0xbe92769f,
		0x3ca01c24, 0x402dffd2, 0xbec491ab, 0xbdfb455a, 0xbc885659, 0xbc6dff49,
		0x3f6fd20c, 0xc026938b, 0xbd75b80a, 0xbd2efe5b, 0x3fd6a612, 0xbdd2d1b9,
		0xbf8b21e6, 0x3cbb6620, 0x3dde6df2, 0x40ac664b, 0x3a73ee8a, 0x3ee03911,
		0x3ed4e7c7, 0x3e993cc7, 0xc024972d, 0x3f140dd3, 0xbf12c229, 0xbd2bc8a6,
	})
}

func TestDotMatchesGGML(t *testing.T) {
	t.Parallel()
	ab := detInputs(4, 200)
	a, b := make([]float32, 100), make([]float32, 100)
	for i := range a {
		a[i], b[i] = ab[2*i], ab[2*i+1]
	}
	checkBits(t, "ggml_vec_dot_f32", []float32{Dot(a[:64], b[:64]), Dot(a, b)}, []uint32{0xc0b75258, 0xbfa8e47e})
}

// TestQuantDotMatchesGGML multiplies one weight row (quantized by the
// reference quantizer) by one activation row: the ggml_vec_dot_*_q8_* path,
// under every kernel set.
func TestQuantDotMatchesGGML(t *testing.T) {
	t.Parallel()
	wx := detInputs(5, 1024)
	w, x := make([]float32, 512), make([]float32, 512)
	for i := range w {
		w[i], x[i] = wx[2*i], wx[2*i+1]/2
	}
	want := map[gguf.Type]uint32{
		gguf.Q8_0: 0xc15eaba8,
		gguf.Q4_0: 0xc144b5e1,
		gguf.Q5_0: 0xc15f41bc,
		gguf.Q4_1: 0xc14773f6,
		gguf.Q5_1: 0xc16a4d8c,
		gguf.Q4_K: 0xc160a8d6,
		gguf.Q5_K: 0xc1507e41,
		gguf.Q6_K: 0xc15955b0,
	}
	for _, k := range testSets() {
		s := Scratch{k: k}
		for typ, bits := range want {
			wq := make([]byte, typ.RowSize(len(w)))
			if err := Quantize(typ, w, wq); err != nil {
				t.Fatal(err)
			}
			out := make([]float32, 1)
			s.MatMul(out, typ, wq, 1, len(w), x, 1, kernels.OrderLlama)
			checkBits(t, typ.String()+" "+k.String(), out, []uint32{bits})
		}
	}
}

func TestSinfCosfMatchGlibc(t *testing.T) {
	t.Parallel()
	// The first 16 are RoPE angles (base 10000, positions < 40) where glibc's
	// result is not the correctly rounded one.
	cases := [][3]uint32{
		{0x3e99940e, 0x3e974921, 0x3f7491c0},
		{0x400dab87, 0x3f4ce871, 0xbf1974b8},
		{0x3ec98b09, 0x3ec460de, 0x3f6c6bc6},
		{0x3f888d77, 0x3f602bc6, 0x3ef74079},
		{0x3eacba15, 0x3ea9781a, 0x3f7191ea},
		{0x3fe39ea7, 0x3f7a826b, 0xbe52f0fc},
		{0x3e5a83d6, 0x3e58dc40, 0x3f7a3181},
		{0x3ee2ac0a, 0x3edb56f2, 0x3f6751b1},
		{0x4106f160, 0x3f56244a, 0xbf0c486f},
		{0x3f972847, 0x3f6cc9d7, 0x3ec29978},
		{0x3ebf3359, 0x3ebac996, 0x3f6e5b27},
		{0x3e309d76, 0x3e2fbda1, 0x3f7c33a3},
		{0x3e0a3374, 0x3e09c826, 0x3f7dac0c},
		{0x3da1e899, 0x3da1bd70, 0x3f7f334f},
		{0x4006618b, 0x3f5d0518, 0xbf012cd2},
		{0x3e26fe29, 0x3e2640ed, 0x3f7c9a79},
		{0x00000000, 0x00000000, 0x3f800000},
		{0x3727c5ac, 0x3727c5ac, 0x3f800000},
		{0x3f000000, 0x3ef57744, 0x3f60a940},
		{0xbf333333, 0xbf24eb73, 0x3f43ccb3},
		{0x3fc90fdb, 0x3f800000, 0xb33bbd2e},
		{0x40490fdb, 0xb3bbbd2e, 0xbf800000},
		{0xc0200000, 0xbf193578, 0xbf4d17bf},
		{0x42c80000, 0xbf01a12e, 0x3f5cc0ee},
		{0x42efcccd, 0x3efe2bff, 0x3f5e3a4d},
		{0x42f00000, 0x3f14a2ef, 0x3f506e2a},
		{0x43028000, 0xbf7e0993, 0x3dfd1bbf},
		{0xc47a1000, 0xbf70b812, 0x3eae3eca},
		{0x4640e6b6, 0xbf344b08, 0x3f35be20},
		{0x49742400, 0xbeb33259, 0x3f6fcefd},
		{0x7f7fc99e, 0xbe79f163, 0x3f7841ca},
		{0xe222a15d, 0x3f777906, 0x3e830bb0},
	}
	for _, c := range cases {
		x := math.Float32frombits(c[0])
		if s, co := sinfcosf(x, false), sinfcosf(x, true); math.Float32bits(s) != c[1] || math.Float32bits(co) != c[2] {
			t.Errorf("sinf, cosf(%g) = %#08x, %#08x; glibc gives %#08x, %#08x", x, math.Float32bits(s), math.Float32bits(co), c[1], c[2])
		}
	}
}

// TestFMA32RoundsOnce checks fma32 against the exactly rounded a·b+c, on
// sums built to sit a hair off a float32 halfway point, where adding in
// float64 and then rounding to float32 would round twice and go wrong.
func TestFMA32RoundsOnce(t *testing.T) {
	t.Parallel()
	exact := func(a, b, c float32) float32 {
		x := new(big.Float).SetPrec(200).SetFloat64(float64(a))
		x.Mul(x, new(big.Float).SetPrec(200).SetFloat64(float64(b)))
		x.Add(x, new(big.Float).SetPrec(200).SetFloat64(float64(c)))
		f, _ := x.Float32()
		return f
	}
	naiveWrong := 0
	for k := 0; k < 2000; k++ {
		// 3·(1+(2k+1)·2⁻²³) is an odd multiple of 2⁻²³ in [2,4), where float32
		// steps by 2⁻²²: a halfway point. c nudges it by 2⁻⁶⁰ either way.
		a, b := float32(3), float32(1+float64(2*k+1)/(1<<23))
		for _, c := range []float32{0x1p-60, -0x1p-60, 0x1p-70, -0x1p-30} {
			want := exact(a, b, c)
			if got := fma32(a, b, c); got != want {
				t.Fatalf("fma32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
			}
			if float32(float64(a)*float64(b)+float64(c)) != want {
				naiveWrong++
			}
			if got := fma32(-a, b, -c); got != -want {
				t.Fatalf("fma32(%g, %g, %g) = %g, want %g", -a, b, -c, got, -want)
			}
		}
	}
	if naiveWrong == 0 {
		t.Fatal("the constructed cases never defeat double rounding; the test checks nothing")
	}
	r := rand.New(rand.NewPCG(9, 9))
	for range 100000 {
		a, b, c := float32(r.NormFloat64()), float32(r.NormFloat64()), float32(r.NormFloat64()*1e-3)
		if got, want := fma32(a, b, c), exact(a, b, c); got != want {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
		}
	}
}
