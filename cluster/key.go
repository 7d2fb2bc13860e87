package cluster

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// Keygen returns a new cluster key: 32 random bytes in standard base64, the
// form Consul's keygen prints and ReadKeyFile reads.
func Keygen() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("cluster: generating a key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(key), nil
}

// ReadKeyFile reads a cluster key: one base64 key of 16, 24 or 32 bytes,
// surrounding white space ignored.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading the key file: %w", err)
	}
	text := strings.TrimSpace(string(b))
	if text == "" {
		return nil, fmt.Errorf("cluster: key file %s is empty: put in it a key that godwit keygen prints", path)
	}
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("cluster: key file %s does not hold one base64 key (%v): put in it a key that godwit keygen prints", path, err)
	}
	if err := checkKeyLen(len(key)); err != nil {
		return nil, fmt.Errorf("cluster: key file %s: %w", path, err)
	}
	return key, nil
}

func checkKeyLen(n int) error {
	switch n {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("a cluster key is 16, 24 or 32 bytes (AES-128, -192, -256), not %d: godwit keygen prints one of 32", n)
}
