package benchkit

import (
	"sync/atomic"
	"testing"
)

// BenchmarkMachine measures what a machine gives a second core, with no
// registry involved, so that the parallel refresh figures can be read
// against it:
//
//	go test -run '^$' -bench Machine -cpu 1,2 ./internal/benchkit
//
// Each goroutine works on memory of its own, so on a machine whose cores
// are real, every case's ns/op halves from -cpu 1 to -cpu 2:
//   - alu: arithmetic in registers, no memory;
//   - chase: dependent loads through a random cycle over 16 MiB per
//     goroutine (memory latency);
//   - cas: a load and a compare-and-swap per word, over 800 KB per
//     goroutine (the shape of a refresh's atomic update).
func BenchmarkMachine(b *testing.B) {
	b.Run("work=alu", func(b *testing.B) {
		var sink atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			x := uint64(1)
			for pb.Next() {
				for range 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			sink.Add(x)
		})
	})
	b.Run("work=chase", func(b *testing.B) {
		var sink atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			buf := randomCycle(4<<20, uint64(len(b.Name())))
			j := uint32(0)
			for pb.Next() {
				j = buf[j]
			}
			sink.Add(uint64(j))
		})
	})
	b.Run("work=cas", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			w := make([]atomic.Int64, 100_000)
			i := 0
			for pb.Next() {
				p := &w[i]
				v := p.Load()
				p.CompareAndSwap(v, v+1)
				if i += 10; i >= len(w) {
					i -= len(w) - 1
				}
			}
		})
	})
}

// randomCycle returns a permutation of [0, n) that is one cycle, so that
// following it from 0 visits every element in a random order.
func randomCycle(n int, seed uint64) []uint32 {
	perm := make([]uint32, n)
	for i := range perm {
		perm[i] = uint32(i)
	}
	s := seed | 1
	for i := n - 1; i > 0; i-- {
		s = s*6364136223846793005 + 1442695040888963407
		k := int(s>>33) % (i + 1)
		perm[i], perm[k] = perm[k], perm[i]
	}
	next := make([]uint32, n)
	for i := range perm {
		next[perm[i]] = perm[(i+1)%n]
	}
	return next
}
