package presence_test

// One harness over every implementation: the workloads live in
// internal/benchkit, shared with cmd/presencebench. Sub-benchmarks are named
// key=value, so that
//
//	go test -run '^$' -bench . -count 10 | benchstat -col /impl -
//
// compares the implementations side by side from one run.

import (
	"fmt"
	"testing"

	"github.com/seed351623e9/presence/internal/benchkit"
)

// eachImpl runs f once per implementation, skipping the speed of light
// unless refreshOK.
func eachImpl(b *testing.B, refreshOK bool, f func(b *testing.B, impl benchkit.Impl)) {
	for _, impl := range benchkit.Impls {
		if impl.RefreshOnly && !refreshOK {
			continue
		}
		b.Run("impl="+impl.Name, func(b *testing.B) { f(b, impl) })
	}
}

func consumersName(n int) string { return fmt.Sprintf("consumers=%d", n) }

func BenchmarkHeartbeat(b *testing.B) {
	const n = 10000
	eachImpl(b, true, func(b *testing.B, impl benchkit.Impl) {
		b.Run("path=key/par=serial/"+consumersName(n), func(b *testing.B) { benchkit.RefreshKey(b, impl, n, false) })
		b.Run("path=key/par=parallel/"+consumersName(n), func(b *testing.B) { benchkit.RefreshKey(b, impl, n, true) })
		b.Run("path=handle/par=parallel/"+consumersName(n), func(b *testing.B) { benchkit.RefreshHandle(b, impl, n) })
	})
}

func BenchmarkRegister(b *testing.B) {
	eachImpl(b, false, func(b *testing.B, impl benchkit.Impl) { benchkit.Register(b, impl) })
}

func BenchmarkHeartbeatDuringSnapshots(b *testing.B) {
	const n = 100000
	eachImpl(b, false, func(b *testing.B, impl benchkit.Impl) {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("snapshots=%v/%s", on, consumersName(n)), func(b *testing.B) {
				benchkit.RefreshDuringSnapshots(b, impl, n, on)
			})
		}
	})
}

var readSizes = []int{1000, 100000, 1000000}

func BenchmarkSnapshot(b *testing.B) {
	eachImpl(b, false, func(b *testing.B, impl benchkit.Impl) {
		for _, n := range readSizes {
			b.Run(consumersName(n), func(b *testing.B) { benchkit.Snapshot(b, impl, n) })
		}
	})
}

func BenchmarkCountActiveByGroup(b *testing.B) {
	eachImpl(b, false, func(b *testing.B, impl benchkit.Impl) {
		for _, n := range readSizes {
			b.Run(consumersName(n), func(b *testing.B) { benchkit.CountActiveByGroup(b, impl, n) })
		}
	})
}

func BenchmarkPruneExpired(b *testing.B) {
	eachImpl(b, false, func(b *testing.B, impl benchkit.Impl) {
		for _, n := range readSizes {
			b.Run(consumersName(n), func(b *testing.B) { benchkit.PruneExpired(b, impl, n) })
		}
	})
}

func BenchmarkMemory(b *testing.B) {
	const n = 100000
	eachImpl(b, false, func(b *testing.B, impl benchkit.Impl) {
		b.Run(consumersName(n), func(b *testing.B) { benchkit.Memory(b, impl, n) })
	})
}
