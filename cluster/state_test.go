package cluster

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/coordinate"
)

func fullState(models int) State {
	s := State{
		HTTPAddr: "[2001:db8::1]:8080", Region: "eu-west", Zone: "eu-west-1b",
		Running: 48, Waiting: 3, FreeKV: 0.25, Wait: 1500 * time.Millisecond, WaitPerSeq: 40 * time.Millisecond, DecodeTPS: 812.5, Draining: true, Full: true,
	}
	for i := range models {
		s.Models = append(s.Models, Model{
			Name:     fmt.Sprintf("llama-3.1-8b-instruct-q%d", i),
			Hash:     "9f86d081884c7d65",
			Numerics: "cpu-avx512/kv-q8_0",
		})
	}
	return s
}

func measuredCoord() *coordinate.Coordinate {
	c := coordinate.NewCoordinate(coordinate.DefaultConfig())
	for i := range c.Vec {
		c.Vec[i] = 0.001 * float64(i+1)
	}
	c.Height, c.Adjustment, c.Error = 0.0002, -0.0001, 0.4
	return c
}

func TestMetaRoundTrip(t *testing.T) {
	s := fullState(6)
	b, err := encodeMeta(s, measuredCoord())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("six models and a coordinate: %d bytes of %d", len(b), memberlist.MetaMaxSize)
	got, c, err := decodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("decoded %+v, want %+v", got, s)
	}
	// Components travel as float32: seconds to well under a microsecond.
	want := measuredCoord()
	if c == nil || len(c.Vec) != len(want.Vec) {
		t.Fatalf("coordinate %+v, want %+v", c, want)
	}
	for i, f := range append(c.Vec, c.Error, c.Adjustment, c.Height) {
		if w := append(want.Vec, want.Error, want.Adjustment, want.Height)[i]; math.Abs(f-w) > 1e-7 {
			t.Errorf("coordinate %+v, want %+v", c, want)
			break
		}
	}
	if _, c, err := decodeMeta(must(encodeMeta(State{}, nil))); err != nil || c != nil {
		t.Errorf("empty state without a coordinate: %v, %v", c, err)
	}
}

func TestMetaTooBig(t *testing.T) {
	_, err := encodeMeta(fullState(20), measuredCoord())
	if err == nil || !strings.Contains(err.Error(), "fewer models") {
		t.Fatalf("20 models: %v, want an error saying what to do", err)
	}
}

// TestMetaRoomForCoordinate checks that a state is refused when it fits only
// until the node's coordinate joins it.
func TestMetaRoomForCoordinate(t *testing.T) {
	s := State{HTTPAddr: "h"}
	for {
		b, err := encodeMeta(s, nil)
		if err != nil {
			break
		}
		if _, err := encodeMeta(s, measuredCoord()); err != nil {
			t.Fatalf("%d bytes without a coordinate pass, but not with one: %v", len(b), err)
		}
		s.HTTPAddr += "h"
	}
	if len(s.HTTPAddr) < 400 {
		t.Fatalf("refused at an address of %d bytes", len(s.HTTPAddr))
	}
}

func TestMetaGarbage(t *testing.T) {
	good := must(encodeMeta(fullState(3), measuredCoord()))
	bad := [][]byte{nil, {}, {9}, {metaVersion}, good[:len(good)-1], append(append([]byte(nil), good...), 0)}
	// Every truncation and a length claiming more than is there.
	for i := range good {
		bad = append(bad, good[:i])
	}
	huge := append([]byte{metaVersion, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f)
	bad = append(bad, huge)
	for _, b := range bad {
		if _, _, err := decodeMeta(b); err == nil {
			t.Errorf("decoding %x: no error", b)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
