// Command presencebench runs the benchmark suite of presence in one
// process and prints one table: for every workload, the median of several
// rounds for each implementation, the ratios of the registry to the fair
// mutex baseline and to the speed of light, the tail latencies of single
// heartbeats under background load, and every performance target of the
// project marked met or MISSED.
//
// Implementations alternate round by round, in a rotating order, so that
// drift on a noisy machine falls on all of them alike.
//
// Usage:
//
//	go run ./cmd/presencebench [-quick] [-rounds 5] [-consumers 10000] [-cpu 1,2] [-benchtime 200ms] [-run REGEXP] [-json]
//
// To measure scaling on a bigger machine, run the same command with
// -cpu 1,2,4,8,16 (values above the machine's core count only measure
// oversubscription); every workload then runs at each GOMAXPROCS, and the
// targets are checked at each.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed351623e9/presence/internal/benchkit"
)

type options struct {
	quick     bool
	rounds    int
	consumers int
	cpus      []int
	benchtime time.Duration
	json      bool
	run       *regexp.Regexp
	seed      string // seedbench output to compare with; runs the seed's workloads
	tty       bool   // progress redraws one line; otherwise a line per workload
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("presencebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var cpu, run string
	fs.BoolVar(&o.quick, "quick", false, "smaller sizes and a short benchtime: a few minutes; targets at 1e6 consumers are not measured")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds per workload; each round runs every implementation once")
	fs.IntVar(&o.consumers, "consumers", 10000, "consumers refreshed by the refresh workloads")
	fs.StringVar(&cpu, "cpu", strconv.Itoa(runtime.GOMAXPROCS(0)),
		"comma-separated GOMAXPROCS values to run at; on a bigger machine, -cpu 1,2,4,8,16 measures scaling")
	fs.DurationVar(&o.benchtime, "benchtime", 0, "target time of one measurement (default 200ms, 40ms with -quick)")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	fs.StringVar(&run, "run", "", "only workloads whose name matches this regular expression")
	fs.StringVar(&o.seed, "seed", "", "file with the output of shared/seedbench: run the seed's workloads instead and compare")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: presencebench [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.rounds < 1 {
		return o, fmt.Errorf("-rounds must be at least 1, got %d", o.rounds)
	}
	if o.consumers < 1 {
		return o, fmt.Errorf("-consumers must be at least 1, got %d", o.consumers)
	}
	if o.benchtime < 0 {
		return o, fmt.Errorf("-benchtime must not be negative, got %v", o.benchtime)
	}
	if o.benchtime == 0 {
		o.benchtime = 200 * time.Millisecond
		if o.quick {
			o.benchtime = 40 * time.Millisecond
		}
	}
	for _, f := range strings.Split(cpu, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-cpu: %q is not a positive integer", f)
		}
		o.cpus = append(o.cpus, n)
	}
	re, err := regexp.Compile(run)
	if err != nil {
		return o, fmt.Errorf("-run: %v", err)
	}
	o.run = re
	return o, nil
}

// Result is the outcome of one workload for one implementation.
type Result struct {
	Workload    string    `json:"workload"`
	CPU         int       `json:"gomaxprocs"`
	Impl        string    `json:"impl"`
	Metric      string    `json:"metric"`
	Median      float64   `json:"median"`
	AllocsPerOp int64     `json:"allocs_per_op"`
	Rounds      []float64 `json:"rounds"`
	// Extra holds the median of every other metric the workload reports,
	// such as the tail percentiles.
	Extra map[string]float64 `json:"extra,omitempty"`
}

// Report is the whole output of a run, as -json prints it.
type Report struct {
	Machine Machine       `json:"machine"`
	Results []Result      `json:"results"`
	Targets []TargetCheck `json:"targets"`
	Seed    []SeedRow     `json:"seed,omitempty"`
}

// Machine describes where a run happened.
type Machine struct {
	GoVersion  string  `json:"go_version"`
	OS         string  `json:"goos"`
	Arch       string  `json:"goarch"`
	CPUModel   string  `json:"cpu_model"`
	NumCPU     int     `json:"num_cpu"`
	GOMAXPROCS []int   `json:"gomaxprocs"`
	LoadAvg    string  `json:"loadavg,omitempty"` // /proc/loadavg at the start
	Rounds     int     `json:"rounds"`
	Benchtime  string  `json:"benchtime"`
	Quick      bool    `json:"quick"`
	Seconds    float64 `json:"seconds"`
}

func machine(o options) Machine {
	m := Machine{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, NumCPU: runtime.NumCPU(),
		GOMAXPROCS: o.cpus, Rounds: o.rounds, Benchtime: o.benchtime.String(), Quick: o.quick, CPUModel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.TrimSpace(string(b))
	}
	return m
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "presencebench:", err)
		os.Exit(2)
	}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		o.tty = true
	}
	if err := run(o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "presencebench:", err)
		os.Exit(1)
	}
}

// run measures the selected workloads and prints the report.
func run(o options, stdout, progress io.Writer) error {
	testing.Init()
	if err := flag.Set("test.benchtime", o.benchtime.String()); err != nil {
		return err
	}
	var seed map[string]float64
	if o.seed != "" {
		var err error
		if seed, err = readSeed(o.seed); err != nil {
			return err
		}
	}
	cases := selectCases(o)
	if len(cases) == 0 {
		return fmt.Errorf("-run %q matches no workload", o.run)
	}
	m := machine(o)
	start := time.Now()
	p := &progressLine{w: progress, tty: o.tty, start: start}
	for _, c := range cases {
		p.total += len(implsFor(c)) * o.rounds * len(o.cpus)
	}
	var results []Result
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	for _, cpu := range o.cpus {
		runtime.GOMAXPROCS(cpu)
		for _, c := range cases {
			rs, err := measure(c, cpu, o.rounds, p)
			if err != nil {
				return err
			}
			results = append(results, rs...)
		}
	}
	p.finish()
	m.Seconds = time.Since(start).Seconds()
	rep := Report{Machine: m, Results: results}
	if seed != nil {
		rep.Seed = seedRows(seed, results)
	} else {
		rep.Targets = checkTargets(newTable(results), o.cpus)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(stdout, o, rep)
	return nil
}

func selectCases(o options) []benchkit.Case {
	sizes := benchkit.FullSizes
	if o.quick {
		sizes = benchkit.QuickSizes
	}
	sizes.Refresh = o.consumers
	suite := benchkit.Suite(sizes)
	if o.seed != "" {
		suite = benchkit.SeedSuite()
	}
	var cases []benchkit.Case
	for _, c := range suite {
		if o.run.MatchString(c.Name) {
			cases = append(cases, c)
		}
	}
	return cases
}

// progressLine reports progress on one redrawn line on a terminal, or one
// line per workload otherwise.
type progressLine struct {
	w           io.Writer
	tty         bool
	start       time.Time
	total, done int
}

func (p *progressLine) step(cpu int, c benchkit.Case, impl string, round, rounds int, first bool) {
	p.done++
	el := time.Since(p.start).Round(time.Second)
	switch {
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K[%d/%d %s] cpu=%d %s impl=%s round %d/%d", p.done, p.total, el, cpu, c.Name, impl, round+1, rounds)
	case first:
		fmt.Fprintf(p.w, "[%d/%d %s] cpu=%d %s\n", p.done, p.total, el, cpu, c.Name)
	}
}

func (p *progressLine) finish() {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "%d measurements in %s\n", p.total, time.Since(p.start).Round(time.Second))
}

// measure runs case c on every implementation it takes, rounds times,
// rotating which implementation goes first in each round.
func measure(c benchkit.Case, cpu, rounds int, p *progressLine) ([]Result, error) {
	impls := implsFor(c)
	rs := make([]Result, len(impls))
	extras := make([]map[string][]float64, len(impls))
	for i, impl := range impls {
		rs[i] = Result{Workload: c.Name, CPU: cpu, Impl: impl.Name, Metric: c.Metric}
		extras[i] = map[string][]float64{}
	}
	for round := 0; round < rounds; round++ {
		for j := range impls {
			i := (j + round) % len(impls)
			p.step(cpu, c, impls[i].Name, round, rounds, round == 0 && j == 0)
			br := testing.Benchmark(func(b *testing.B) { c.Run(b, impls[i]) })
			if br.N == 0 {
				return nil, fmt.Errorf("%s on %s failed", c.Name, impls[i].Name)
			}
			v := float64(br.T.Nanoseconds()) / float64(br.N)
			if c.Metric != "ns/op" {
				v = br.Extra[c.Metric]
			}
			rs[i].Rounds = append(rs[i].Rounds, v)
			rs[i].AllocsPerOp = max(rs[i].AllocsPerOp, br.AllocsPerOp())
			for k, x := range br.Extra {
				extras[i][k] = append(extras[i][k], x)
			}
		}
	}
	for i := range rs {
		rs[i].Median = median(rs[i].Rounds)
		if len(extras[i]) > 0 {
			rs[i].Extra = map[string]float64{}
			for k, xs := range extras[i] {
				rs[i].Extra[k] = median(xs)
			}
		}
	}
	return rs, nil
}

func implsFor(c benchkit.Case) []benchkit.Impl {
	var out []benchkit.Impl
	for _, impl := range benchkit.Impls {
		if c.Takes(impl) {
			out = append(out, impl)
		}
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func human(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fs", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fms", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fµs", v/1e3)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}
