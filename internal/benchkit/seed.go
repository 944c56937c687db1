package benchkit

import (
	"testing"
)

// The seed's own workloads (shared/seedbench), with its key shape (Seed):
// the same names, sizes and access patterns, so that cmd/presencebench
// -seed can put the two side by side. All consumers are Active in the read
// workloads, as there.

// SeedSuite returns the seed's workloads, named as seedbench names them.
func SeedSuite() []Case {
	const refreshN, readN = 10000, 100000
	only := []string{"registry", "mutex"}
	return []Case{
		{Name: "seed/refresh_1t", Metric: "ns/op", Only: only,
			Run: func(b *testing.B, i Impl) { RefreshKey(b, i, Seed, refreshN, false) }},
		{Name: "seed/refresh_2t", Metric: "ns/op", Only: only,
			Run: func(b *testing.B, i Impl) { RefreshKey(b, i, Seed, refreshN, true) }},
		{Name: "seed/insert_1t", Metric: "ns/op", Only: only,
			Run: func(b *testing.B, i Impl) { seedInsert(b, i) }},
		{Name: "seed/count_active_100k", Metric: "ns/op", Only: only,
			Run: func(b *testing.B, i Impl) { seedRead(b, i, readN, readCount) }},
		{Name: "seed/snapshot_100k", Metric: "ns/op", Only: only,
			Run: func(b *testing.B, i Impl) { seedRead(b, i, readN, readSnapshot) }},
		{Name: "seed/prune_100k_none", Metric: "ns/op", Only: only,
			Run: func(b *testing.B, i Impl) { seedRead(b, i, readN, readPrune) }},
	}
}

// seedInsert registers b.N new consumers into an empty registry that is
// not presized, as the seed's insert_1t does.
func seedInsert(b *testing.B, impl Impl) {
	keys := Seed.Keys(0, b.N)
	r := impl.Empty(0)
	settle(b)
	for i := range keys {
		check(b, r.Heartbeat(keys[i], 0, T0))
	}
}

type seedReadKind int

const (
	readCount seedReadKind = iota
	readSnapshot
	readPrune
)

// seedRead runs one whole-registry read over n Active consumers.
func seedRead(b *testing.B, impl Impl, n int, kind seedReadKind) {
	r := impl.New(Seed.Keys(0, n), T0)
	now := T0.Add(1e6) // 1 ms after every heartbeat
	settle(b)
	for i := 0; i < b.N; i++ {
		var got int
		switch kind {
		case readCount:
			for _, c := range r.CountActiveByGroup(now, TTL) {
				got += c
			}
		case readSnapshot:
			got = len(r.Snapshot(now, TTL))
		case readPrune:
			got = n - r.PruneExpired(now, TTL)
		}
		if got != n {
			b.Fatalf("read saw %d consumers, want %d", got, n)
		}
	}
}
