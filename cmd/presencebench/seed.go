package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// SeedRow is one workload of the seed's own benchmark next to the same
// workload run here.
type SeedRow struct {
	Workload string  `json:"workload"`
	Seed     float64 `json:"seed_ns_per_op"`
	Registry float64 `json:"registry_ns_per_op"`
	Mutex    float64 `json:"mutex_ns_per_op"`
	Status   string  `json:"status"` // met: the registry is faster than the seed
}

// readSeed parses seedbench's output: "name value" lines, '#' lines
// being diagnostics.
func readSeed(path string) (map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("%s: bad line %q", path, line)
		}
		out[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no results", path)
	}
	return out, nil
}

// seedRows pairs the seed's figures with this run's seed/ workloads.
func seedRows(seed map[string]float64, results []Result) []SeedRow {
	t := newTable(results)
	var rows []SeedRow
	for _, k := range t.order {
		name, ok := strings.CutPrefix(k.name, "seed/")
		s, have := seed[name]
		if !ok || !have {
			continue
		}
		row := SeedRow{Workload: name, Seed: s, Registry: t.rows[k]["registry"].Median, Mutex: t.rows[k]["mutex"].Median, Status: statusMissed}
		if row.Registry > 0 && row.Registry < s {
			row.Status = statusMet
		}
		rows = append(rows, row)
	}
	return rows
}

func printSeed(w io.Writer, rows []SeedRow) {
	fmt.Fprintf(w, "\nthe seed's workloads (shared/seedbench, best of 3) next to the same ones here (median), ns/op:\n")
	fmt.Fprintf(w, "%-22s %12s %12s %12s %16s  %s\n", "workload", "seed", "registry", "mutex", "registry/seed", "faster than the seed")
	for _, r := range rows {
		fmt.Fprintf(w, "%-22s %12s %12s %12s %15.3fx  %s\n", r.Workload, human(r.Seed), human(r.Registry), human(r.Mutex), r.Registry/r.Seed, r.Status)
	}
}
