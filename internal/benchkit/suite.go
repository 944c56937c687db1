package benchkit

import (
	"fmt"
	"testing"
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
	Memory   int   // consumers registered by the memory workload
}

// FullSizes are the sizes the README's figures use.
var FullSizes = Sizes{Refresh: 10000, Snapshot: 100000, Reads: []int{1000, 100000, 1000000}, Memory: 100000}

// QuickSizes keep a whole run of cmd/presencebench -quick under a minute.
var QuickSizes = Sizes{Refresh: 10000, Snapshot: 20000, Reads: []int{1000, 20000}, Memory: 20000}

// Suite returns every case at the given sizes, in the order of the report.
func Suite(s Sizes) []Case {
	c := func(n int) string { return fmt.Sprintf("consumers=%d", n) }
	cases := []Case{
		{Name: "refresh/path=key/par=serial/" + c(s.Refresh), Metric: "ns/op", WithSOL: true,
			Run: func(b *testing.B, i Impl) { RefreshKey(b, i, s.Refresh, false) }},
		{Name: "refresh/path=key/par=parallel/" + c(s.Refresh), Metric: "ns/op", WithSOL: true,
			Run: func(b *testing.B, i Impl) { RefreshKey(b, i, s.Refresh, true) }},
		{Name: "refresh/path=handle/par=parallel/" + c(s.Refresh), Metric: "ns/op", WithSOL: true,
			Run: func(b *testing.B, i Impl) { RefreshHandle(b, i, s.Refresh) }},
		{Name: "register", Metric: "ns/op",
			Run: func(b *testing.B, i Impl) { Register(b, i) }},
		{Name: "refresh/snapshots=false/" + c(s.Snapshot), Metric: "ns/op",
			Run: func(b *testing.B, i Impl) { RefreshDuringSnapshots(b, i, s.Snapshot, false) }},
		{Name: "refresh/snapshots=true/" + c(s.Snapshot), Metric: "ns/op",
			Run: func(b *testing.B, i Impl) { RefreshDuringSnapshots(b, i, s.Snapshot, true) }},
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
	return append(cases, Case{Name: "memory/" + c(s.Memory), Metric: "bytes/consumer",
		Run: func(b *testing.B, i Impl) { Memory(b, i, s.Memory) }})
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
