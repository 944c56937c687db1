package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/seed351623e9/presence/internal/benchkit"
)

// printReport prints the machine, the table of medians, the tail
// latencies and the targets.
func printReport(w io.Writer, o options, rep Report) {
	m := rep.Machine
	fmt.Fprintf(w, "presencebench: %s %s/%s, %s (%d CPUs, loadavg %s), GOMAXPROCS %v, %d rounds, benchtime %v, medians; allocs/op in brackets\n",
		m.GoVersion, m.OS, m.Arch, m.CPUModel, m.NumCPU, m.LoadAvg, m.GOMAXPROCS, m.Rounds, m.Benchtime)
	fmt.Fprintln(w, "Ratios are from one process with the implementations alternating; on a shared 2-core machine they move by ±20% from run to run.")
	printTable(w, rep.Results)
	printOnCPU(w, rep.Results)
	printTail(w, rep.Results)
	if rep.Seed != nil {
		printSeed(w, rep.Seed)
		return
	}
	printTargets(w, o, rep.Targets)
}

func implNames() []string {
	var names []string
	for _, impl := range benchkit.Impls {
		names = append(names, impl.Name)
	}
	return names
}

// printTable prints one row per workload and GOMAXPROCS, tail-latency
// workloads excepted.
func printTable(w io.Writer, results []Result) {
	names := implNames()
	fmt.Fprintf(w, "\n%-5s %-52s %-15s", "procs", "workload", "metric")
	for _, n := range names {
		fmt.Fprintf(w, " %16s", n)
	}
	fmt.Fprintf(w, " %14s %12s\n", "registry/mutex", "registry/sol")
	t := newTable(results)
	for _, k := range t.order {
		if strings.HasPrefix(k.name, "tail/") {
			continue
		}
		row := t.rows[k]
		reg := row["registry"]
		fmt.Fprintf(w, "%-5d %-52s %-15s", k.cpu, k.name, reg.Metric)
		for _, n := range names {
			if r, ok := row[n]; ok {
				fmt.Fprintf(w, " %16s", fmt.Sprintf("%s [%d]", human(r.Median), r.AllocsPerOp))
			} else {
				fmt.Fprintf(w, " %16s", "-")
			}
		}
		fmt.Fprintf(w, " %14s %12s\n", ratio(row, "registry", "mutex"), ratio(row, "registry", "sol"))
	}
}

func ratio(row map[string]Result, a, b string) string {
	x, ok1 := row[a]
	y, ok2 := row[b]
	if !ok1 || !ok2 || y.Median == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", x.Median/y.Median)
}

// printOnCPU prints wall time next to the CPU time of the measuring thread
// for the workloads that report it: the gap is time spent waiting for a
// core.
func printOnCPU(w io.Writer, results []Result) {
	header := false
	for _, r := range results {
		c, ok := r.Extra["cpu-ns/op"]
		if !ok {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\nwall time and on-CPU time of the thread that ran the walk (medians; the gap is waiting for a core):\n")
			fmt.Fprintf(w, "%-5s %-52s %-9s %12s %12s\n", "procs", "workload", "impl", "wall", "on-CPU")
			header = true
		}
		fmt.Fprintf(w, "%-5d %-52s %-9s %12s %12s\n", r.CPU, r.Workload, r.Impl, human(r.Median), human(c))
	}
}

// printTail prints the latency percentiles of the tail workloads.
func printTail(w io.Writer, results []Result) {
	header := false
	for _, r := range results {
		if !strings.HasPrefix(r.Workload, "tail/") {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\nsingle-heartbeat latency, one beat every %v, timed from when it was due, while another goroutine loops the load (medians over rounds):\n", benchkit.TailInterval)
			fmt.Fprintf(w, "%-5s %-40s %-9s %10s %10s %10s %10s %8s\n", "procs", "workload", "impl", "p50", "p99", "p999", "max", "loads")
			header = true
		}
		x := r.Extra
		fmt.Fprintf(w, "%-5d %-40s %-9s %10s %10s %10s %10s %8.0f\n", r.CPU, r.Workload, r.Impl,
			human(x["p50-ns"]), human(x["p99-ns"]), human(x["p999-ns"]), human(x["max-ns"]), x["loads"])
	}
}

func printTargets(w io.Writer, o options, checks []TargetCheck) {
	if o.quick {
		fmt.Fprintln(w, "\n-quick runs smaller sizes: targets at 1e6 or 100k consumers show as not measured; run without -quick for all of them.")
	}
	cpu := -1
	for _, c := range checks {
		if c.CPU != cpu {
			cpu = c.CPU
			fmt.Fprintf(w, "\ntargets at GOMAXPROCS=%d:\n", cpu)
		}
		fmt.Fprintf(w, "  %-60s %10s  (target %s) %s\n", c.Name, c.Shown, c.Goal, c.Status)
		if o.quick {
			fmt.Fprintf(w, "      %s\n", c.Why)
		}
	}
}
