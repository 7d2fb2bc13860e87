package cluster

import (
	"errors"
	"testing"
	"time"
)

func TestToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a, other := NewAuth(testKey), NewAuth([]byte("another key of sixteen+"))
	parts := [][]byte{[]byte("POST"), []byte("/cluster/v1/forward"), []byte("1"), []byte("a,b"), []byte(`{"prompt":"hi"}`)}
	tok := a.Sign(now, parts...)
	if err := a.Verify(tok, now.Add(time.Second), parts...); err != nil {
		t.Fatalf("a fresh token: %v", err)
	}
	if err := a.Verify(tok, now.Add(2*time.Second), parts...); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replayed: %v, want ErrReplayed", err)
	}
	// A receiver with another key, or a changed part, sees a forgery.
	if err := other.Verify(a.Sign(now, parts...), now, parts...); !errors.Is(err, ErrBadToken) {
		t.Fatalf("other key: %v, want ErrBadToken", err)
	}
	changed := [][]byte{parts[0], parts[1], []byte("0"), parts[3], parts[4]}
	if err := a.Verify(a.Sign(now, parts...), now, changed...); !errors.Is(err, ErrBadToken) {
		t.Fatalf("hops changed: %v, want ErrBadToken", err)
	}
	shifted := [][]byte{parts[0], parts[1], parts[2], []byte("a,b{"), []byte(`"prompt":"hi"}`)}
	if err := a.Verify(a.Sign(now, parts...), now, shifted...); !errors.Is(err, ErrBadToken) {
		t.Fatalf("bytes moved between parts: %v, want ErrBadToken", err)
	}
	for _, bad := range []string{"", "v1", "v2.1.2.3", "v1.x.000000000000000000000000.AAAA", "v1.1.short.AAAA"} {
		if err := a.Verify(bad, now, parts...); err == nil {
			t.Errorf("token %q accepted", bad)
		}
	}
	if err := a.Verify(a.Sign(now.Add(-TokenWindow-time.Second), parts...), now, parts...); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("old token: %v, want ErrTokenExpired", err)
	}
	// Nonces are forgotten once their window has passed, and the memory
	// holds no more than the window's.
	for i := range 100 {
		if err := a.Verify(a.Sign(now.Add(time.Duration(i)*time.Second), parts...), now.Add(time.Duration(i)*time.Second), parts...); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(a.seen); n > int(TokenWindow/time.Second)+2 {
		t.Fatalf("%d nonces remembered after 100 s at one a second, want about %d", n, int(TokenWindow/time.Second))
	}
}
