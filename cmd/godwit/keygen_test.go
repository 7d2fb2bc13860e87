package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/godwit-ai/godwit/cluster"
)

// TestKeygen checks that what keygen prints is a key file ReadKeyFile takes,
// and that two runs differ.
func TestKeygen(t *testing.T) {
	a, b := mustGodwit(t, "keygen"), mustGodwit(t, "keygen")
	if a == b {
		t.Fatalf("two keys alike: %q", a)
	}
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(a), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := cluster.ReadKeyFile(path)
	if err != nil || len(key) != 32 {
		t.Fatalf("keygen printed %q: %d bytes, %v", a, len(key), err)
	}
}
