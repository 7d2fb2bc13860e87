package main

import (
	"strings"
	"testing"
)

// A stream as go test -json writes it: package a passes with two tests
// skipped for the same missing file and one for another reason; package b
// has a failing subtest beside a passing test; package c does not build.
const stream = `{"Action":"start","Package":"x/a"}
{"Action":"run","Package":"x/a","Test":"TestOne"}
{"Action":"output","Package":"x/a","Test":"TestOne","Output":"=== RUN   TestOne\n"}
{"Action":"output","Package":"x/a","Test":"TestOne","Output":"    one_test.go:9: chatter of a passing test\n"}
{"Action":"output","Package":"x/a","Test":"TestOne","Output":"--- PASS: TestOne (0.00s)\n"}
{"Action":"pass","Package":"x/a","Test":"TestOne","Elapsed":0}
{"Action":"run","Package":"x/a","Test":"TestData"}
{"Action":"output","Package":"x/a","Test":"TestData","Output":"=== RUN   TestData\n"}
{"Action":"output","Package":"x/a","Test":"TestData","Output":"    one_test.go:20: loading\n"}
{"Action":"output","Package":"x/a","Test":"TestData","Output":"    shared.go:37: test data missing: /s/models/m.gguf\n"}
{"Action":"output","Package":"x/a","Test":"TestData","Output":"--- SKIP: TestData (0.00s)\n"}
{"Action":"skip","Package":"x/a","Test":"TestData","Elapsed":0}
{"Action":"run","Package":"x/a","Test":"TestData2/sub"}
{"Action":"output","Package":"x/a","Test":"TestData2/sub","Output":"        shared.go:37: test data missing: /s/models/m.gguf\n"}
{"Action":"output","Package":"x/a","Test":"TestData2/sub","Output":"    --- SKIP: TestData2/sub (0.00s)\n"}
{"Action":"skip","Package":"x/a","Test":"TestData2/sub","Elapsed":0}
{"Action":"run","Package":"x/a","Test":"TestBare"}
{"Action":"output","Package":"x/a","Test":"TestBare","Output":"--- SKIP: TestBare (0.00s)\n"}
{"Action":"skip","Package":"x/a","Test":"TestBare","Elapsed":0}
{"Action":"output","Package":"x/a","Output":"PASS\n"}
{"Action":"output","Package":"x/a","Output":"ok  \tx/a\t0.01s\n"}
{"Action":"pass","Package":"x/a","Elapsed":0.01}
{"Action":"run","Package":"x/b","Test":"TestGood"}
{"Action":"output","Package":"x/b","Test":"TestGood","Output":"    b_test.go:5: chatter that stays hidden\n"}
{"Action":"pass","Package":"x/b","Test":"TestGood","Elapsed":0}
{"Action":"run","Package":"x/b","Test":"TestBad"}
{"Action":"output","Package":"x/b","Test":"TestBad","Output":"=== RUN   TestBad\n"}
{"Action":"run","Package":"x/b","Test":"TestBad/case"}
{"Action":"output","Package":"x/b","Test":"TestBad/case","Output":"    b_test.go:12: got 1, want 2\n"}
{"Action":"output","Package":"x/b","Test":"TestBad/case","Output":"    --- FAIL: TestBad/case (0.00s)\n"}
{"Action":"fail","Package":"x/b","Test":"TestBad/case","Elapsed":0}
{"Action":"output","Package":"x/b","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"x/b","Test":"TestBad","Elapsed":0}
{"Action":"output","Package":"x/b","Output":"FAIL\n"}
{"Action":"output","Package":"x/b","Output":"FAIL\tx/b\t0.02s\n"}
{"Action":"fail","Package":"x/b","Elapsed":0.02}
{"ImportPath":"x/c","Action":"build-output","Output":"c/c.go:3:1: syntax error\n"}
{"ImportPath":"x/c","Action":"build-fail"}
{"Action":"output","Package":"x/c","Output":"FAIL\tx/c [build failed]\n"}
{"Action":"fail","Package":"x/c","Elapsed":0}
`

func TestSummary(t *testing.T) {
	var out strings.Builder
	s := newSummary(&out)
	if err := s.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	s.finish()
	got := out.String()
	want := "ok  \tx/a\t0.01s\n" +
		"=== RUN   TestBad\n" +
		"    b_test.go:12: got 1, want 2\n" +
		"    --- FAIL: TestBad/case (0.00s)\n" +
		"--- FAIL: TestBad (0.00s)\n" +
		"FAIL\n" +
		"FAIL\tx/b\t0.02s\n" +
		"c/c.go:3:1: syntax error\n" +
		"FAIL\tx/c [build failed]\n" +
		"2 skipped: test data missing: /s/models/m.gguf\n" +
		"1 skipped: no reason given\n" +
		"2 passed, 2 failed, 3 skipped\n"
	if got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
	if !s.failedAny() {
		t.Fatal("a failed run counts as passed")
	}
}

func TestSummaryPassing(t *testing.T) {
	var out strings.Builder
	s := newSummary(&out)
	// Package a alone: passed, with skips.
	a := stream[:strings.Index(stream, `{"Action":"run","Package":"x/b"`)]
	if err := s.read(strings.NewReader(a)); err != nil {
		t.Fatal(err)
	}
	s.finish()
	if s.failedAny() || !strings.HasSuffix(out.String(), "\n1 passed, 0 failed, 3 skipped\n") {
		t.Fatalf("failed %v, output:\n%s", s.failedAny(), out.String())
	}
}

// A run cut short (the test binary crashed, go test was killed) prints the
// output of the packages that never ended and fails.
func TestSummaryCutShort(t *testing.T) {
	var out strings.Builder
	s := newSummary(&out)
	cut := `{"Action":"run","Package":"x/d","Test":"TestHang"}
{"Action":"output","Package":"x/d","Test":"TestHang","Output":"panic: test timed out after 1s\n"}
`
	if err := s.read(strings.NewReader(cut)); err != nil {
		t.Fatal(err)
	}
	s.finish()
	if !s.failedAny() || !strings.Contains(out.String(), "panic: test timed out") {
		t.Fatalf("failed %v, output:\n%s", s.failedAny(), out.String())
	}
}
