// Package shared locates the read-only test data in ../shared (models, goldens,
// tokenizer vectors) for tests. A missing file skips the test on a developer
// machine and fails it under CI=true, naming the file.
package shared

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir is the shared data folder: $GODWIT_SHARED, else ../shared beside the
// repository root.
func Dir() string {
	if d := os.Getenv("GODWIT_SHARED"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	// file is <repo>/internal/shared/shared.go
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "shared")
}

// Path returns the absolute path of rel inside the shared folder. When the
// file is missing it fails the test under CI=true and skips it otherwise.
func Path(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(Dir(), rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("test data missing: %s (CI needs ../shared beside the repository): %v", p, err)
		}
		if _, err := os.Stat(Dir()); err != nil {
			// One reason for every test, not one per file.
			tb.Skipf("test data missing: no folder %s", Dir())
		}
		tb.Skipf("test data missing: %s", p)
	}
	return p
}
