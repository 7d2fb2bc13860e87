package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/coordinate"
)

// State is what a node publishes to the fleet about itself.
type State struct {
	// HTTPAddr is the base URL of the node's API: http://HOST:PORT, or
	// https:// when it serves TLS.
	HTTPAddr string
	// Region and Zone are the Config's; what SetState is given is ignored.
	Region, Zone string
	// Models lists the models the node serves.
	Models []Model
	// Running and Waiting count sequences decoding and queued.
	Running, Waiting int
	// FreeKV is the fraction of the KV cache free, 0 to 1.
	FreeKV float64
	// Wait estimates how long a new request waits for its first token,
	// and WaitPerSeq what each more request adds to it: a node that sends
	// requests adds them itself until gossip shows them.
	Wait, WaitPerSeq time.Duration
	// DecodeTPS is the recent decode rate, tokens per second.
	DecodeTPS float64
	// Draining is set while the node finishes its work and takes no more.
	Draining bool
	// Full is set while the node's queue admits no more requests.
	Full bool
}

// Model is one model a node serves.
type Model struct {
	Name string
	// Hash identifies the model file; a short prefix of its digest keeps
	// the state small.
	Hash string
	// Numerics names what else decides the generated tokens (backend and
	// KV type), so that peers giving identical output can be told apart.
	Numerics string
}

// metaVersion starts every encoded metadata, so that a later layout can be
// told from this one.
const metaVersion = 2

// encodeMeta lays out a state and this node's coordinate for memberlist's
// metadata, which holds at most memberlist.MetaMaxSize bytes.
func encodeMeta(s State, c *coordinate.Coordinate) ([]byte, error) {
	b := make([]byte, 0, 128)
	b = append(b, metaVersion)
	b = appendCoord(b, c)
	b = appendString(b, s.HTTPAddr)
	b = appendString(b, s.Region)
	b = appendString(b, s.Zone)
	b = binary.AppendUvarint(b, uint64(len(s.Models)))
	for _, m := range s.Models {
		b = appendString(b, m.Name)
		b = appendString(b, m.Hash)
		b = appendString(b, m.Numerics)
	}
	b = binary.AppendUvarint(b, uint64(max(s.Running, 0)))
	b = binary.AppendUvarint(b, uint64(max(s.Waiting, 0)))
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(s.FreeKV)))
	b = binary.AppendUvarint(b, uint64(max(s.Wait, 0)/time.Microsecond))
	b = binary.AppendUvarint(b, uint64(max(s.WaitPerSeq, 0)/time.Microsecond))
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(s.DecodeTPS)))
	var flags byte
	if s.Draining {
		flags |= 1
	}
	if s.Full {
		flags |= 2
	}
	b = append(b, flags)
	// A state published before the first round trip must leave room for
	// the coordinate that later joins it.
	need := len(b)
	if c == nil {
		need += coordBytes - 1
	}
	if need > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("cluster: the state takes %d bytes, over gossip's %d: publish fewer models, or shorter names and hashes", need, memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta reads what encodeMeta wrote; the coordinate is nil when the
// node had none.
func decodeMeta(b []byte) (State, *coordinate.Coordinate, error) {
	var s State
	if len(b) == 0 || b[0] != metaVersion {
		return s, nil, errors.New("cluster: metadata of an unknown version")
	}
	r := reader{b: b[1:]}
	c := r.coord()
	s.HTTPAddr = r.string()
	s.Region = r.string()
	s.Zone = r.string()
	n := r.uvarint()
	if n > uint64(len(r.b)) { // each model takes at least a byte
		return s, nil, errors.New("cluster: corrupt metadata")
	}
	for range n {
		s.Models = append(s.Models, Model{Name: r.string(), Hash: r.string(), Numerics: r.string()})
	}
	s.Running = int(min(r.uvarint(), math.MaxInt32))
	s.Waiting = int(min(r.uvarint(), math.MaxInt32))
	s.FreeKV = float64(r.float32())
	s.Wait = r.micros()
	s.WaitPerSeq = r.micros()
	s.DecodeTPS = float64(r.float32())
	flags := r.byte()
	s.Draining, s.Full = flags&1 != 0, flags&2 != 0
	if r.err != nil || len(r.b) != 0 {
		return State{}, nil, errors.New("cluster: corrupt metadata")
	}
	return s, c, nil
}

// coordBytes is the size of an encoded coordinate of serf's default
// dimensionality, which is the one Node uses.
const coordBytes = 1 + 4*(8+3)

// appendCoord writes a coordinate as its dimension count then float32s:
// seconds to a few microseconds, at half the size of float64s.
func appendCoord(b []byte, c *coordinate.Coordinate) []byte {
	if c == nil {
		return append(b, 0)
	}
	b = append(b, byte(len(c.Vec)))
	for _, f := range c.Vec {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(f)))
	}
	for _, f := range []float64{c.Error, c.Adjustment, c.Height} {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(f)))
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes, remembering the first error so that callers check once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() { r.err, r.b = errors.New("short"), nil }

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// micros reads a duration written as microseconds.
func (r *reader) micros() time.Duration {
	return time.Duration(min(r.uvarint(), math.MaxInt64/uint64(time.Microsecond))) * time.Microsecond
}

func (r *reader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) float32() float32 {
	if len(r.b) < 4 {
		r.fail()
		return 0
	}
	v := math.Float32frombits(binary.LittleEndian.Uint32(r.b))
	r.b = r.b[4:]
	return v
}

func (r *reader) coord() *coordinate.Coordinate {
	dims := int(r.byte())
	if dims == 0 || r.err != nil {
		return nil
	}
	c := &coordinate.Coordinate{Vec: make([]float64, dims)}
	for i := range c.Vec {
		c.Vec[i] = float64(r.float32())
	}
	c.Error = float64(r.float32())
	c.Adjustment = float64(r.float32())
	c.Height = float64(r.float32())
	if r.err == nil && !c.IsValid() {
		r.err = errors.New("invalid coordinate")
	}
	return c
}
