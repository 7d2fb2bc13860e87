package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TokenWindow is how far a forwarded request's timestamp may be from the
// receiver's clock, and how long its nonce is remembered.
const TokenWindow = 30 * time.Second

// Errors of Auth.Verify; every one answers 401.
var (
	ErrNoToken      = errors.New("cluster: no cluster token")
	ErrBadToken     = errors.New("cluster: the cluster token is malformed or forged")
	ErrTokenExpired = errors.New("cluster: the cluster token's timestamp is outside the window")
	ErrReplayed     = errors.New("cluster: the cluster token was used before")
)

// Auth signs the requests this node forwards and checks those it receives:
// a token is an HMAC-SHA256, keyed from the fleet's key, over a timestamp,
// a nonce and the request's parts, and a nonce is refused a second time
// within TokenWindow. Safe for concurrent use.
type Auth struct {
	key []byte

	mu     sync.Mutex
	seen   map[string]time.Time // nonce → when it may be forgotten
	expiry []seenNonce          // the same, oldest first
}

type seenNonce struct {
	nonce string
	until time.Time
}

// NewAuth returns an Auth keyed from the fleet's gossip key. A fleet with no
// key (--insecure-cluster) signs with an empty one: tokens then stop
// replays and mistakes, not attackers.
func NewAuth(clusterKey []byte) *Auth {
	m := hmac.New(sha256.New, clusterKey)
	m.Write([]byte("godwit forward token v1"))
	return &Auth{key: m.Sum(nil), seen: map[string]time.Time{}}
}

// Sign returns the token for a request made of parts (method, path, the
// hop headers, the body: what the receiver must see unchanged) at now.
func (a *Auth) Sign(now time.Time, parts ...[]byte) string {
	var n [12]byte
	_, _ = rand.Read(n[:])
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	nonce := hex.EncodeToString(n[:])
	return "v1." + ts + "." + nonce + "." + base64.RawURLEncoding.EncodeToString(a.mac(ts, nonce, parts))
}

func (a *Auth) mac(ts, nonce string, parts [][]byte) []byte {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(ts + "." + nonce))
	for _, p := range parts {
		// Lengths first, so that moving bytes between parts changes the MAC.
		m.Write(binary.AppendUvarint(nil, uint64(len(p))))
		m.Write(p)
	}
	return m.Sum(nil)
}

// Verify checks token against parts at now, and remembers its nonce.
func (a *Auth) Verify(token string, now time.Time, parts ...[]byte) error {
	if token == "" {
		return ErrNoToken
	}
	f := strings.Split(token, ".")
	if len(f) != 4 || f[0] != "v1" {
		return ErrBadToken
	}
	ms, err := strconv.ParseInt(f[1], 10, 64)
	sum, err2 := base64.RawURLEncoding.DecodeString(f[3])
	if err != nil || err2 != nil || len(f[2]) != 24 || !hmac.Equal(sum, a.mac(f[1], f[2], parts)) {
		return ErrBadToken
	}
	if d := now.Sub(time.UnixMilli(ms)); d > TokenWindow || d < -TokenWindow {
		return ErrTokenExpired
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(a.expiry) > 0 && now.After(a.expiry[0].until) {
		delete(a.seen, a.expiry[0].nonce)
		a.expiry = a.expiry[1:]
	}
	if _, ok := a.seen[f[2]]; ok {
		return ErrReplayed
	}
	// Past its timestamp's window the token is refused as expired, so
	// the nonce need not be kept longer.
	until := time.UnixMilli(ms).Add(TokenWindow)
	a.seen[f[2]] = until
	a.expiry = append(a.expiry, seenNonce{f[2], until})
	return nil
}
