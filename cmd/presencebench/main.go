// Command presencebench runs the benchmark suite of presence in one
// process and prints one table: for every workload, the median of several
// rounds for each implementation, and the ratios of the registry to the
// mutex baseline and to the speed of light.
//
// Implementations alternate round by round, in a rotating order, so that
// drift on a noisy machine falls on all of them alike.
//
// Usage:
//
//	go run ./cmd/presencebench [-quick] [-rounds 5] [-consumers 10000] [-cpu 1,2] [-benchtime 200ms] [-json]
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
	tty       bool // progress redraws one line; otherwise a line per workload
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("presencebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var cpu, run string
	fs.BoolVar(&o.quick, "quick", false, "smaller sizes and a short benchtime: the whole run takes under a minute")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds per workload; each round runs every implementation once")
	fs.IntVar(&o.consumers, "consumers", 10000, "consumers refreshed by the refresh workloads")
	fs.StringVar(&cpu, "cpu", strconv.Itoa(runtime.GOMAXPROCS(0)), "comma-separated GOMAXPROCS values to run at")
	fs.DurationVar(&o.benchtime, "benchtime", 0, "target time of one measurement (default 200ms, 40ms with -quick)")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	fs.StringVar(&run, "run", "", "only workloads whose name matches this regular expression")
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

func run(o options, stdout, progress io.Writer) error {
	testing.Init()
	if err := flag.Set("test.benchtime", o.benchtime.String()); err != nil {
		return err
	}
	sizes := benchkit.FullSizes
	if o.quick {
		sizes = benchkit.QuickSizes
	}
	sizes.Refresh = o.consumers
	var cases []benchkit.Case
	for _, c := range benchkit.Suite(sizes) {
		if o.run.MatchString(c.Name) {
			cases = append(cases, c)
		}
	}
	if len(cases) == 0 {
		return fmt.Errorf("-run %q matches no workload", o.run)
	}

	total, done := 0, 0
	for _, c := range cases {
		total += len(implsFor(c)) * o.rounds * len(o.cpus)
	}
	start := time.Now()
	var results []Result
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	for _, cpu := range o.cpus {
		runtime.GOMAXPROCS(cpu)
		for _, c := range cases {
			impls := implsFor(c)
			rs := make([]Result, len(impls))
			for i, impl := range impls {
				rs[i] = Result{Workload: c.Name, CPU: cpu, Impl: impl.Name, Metric: c.Metric}
			}
			for round := 0; round < o.rounds; round++ {
				for j := range impls {
					i := (j + round) % len(impls) // rotate who goes first
					done++
					switch {
					case o.tty:
						fmt.Fprintf(progress, "\r\033[K[%d/%d %s] cpu=%d %s impl=%s round %d/%d",
							done, total, time.Since(start).Round(time.Second), cpu, c.Name, impls[i].Name, round+1, o.rounds)
					case round == 0 && j == 0:
						fmt.Fprintf(progress, "[%d/%d %s] cpu=%d %s\n", done, total, time.Since(start).Round(time.Second), cpu, c.Name)
					}
					br := testing.Benchmark(func(b *testing.B) { c.Run(b, impls[i]) })
					if br.N == 0 {
						return fmt.Errorf("%s on %s failed", c.Name, impls[i].Name)
					}
					v := float64(br.NsPerOp())
					if c.Metric != "ns/op" {
						v = br.Extra[c.Metric]
					} else if br.N > 0 {
						v = float64(br.T.Nanoseconds()) / float64(br.N)
					}
					rs[i].Rounds = append(rs[i].Rounds, v)
					rs[i].AllocsPerOp = br.AllocsPerOp()
				}
			}
			for i := range rs {
				rs[i].Median = median(rs[i].Rounds)
			}
			results = append(results, rs...)
		}
	}
	if o.tty {
		fmt.Fprint(progress, "\r\033[K")
	}
	fmt.Fprintf(progress, "%d measurements in %s\n", total, time.Since(start).Round(time.Second))
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	printTable(stdout, o, results)
	return nil
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

func printTable(w io.Writer, o options, results []Result) {
	fmt.Fprintf(w, "presencebench: %s %s/%s, %d rounds, benchtime %v, medians; allocs/op in brackets\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, o.rounds, o.benchtime)
	names := []string{}
	for _, impl := range benchkit.Impls {
		names = append(names, impl.Name)
	}
	fmt.Fprintf(w, "\n%-5s %-52s %-15s", "procs", "workload", "metric")
	for _, n := range names {
		fmt.Fprintf(w, " %16s", n)
	}
	fmt.Fprintf(w, " %14s %12s\n", "registry/mutex", "registry/sol")
	type key struct {
		cpu  int
		name string
	}
	by := map[key]map[string]Result{}
	var order []key
	for _, r := range results {
		k := key{r.CPU, r.Workload}
		if by[k] == nil {
			by[k] = map[string]Result{}
			order = append(order, k)
		}
		by[k][r.Impl] = r
	}
	ratio := func(a, b Result, ok bool) string {
		if !ok || b.Median == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", a.Median/b.Median)
	}
	for _, k := range order {
		row := by[k]
		reg := row["registry"]
		fmt.Fprintf(w, "%-5d %-52s %-15s", k.cpu, k.name, reg.Metric)
		for _, n := range names {
			r, ok := row[n]
			if !ok {
				fmt.Fprintf(w, " %16s", "-")
				continue
			}
			fmt.Fprintf(w, " %16s", fmt.Sprintf("%s [%d]", human(r.Median), r.AllocsPerOp))
		}
		m, okm := row["mutex"]
		s, oks := row["sol"]
		fmt.Fprintf(w, " %14s %12s\n", ratio(reg, m, okm), ratio(reg, s, oks))
	}
	printTargets(w, by2(results))
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

// by2 indexes results by GOMAXPROCS, workload prefix and implementation.
func by2(results []Result) map[int]map[string]map[string]Result {
	out := map[int]map[string]map[string]Result{}
	for _, r := range results {
		if out[r.CPU] == nil {
			out[r.CPU] = map[string]map[string]Result{}
		}
		if out[r.CPU][r.Workload] == nil {
			out[r.CPU][r.Workload] = map[string]Result{}
		}
		out[r.CPU][r.Workload][r.Impl] = r
	}
	return out
}

// printTargets checks the figures against the project's targets, where the
// run has the workloads they need.
func printTargets(w io.Writer, all map[int]map[string]map[string]Result) {
	cpus := []int{}
	for c := range all {
		cpus = append(cpus, c)
	}
	slices.Sort(cpus)
	for _, cpu := range cpus {
		ws := all[cpu]
		find := func(prefix string) map[string]Result {
			for name, row := range ws {
				if strings.HasPrefix(name, prefix) {
					return row
				}
			}
			return nil
		}
		fmt.Fprintf(w, "\ntargets at GOMAXPROCS=%d:\n", cpu)
		check := func(what string, v float64, ok bool, goal string, met bool) {
			if !ok {
				return
			}
			mark := "MISSED"
			if met {
				mark = "met"
			}
			fmt.Fprintf(w, "  %-62s %8.2f  (target %s) %s\n", what, v, goal, mark)
		}
		get := func(row map[string]Result, impl string) (float64, bool) {
			r, ok := row[impl]
			return r.Median, ok && r.Median > 0
		}
		if row := find("refresh/path=key/par=parallel/"); row != nil {
			reg, ok1 := get(row, "registry")
			mu, ok2 := get(row, "mutex")
			sol, ok3 := get(row, "sol")
			check("refresh by key, parallel: throughput vs mutex", mu/reg, ok1 && ok2, ">= 2.0x", mu/reg >= 2)
			check("refresh by key, parallel: ns/op vs speed of light", reg/sol, ok1 && ok3, "<= 1.15x", reg/sol <= 1.15)
		}
		if row := find("refresh/path=key/par=serial/"); row != nil {
			reg, ok1 := get(row, "registry")
			sol, ok3 := get(row, "sol")
			check("refresh by key, serial: ns/op vs speed of light", reg/sol, ok1 && ok3, "<= 1.15x", reg/sol <= 1.15)
		}
		if row := find("refresh/path=handle/par=parallel/"); row != nil {
			reg, ok1 := get(row, "registry")
			mu, ok2 := get(row, "mutex")
			check("refresh by handle, parallel: throughput vs mutex", mu/reg, ok1 && ok2, ">= 10x", mu/reg >= 10)
		}
		off, on := find("refresh/snapshots=false/"), find("refresh/snapshots=true/")
		if off != nil && on != nil {
			a, ok1 := get(off, "registry")
			b, ok2 := get(on, "registry")
			check("refresh during snapshots: registry keeps this share", a/b, ok1 && ok2, ">= 0.50", a/b >= 0.5)
			c, ok3 := get(off, "mutex")
			d, ok4 := get(on, "mutex")
			check("refresh during snapshots: mutex keeps this share (report)", c/d, ok3 && ok4, "none", true)
		}
		var biggest string
		for name := range ws {
			if strings.HasPrefix(name, "snapshot/") && (biggest == "" || len(name) > len(biggest) || len(name) == len(biggest) && name > biggest) {
				biggest = name
			}
		}
		if biggest != "" {
			n := strings.TrimPrefix(biggest, "snapshot/")
			snap, count := ws[biggest], ws["count-active-by-group/"+n]
			reg, ok1 := get(snap, "registry")
			mu, ok2 := get(snap, "mutex")
			cnt, ok3 := get(count, "registry")
			check("snapshot at "+n+": time vs mutex", reg/mu, ok1 && ok2, "<= 1.5x", reg/mu <= 1.5)
			check("count-active-by-group at "+n+": speed-up over snapshot", reg/cnt, ok1 && ok3, ">= 5x", reg/cnt >= 5)
		}
		if row := find("snapshot-group/"); row != nil && biggest != "" {
			grp, ok1 := get(row, "registry")
			full, ok2 := get(ws[biggest], "registry")
			check("snapshot of a 100-consumer group: speed-up over full snapshot", full/grp, ok1 && ok2, ">= 100x", full/grp >= 100)
		}
		if row := find("memory/"); row != nil {
			reg, ok1 := get(row, "registry")
			mu, ok2 := get(row, "mutex")
			check("memory: bytes/consumer vs mutex (keys excluded)", reg/mu, ok1 && ok2, "<= 1.5x", reg/mu <= 1.5)
		}
	}
}
