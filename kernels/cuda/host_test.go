package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godwit-ai/godwit/kernels/cpu"
	"github.com/godwit-ai/godwit/models/gguf"
)

// TestWeightTypesOnHost compiles the weight types of ptx/weights.cu (each
// type's element of a block) for this CPU with clang++-19 and checks them
// against the CPU backend's dequantization, bit for bit, for every type:
// the block layouts the GPU reads are checked without a GPU. It skips
// without clang++-19 (CI installs it for make ptx-check).
func TestWeightTypesOnHost(t *testing.T) {
	clang, err := exec.LookPath("clang++-19")
	if err != nil {
		t.Skip("no clang++-19 (apt-get install clang-19)")
	}
	src, err := os.ReadFile("ptx/weights.cu")
	if err != nil {
		t.Fatal(err)
	}
	from, to := strings.Index(string(src), "typedef unsigned char u8;"), strings.Index(string(src), "// weight is element c")
	if from < 0 || to < from {
		t.Fatal("ptx/weights.cu: the weight types are no longer between their markers")
	}
	types := []gguf.Type{gguf.F32, gguf.F16, gguf.BF16, gguf.Q8_0, gguf.Q4_0, gguf.Q4_1, gguf.Q5_0, gguf.Q5_1, gguf.Q4_K, gguf.Q5_K, gguf.Q6_K}
	const rows, cols = 3, 512
	dir := t.TempDir()
	var calls strings.Builder
	r := rand.New(rand.NewPCG(3, 4))
	for _, typ := range types {
		w := make([]float32, rows*cols)
		for i := range w {
			w[i] = float32(r.NormFloat64())
		}
		stored := make([]byte, typ.RowSize(cols)*rows)
		if err := cpu.Quantize(typ, w, stored); err != nil {
			t.Fatal(err)
		}
		deq := make([]float32, rows*cols)
		if err := cpu.Dequantize(typ, stored, deq); err != nil {
			t.Fatal(err)
		}
		name := strings.ToLower(typ.String())
		b := make([]byte, 4*len(deq))
		for i, v := range deq {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		if os.WriteFile(filepath.Join(dir, name+".bin"), stored, 0o644) != nil || os.WriteFile(filepath.Join(dir, name+".f32"), b, 0o644) != nil {
			t.Fatal("writing the test data")
		}
		fmt.Fprintf(&calls, "\tbad += check<%s>(%q);\n", strings.ToUpper(name), filepath.Join(dir, name))
	}
	harness := `#include <cstdio>
#include <vector>
#define __device__
#define __forceinline__ inline
static float half_to_float(unsigned short h) { return (float)__builtin_bit_cast(_Float16, h); }
` + string(src[from:to]) + fmt.Sprintf(`
template <typename T> int check(const char *path) {
	const int rows = %d, cols = %d;
	char p[4096];
	snprintf(p, sizeof p, "%%s.bin", path);
	FILE *f = fopen(p, "rb");
	std::vector<u8> w(rows * (cols / T::block) * T::bytes);
	if (!f || fread(w.data(), 1, w.size(), f) != w.size()) return printf("%%s: short\n", p), 1;
	fclose(f);
	snprintf(p, sizeof p, "%%s.f32", path);
	f = fopen(p, "rb");
	std::vector<float> want(rows * cols);
	if (!f || fread(want.data(), 4, want.size(), f) != want.size()) return printf("%%s: short\n", p), 1;
	fclose(f);
	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++) {
			float got = T::at(w.data() + ((long)r * (cols / T::block) + c / T::block) * T::bytes, c %% T::block);
			if (got != want[r * cols + c]) return printf("%%s: [%%d][%%d] = %%g, want %%g\n", path, r, c, got, want[r * cols + c]), 1;
		}
	return 0;
}
int main() {
	int bad = 0;
%s	return bad != 0;
}
`, rows, cols, calls.String())
	cpp, bin := filepath.Join(dir, "types.cpp"), filepath.Join(dir, "types")
	if err := os.WriteFile(cpp, []byte(harness), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(clang, "-std=c++17", "-O1", "-ffp-contract=off", "-o", bin, cpp).CombinedOutput(); err != nil {
		t.Fatalf("clang++-19: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin).CombinedOutput(); err != nil {
		t.Fatalf("the weight types differ from the CPU's dequantization: %v\n%s", err, out)
	}
}
