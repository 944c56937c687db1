package benchkit

import (
	"fmt"
	"testing"
	"time"
)

// Case is one workload at one size, runnable on the implementations it
// applies to.
type Case struct {
	Name string // e.g. "refresh/path=key/par=parallel/consumers=10000"
	// Metric is the unit compared across implementations: "ns/op", or a
	// custom metric the case reports, such as "bytes/consumer".
	Metric string
	// WithSOL says the speed of light takes part.
	WithSOL bool
	// Only, if set, names the implementations that take part.
	Only []string
	Run  func(b *testing.B, impl Impl)
}

// Sizes are the consumer counts of a suite.
type Sizes struct {
	Refresh  int   // consumers refreshed by the refresh workloads
	Snapshot int   // consumers behind the refresh-during-snapshots pair
	Reads    []int // consumer counts for Snapshot, CountActiveByGroup, PruneExpired
	Walk     int   // consumers behind prune-none, stats and checkpoint
	Memory   int   // consumers registered by the memory workloads
	Tail     int   // consumers behind the tail-latency workloads
	// TailFor is how long one tail-latency measurement runs.
	TailFor time.Duration
}

// FullSizes are the sizes the README's figures use.
var FullSizes = Sizes{Refresh: 10000, Snapshot: 100000, Reads: []int{1000, 100000, 1000000},
	Walk: 1000000, Memory: 1000000, Tail: 100000, TailFor: time.Second}

// QuickSizes keep a whole run of cmd/presencebench -quick to a few minutes.
var QuickSizes = Sizes{Refresh: 10000, Snapshot: 20000, Reads: []int{1000, 20000},
	Walk: 20000, Memory: 20000, Tail: 20000, TailFor: 200 * time.Millisecond}

// Suite returns every case at the given sizes, in the order of the report.
func Suite(s Sizes) []Case {
	c := func(n int) string { return fmt.Sprintf("consumers=%d", n) }
	cases := []Case{
		{Name: "refresh/path=key/par=serial/" + c(s.Refresh), Metric: "ns/op", WithSOL: true,
			Run: func(b *testing.B, i Impl) { RefreshKey(b, i, Grouped, s.Refresh, false) }},
		{Name: "refresh/path=key/par=parallel/" + c(s.Refresh), Metric: "ns/op", WithSOL: true,
			Run: func(b *testing.B, i Impl) { RefreshKey(b, i, Grouped, s.Refresh, true) }},
		{Name: "refresh/path=handle/par=parallel/" + c(s.Refresh), Metric: "ns/op", WithSOL: true,
			Run: func(b *testing.B, i Impl) { RefreshHandle(b, i, s.Refresh) }},
		{Name: "refresh/snapshots=false/" + c(s.Snapshot), Metric: "ns/op",
			Run: func(b *testing.B, i Impl) { RefreshDuringSnapshots(b, i, s.Snapshot, false) }},
		{Name: "refresh/snapshots=true/" + c(s.Snapshot), Metric: "ns/op",
			Run: func(b *testing.B, i Impl) { RefreshDuringSnapshots(b, i, s.Snapshot, true) }},
	}
	for _, sh := range []Shape{Grouped, Solo} {
		cases = append(cases,
			Case{Name: "register/shape=" + string(sh), Metric: "ns/op", Run: func(b *testing.B, i Impl) { Register(b, i, sh) }},
			Case{Name: "memory/shape=" + string(sh) + "/" + c(s.Memory), Metric: "bytes/consumer", Only: []string{"registry", "mutex"},
				Run: func(b *testing.B, i Impl) { Memory(b, i, s.Memory, sh) }})
	}
	for _, n := range s.Reads {
		cases = append(cases,
			Case{Name: "snapshot/" + c(n), Metric: "ns/op", Run: func(b *testing.B, i Impl) { Snapshot(b, i, n) }},
			Case{Name: "count-active-by-group/" + c(n), Metric: "ns/op", Run: func(b *testing.B, i Impl) { CountActiveByGroup(b, i, n) }},
			Case{Name: "prune-expired/" + c(n), Metric: "ns/op", Run: func(b *testing.B, i Impl) { PruneExpired(b, i, n) }},
		)
	}
	if len(s.Reads) > 0 {
		n := s.Reads[len(s.Reads)-1]
		cases = append(cases, Case{Name: "snapshot-group/group=100/" + c(n), Metric: "ns/op",
			Only: []string{"registry", "mutex"}, Run: func(b *testing.B, i Impl) { SnapshotGroup(b, i, n) }})
	}
	cases = append(cases,
		Case{Name: "prune-none/" + c(s.Walk), Metric: "ns/op", Run: func(b *testing.B, i Impl) { PruneNone(b, i, s.Walk, Grouped) }},
		Case{Name: "stats/" + c(s.Walk), Metric: "ns/op", Only: []string{"registry", "mutex"},
			Run: func(b *testing.B, i Impl) { Stats(b, i, s.Walk, Grouped) }},
		// The same walks over single-consumer groups: their cost per
		// consumer must not depend on the shape of the groups.
		Case{Name: "prune-none/shape=solo/" + c(s.Walk), Metric: "ns/op", Only: []string{"registry"},
			Run: func(b *testing.B, i Impl) { PruneNone(b, i, s.Walk, Solo) }},
		Case{Name: "stats/shape=solo/" + c(s.Walk), Metric: "ns/op", Only: []string{"registry"},
			Run: func(b *testing.B, i Impl) { Stats(b, i, s.Walk, Solo) }},
		Case{Name: "checkpoint/" + c(s.Walk), Metric: "ns/op", Only: []string{"registry"},
			Run: func(b *testing.B, i Impl) { Checkpoint(b, i, s.Walk) }},
	)
	for _, l := range Loads {
		only := []string{"registry", "mutex"}
		if l == LoadCheckpoint {
			only = only[:1] // the mutex has no checkpoint
		}
		cases = append(cases, Case{Name: "tail/load=" + string(l) + "/" + c(s.Tail), Metric: "p999-ns",
			Only: only, Run: func(b *testing.B, i Impl) { Tail(b, i, s.Tail, l, s.TailFor) }})
	}
	return cases
}

// Takes reports whether implementation impl takes part in case c.
func (c Case) Takes(impl Impl) bool {
	if impl.RefreshOnly && !c.WithSOL {
		return false
	}
	if c.Only == nil {
		return true
	}
	for _, n := range c.Only {
		if n == impl.Name {
			return true
		}
	}
	return false
}
