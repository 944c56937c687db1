package main

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/seed351623e9/presence/internal/benchkit"
)

// table indexes results by GOMAXPROCS and workload, in the order they ran.
type table struct {
	rows  map[rowKey]map[string]Result
	order []rowKey
}

type rowKey struct {
	cpu  int
	name string
}

func newTable(results []Result) table {
	t := table{rows: map[rowKey]map[string]Result{}}
	for _, r := range results {
		k := rowKey{r.CPU, r.Workload}
		if t.rows[k] == nil {
			t.rows[k] = map[string]Result{}
			t.order = append(t.order, k)
		}
		t.rows[k][r.Impl] = r
	}
	return t
}

// get returns the result of impl on the first workload at cpu whose name
// starts with prefix.
func (t table) get(cpu int, prefix, impl string) (Result, bool) {
	for _, k := range t.order {
		if k.cpu == cpu && strings.HasPrefix(k.name, prefix) {
			r, ok := t.rows[k][impl]
			return r, ok && len(r.Rounds) > 0
		}
	}
	return Result{}, false
}

const (
	statusMet    = "met"
	statusMissed = "MISSED"
	statusNotRun = "not measured"
)

// TargetCheck is one target checked against one run.
type TargetCheck struct {
	CPU    int     `json:"gomaxprocs"`
	Name   string  `json:"name"`
	Why    string  `json:"why"`
	Goal   string  `json:"goal"`
	Value  float64 `json:"value"`
	Shown  string  `json:"shown"`
	Status string  `json:"status"`
}

// target is one performance goal of the project: a figure computed from
// the results, and a bound on it.
type target struct {
	name, why string
	// value computes the figure; ok is false if the run lacks a workload
	// it needs.
	value  func(t table, cpu int) (v float64, ok bool)
	atMost bool    // the figure must be <= bound; otherwise >= bound
	bound  float64 // in the unit of value
	unit   string  // "x" for ratios, or "ms", "ns", "B"
}

const million = "consumers=1000000"

// ratioOf is the median of impl a on workload wa over impl b on wb.
func ratioOf(wa, a, wb, b string) func(table, int) (float64, bool) {
	return func(t table, cpu int) (float64, bool) {
		x, ok1 := t.get(cpu, wa, a)
		y, ok2 := t.get(cpu, wb, b)
		return x.Median / y.Median, ok1 && ok2 && y.Median > 0
	}
}

// medianOf is the median of impl on workload w, scaled.
func medianOf(w, impl string, scale float64) func(table, int) (float64, bool) {
	return func(t table, cpu int) (float64, bool) {
		r, ok := t.get(cpu, w, impl)
		return r.Median * scale, ok
	}
}

// extraOf is the median of the extra metric m of impl on the workloads
// with the given prefix, scaled.
func extraOf(prefix, impl, m string, scale float64) func(table, int) (float64, bool) {
	return func(t table, cpu int) (float64, bool) {
		r, ok := t.get(cpu, prefix, impl)
		v, has := r.Extra[m]
		return v * scale, ok && has
	}
}

// worstRoundRatio pairs the rounds of impl b on wb with those of impl a on
// wa, round by round, and returns the smallest ratio b/a: a speed-up that
// must hold in every round, not only in the median.
func worstRoundRatio(wa, a, wb, b string) func(table, int) (float64, bool) {
	return func(t table, cpu int) (float64, bool) {
		x, ok1 := t.get(cpu, wa, a)
		y, ok2 := t.get(cpu, wb, b)
		if !ok1 || !ok2 {
			return 0, false
		}
		worst := math.Inf(1)
		for i := 0; i < min(len(x.Rounds), len(y.Rounds)); i++ {
			worst = min(worst, y.Rounds[i]/x.Rounds[i])
		}
		return worst, true
	}
}

// refreshAllocs is the most any refresh workload of the registry allocated
// per heartbeat.
func refreshAllocs(t table, cpu int) (float64, bool) {
	most, seen := int64(0), false
	for _, w := range []string{"refresh/path=key/par=serial/", "refresh/path=key/par=parallel/", "refresh/path=handle/par=parallel/"} {
		if r, ok := t.get(cpu, w, "registry"); ok {
			most, seen = max(most, r.AllocsPerOp), true
		}
	}
	return float64(most), seen
}

var targets = []target{
	{name: "keyed refresh, 1 goroutine: time vs mutex", why: "one goroutine beating 10k consumers by key; the registry may cost at most 1.3x the fair mutex",
		value: ratioOf("refresh/path=key/par=serial/", "registry", "refresh/path=key/par=serial/", "mutex"), atMost: true, bound: 1.3, unit: "x"},
	{name: "keyed refresh, GOMAXPROCS goroutines: throughput vs mutex", why: "every P beating by key; the registry must do at least 1.8x the fair mutex's heartbeats",
		value: ratioOf("refresh/path=key/par=parallel/", "mutex", "refresh/path=key/par=parallel/", "registry"), bound: 1.8, unit: "x"},
	{name: "Handle refresh vs mutex keyed refresh, worst round", why: "a Handle skips hash and lookup; it must be 4x the mutex's keyed throughput in every round, not just the median",
		value: worstRoundRatio("refresh/path=handle/par=parallel/", "registry", "refresh/path=key/par=parallel/", "mutex"), bound: 4, unit: "x"},
	{name: "refresh allocations per heartbeat", why: "no refresh path may allocate",
		value: refreshAllocs, atMost: true, bound: 0, unit: ""},
	{name: "register, 100 consumers a group", why: "registering a new consumer into a presized registry, broker-shaped keys",
		value: medianOf("register/shape=grouped", "registry", 1), atMost: true, bound: 1500, unit: "ns"},
	{name: "register, one consumer per group and queue", why: "the same with a queue per device: a group of one must cost no maps of its own",
		value: medianOf("register/shape=solo", "registry", 1), atMost: true, bound: 1500, unit: "ns"},
	{name: "memory, 1e6 consumers, 100 a group, keys included", why: "live heap per consumer after registering a million broker-shaped keys",
		value: medianOf("memory/shape=grouped/"+million, "registry", 1), atMost: true, bound: 160, unit: "B"},
	{name: "memory, 1e6 single-consumer groups, keys included", why: "the same with a million groups of one",
		value: medianOf("memory/shape=solo/"+million, "registry", 1), atMost: true, bound: 300, unit: "B"},
	{name: "snapshot, 1e6 consumers: time vs mutex", why: "a full sorted snapshot must take at most 0.7x the fair mutex's sort-under-the-lock",
		value: ratioOf("snapshot/"+million, "registry", "snapshot/"+million, "mutex"), atMost: true, bound: 0.7, unit: "x"},
	{name: "PruneExpired with nothing to prune, 1e6 consumers", why: "a sweep that removes nothing is a read of every heartbeat word",
		value: medianOf("prune-none/"+million, "registry", 1e-6), atMost: true, bound: 40, unit: "ms"},
	{name: "  the same, on-CPU time of the walking thread", why: "wall time less the time the thread waited for a core on a shared machine",
		value: extraOf("prune-none/"+million, "registry", "cpu-ns/op", 1e-6), atMost: true, bound: 40, unit: "ms"},
	{name: "Stats, 1e6 consumers", why: "counting every consumer by state",
		value: medianOf("stats/"+million, "registry", 1e-6), atMost: true, bound: 40, unit: "ms"},
	{name: "  the same, on-CPU time of the walking thread", why: "wall time less the time the thread waited for a core on a shared machine",
		value: extraOf("stats/"+million, "registry", "cpu-ns/op", 1e-6), atMost: true, bound: 40, unit: "ms"},
	{name: "PruneExpired, nothing to prune: solo groups vs 100 a group", why: "one consumer per group and queue (a queue per device): a walk costs at most 1.5x per consumer what it costs with 100 a group",
		value: ratioOf("prune-none/shape=solo/", "registry", "prune-none/consumers=", "registry"), atMost: true, bound: 1.5, unit: "x"},
	{name: "Stats: solo groups vs 100 a group", why: "the same for counting by state",
		value: ratioOf("stats/shape=solo/", "registry", "stats/consumers=", "registry"), atMost: true, bound: 1.5, unit: "x"},
	{name: "checkpoint to io.Discard, 1e6 consumers", why: "encoding every consumer into the checkpoint format",
		value: medianOf("checkpoint/"+million, "registry", 1e-6), atMost: true, bound: 250, unit: "ms"},
	{name: "  the same, on-CPU time of the writing thread", why: "wall time less the time the thread waited for a core on a shared machine",
		value: extraOf("checkpoint/"+million, "registry", "cpu-ns/op", 1e-6), atMost: true, bound: 250, unit: "ms"},
	{name: "count-active-by-group at 1e6: speed-up over snapshot", why: "counting through the group index must beat building a snapshot 5x",
		value: ratioOf("snapshot/"+million, "registry", "count-active-by-group/"+million, "registry"), bound: 5, unit: "x"},
	{name: "refresh during snapshots: throughput kept", why: "refreshes while another goroutine snapshots 100k consumers back to back keep half their speed",
		value: ratioOf("refresh/snapshots=false/", "registry", "refresh/snapshots=true/", "registry"), bound: 0.5, unit: "x"},
}

// tailTargets bounds the registry's p999 heartbeat latency under every
// background load.
func tailTargets() []target {
	var out []target
	for _, l := range []string{"snapshot", "prune", "checkpoint", "storm"} {
		out = append(out, target{name: "heartbeat p999 while looping " + l + ", 100k consumers",
			why:   fmt.Sprintf("open-loop heartbeats every %v, latency from when each was due, while another goroutine loops %s", benchkit.TailInterval, l),
			value: extraOf("tail/load="+l+"/consumers=100000", "registry", "p999-ns", 1e-3), atMost: true, bound: 20, unit: "µs"})
	}
	return out
}

// checkTargets checks every target at every GOMAXPROCS of the run.
func checkTargets(t table, cpus []int) []TargetCheck {
	var out []TargetCheck
	all := append(slices.Clone(targets), tailTargets()...)
	for _, cpu := range cpus {
		for _, tg := range all {
			out = append(out, tg.check(t, cpu))
		}
	}
	return out
}

func (tg target) check(t table, cpu int) TargetCheck {
	rel := ">="
	if tg.atMost {
		rel = "<="
	}
	c := TargetCheck{CPU: cpu, Name: tg.name, Why: tg.why, Goal: fmt.Sprintf("%s %g%s", rel, tg.bound, tg.unit), Status: statusNotRun, Shown: "-"}
	v, ok := tg.value(t, cpu)
	if !ok || math.IsNaN(v) {
		return c
	}
	c.Value = v
	c.Shown = fmt.Sprintf("%.2f%s", v, tg.unit)
	met := v >= tg.bound
	if tg.atMost {
		met = v <= tg.bound
	}
	c.Status = statusMissed
	if met {
		c.Status = statusMet
	}
	return c
}
