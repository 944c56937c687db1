package presence_test

// One harness over every implementation: the workloads live in
// internal/benchkit and are shared with cmd/presencebench. Sub-benchmarks
// are named key=value, so that
//
//	go test -run '^$' -bench . -count 10 | benchstat -col /impl -
//
// compares the implementations side by side from one run.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/seed351623e9/presence/internal/benchkit"
)

// BenchmarkRegistry runs every case of the suite on every implementation
// it applies to, as BenchmarkRegistry/impl=NAME/CASE.
func BenchmarkRegistry(b *testing.B) {
	for _, impl := range benchkit.Impls {
		b.Run("impl="+impl.Name, func(b *testing.B) {
			for _, c := range benchkit.Suite(benchkit.FullSizes) {
				if !c.Takes(impl) {
					continue
				}
				b.Run(c.Name, func(b *testing.B) { c.Run(b, impl) })
			}
		})
	}
}

// BenchmarkHeartbeat runs the refresh cases of the suite alone, as
// BenchmarkHeartbeat/impl=registry/path=key/par=serial/consumers=10000 and
// friends.
func BenchmarkHeartbeat(b *testing.B) {
	for _, impl := range benchkit.Impls {
		b.Run("impl="+impl.Name, func(b *testing.B) {
			for _, c := range benchkit.Suite(benchkit.FullSizes) {
				if name, ok := strings.CutPrefix(c.Name, "refresh/path="); ok {
					b.Run("path="+name, func(b *testing.B) { c.Run(b, impl) })
				}
			}
		})
	}
}

func BenchmarkCheckpoint(b *testing.B) {
	for _, n := range []int{100000, 1000000} {
		b.Run(fmt.Sprintf("impl=registry/consumers=%d", n), func(b *testing.B) { benchkit.Checkpoint(b, benchkit.RegistryImpl, n) })
	}
}

// BenchmarkHeartbeatDuringCheckpoints pairs with the snapshots=false case of
// BenchmarkRegistry: the share of refresh throughput kept while a checkpoint
// is always being written.
func BenchmarkHeartbeatDuringCheckpoints(b *testing.B) {
	b.Run("impl=registry/checkpoints=true/consumers=100000", func(b *testing.B) {
		benchkit.RefreshDuringCheckpoints(b, 100000)
	})
}
