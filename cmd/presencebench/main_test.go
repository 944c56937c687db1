package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsRejectsBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"-rounds", "0"}, {"-rounds", "x"}, {"-consumers", "-5"}, {"-cpu", "2,zero"},
		{"-cpu", "0"}, {"-benchtime", "-1s"}, {"-run", "("}, {"-nosuchflag"}, {"extra"},
	} {
		var stderr bytes.Buffer
		if _, err := parseFlags(args, &stderr); err == nil {
			t.Errorf("parseFlags(%q) accepted bad input", args)
		}
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-cpu", "1, 2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 5 || o.benchtime != 40*time.Millisecond || len(o.cpus) != 2 || o.cpus[1] != 2 {
		t.Fatalf("unexpected options %+v", o)
	}
}

// A tiny real run: one workload, two rounds, JSON out.
func TestRunJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs benchmarks")
	}
	o, err := parseFlags([]string{"-quick", "-rounds", "2", "-benchtime", "5ms", "-run", "^register$", "-json"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out, progress bytes.Buffer
	if err := run(o, &out, &progress); err != nil {
		t.Fatal(err)
	}
	var rs []Result
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, out.String())
	}
	if len(rs) != 3 { // registry, mutex, syncmap; the speed of light cannot register
		t.Fatalf("got %d results, want 3", len(rs))
	}
	for _, r := range rs {
		if len(r.Rounds) != 2 || r.Median <= 0 || r.Metric != "ns/op" {
			t.Errorf("bad result %+v", r)
		}
	}
	if !strings.Contains(progress.String(), "measurements in") {
		t.Error("no progress shown")
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{5, 1, 3}); m != 3 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
}
