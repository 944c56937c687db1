package main

import (
	"bytes"
	"encoding/json"
	"os"
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
	o, err := parseFlags([]string{"-quick", "-rounds", "2", "-benchtime", "5ms", "-run", "^register/shape=grouped$", "-json"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out, progress bytes.Buffer
	if err := run(o, &out, &progress); err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, out.String())
	}
	rs := rep.Results
	if m := rep.Machine; m.GoVersion == "" || m.CPUModel == "" || len(m.GOMAXPROCS) == 0 || m.NumCPU < 1 {
		t.Errorf("machine not recorded: %+v", m)
	}
	if len(rep.Targets) == 0 {
		t.Error("no targets checked")
	}
	for _, c := range rep.Targets {
		if c.Name == "register, 100 consumers a group" && c.Status == statusNotRun {
			t.Errorf("target %q not checked though its workload ran", c.Name)
		}
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

// Targets are checked from the results alone: a ratio, a worst round and a
// workload the run lacks.
func TestCheckTargets(t *testing.T) {
	res := func(w, impl string, rounds ...float64) Result {
		return Result{Workload: w, CPU: 2, Impl: impl, Metric: "ns/op", Median: median(rounds), Rounds: rounds}
	}
	tbl := newTable([]Result{
		res("refresh/path=key/par=serial/consumers=10000", "registry", 60, 60, 60),
		res("refresh/path=key/par=serial/consumers=10000", "mutex", 50, 50, 50),
		res("refresh/path=key/par=parallel/consumers=10000", "mutex", 100, 100, 100),
		res("refresh/path=handle/par=parallel/consumers=10000", "registry", 20, 20, 40),
		res("prune-none/consumers=20000", "registry", 10, 10, 10),
		res("prune-none/shape=solo/consumers=20000", "registry", 12, 12, 12),
		res("stats/consumers=20000", "registry", 10, 10, 10),
		res("stats/shape=solo/consumers=20000", "registry", 20, 20, 20),
	})
	got := map[string]TargetCheck{}
	for _, c := range checkTargets(tbl, []int{2}) {
		got[c.Name] = c
	}
	if c := got["keyed refresh, 1 goroutine: time vs mutex"]; c.Status != statusMet || c.Value != 1.2 {
		t.Errorf("serial refresh: %+v", c)
	}
	// The median round gives 5x, the third round only 2.5x.
	if c := got["Handle refresh vs mutex keyed refresh, worst round"]; c.Status != statusMissed || c.Value != 2.5 {
		t.Errorf("handle refresh: %+v", c)
	}
	// The solo walks against the grouped ones of the same size, whatever
	// the size.
	if c := got["PruneExpired, nothing to prune: solo groups vs 100 a group"]; c.Status != statusMet || c.Value != 1.2 {
		t.Errorf("solo prune: %+v", c)
	}
	if c := got["Stats: solo groups vs 100 a group"]; c.Status != statusMissed || c.Value != 2 {
		t.Errorf("solo stats: %+v", c)
	}
	if c := got["Stats, 1e6 consumers"]; c.Status != statusNotRun {
		t.Errorf("stats without a stats workload: %+v", c)
	}
}

func TestSeedComparison(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/seed.txt"
	if err := os.WriteFile(path, []byte("# diagnostics\nrefresh_1t 98.5\nsnapshot_100k 53000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	seed, err := readSeed(path)
	if err != nil || seed["refresh_1t"] != 98.5 || len(seed) != 2 {
		t.Fatalf("readSeed = %v, %v", seed, err)
	}
	rows := seedRows(seed, []Result{
		{Workload: "seed/refresh_1t", CPU: 2, Impl: "registry", Median: 60, Rounds: []float64{60}},
		{Workload: "seed/snapshot_100k", CPU: 2, Impl: "registry", Median: 9e7, Rounds: []float64{9e7}},
		{Workload: "seed/insert_1t", CPU: 2, Impl: "registry", Median: 900, Rounds: []float64{900}},
	})
	if len(rows) != 2 || rows[0].Status != statusMet || rows[1].Status != statusMissed {
		t.Errorf("rows = %+v", rows)
	}
	for _, bad := range []string{"", "refresh_1t fast\n", "# only comments\n"} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readSeed(path); err == nil {
			t.Errorf("readSeed accepted %q", bad)
		}
	}
	if _, err := readSeed(dir + "/missing"); err == nil {
		t.Error("readSeed accepted a missing file")
	}
}
