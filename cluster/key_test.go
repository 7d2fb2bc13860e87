package cluster

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeygenReadKeyFile(t *testing.T) {
	k, err := Keygen()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(k)
	if err != nil || len(raw) != 32 {
		t.Fatalf("Keygen gave %q: %d bytes, %v", k, len(raw), err)
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := ReadKeyFile(write("k", k+"\n"))
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("ReadKeyFile: %x, %v; want %x", got, err, raw)
	}
	for _, n := range []int{16, 24} {
		key := base64.StdEncoding.EncodeToString(make([]byte, n))
		if _, err := ReadKeyFile(write("k", key)); err != nil {
			t.Errorf("%d-byte key: %v", n, err)
		}
	}
	for _, c := range []struct{ text, want string }{
		{"", "empty"},
		{"not base64!", "base64"},
		{base64.StdEncoding.EncodeToString(make([]byte, 20)), "not 20"},
	} {
		_, err := ReadKeyFile(write("k", c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "keygen") {
			t.Errorf("key file %q: %v, want an error about %q saying what to do", c.text, err, c.want)
		}
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing key file: no error")
	}
}
