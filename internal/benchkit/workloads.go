package benchkit

import (
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed351623e9/presence"
)

// T0 is the benchmarks' wall clock; TTL their heartbeat budget.
var T0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TTL is the heartbeat budget of every read in the benchmarks.
const TTL = 30 * time.Second

func check(b *testing.B, err error) {
	if err != nil {
		b.Fatal(err)
	}
}

// RefreshKey heartbeats n registered consumers of the given shape by key,
// round-robin, from one goroutine or from GOMAXPROCS goroutines.
func RefreshKey(b *testing.B, impl Impl, shape Shape, n int, parallel bool) {
	keys := shape.Keys(0, n)
	r := impl.New(keys, T0)
	settle(b)
	if !parallel {
		now, j := T0, 0
		for i := 0; i < b.N; i++ {
			now = now.Add(1)
			check(b, r.Heartbeat(keys[j], 1, now))
			if j++; j == n {
				j = 0
			}
		}
		return
	}
	refreshParallel(b, n, func(j int, now time.Time) error { return r.Heartbeat(keys[j], 1, now) })
}

// RefreshHandle heartbeats n registered consumers through handles made up
// front, from GOMAXPROCS goroutines.
func RefreshHandle(b *testing.B, impl Impl, n int) {
	keys := Keys(n)
	r := impl.New(keys, T0)
	hs := make([]Beater, n)
	for i, k := range keys {
		hs[i] = impl.Handle(r, k)
	}
	settle(b)
	refreshParallel(b, n, func(j int, now time.Time) error { return hs[j].Heartbeat(1, now) })
}

// Register registers b.N new consumers of the given shape into a registry
// presized for them, so that map growth stays out of the figure.
func Register(b *testing.B, impl Impl, shape Shape) {
	keys := shape.Keys(0, b.N)
	r := impl.Empty(b.N)
	settle(b)
	for i := range keys {
		check(b, r.Heartbeat(keys[i], 0, T0))
	}
}

// RefreshDuringSnapshots is RefreshKey, parallel, over n consumers while
// one more goroutine takes snapshots back to back, or, with snapshots
// false, while it sits idle: the pair measures how much of its refresh
// throughput an implementation keeps while dashboards read it.
func RefreshDuringSnapshots(b *testing.B, impl Impl, n int, snapshots bool) {
	keys := Keys(n)
	r := impl.New(keys, T0)
	stop := func() int64 { return 0 }
	if snapshots {
		stop = whileBusy(func() { r.Snapshot(T0, TTL) })
	}
	settle(b)
	refreshParallel(b, n, func(j int, now time.Time) error { return r.Heartbeat(keys[j], 1, now) })
	b.StopTimer()
	if taken := stop(); snapshots {
		b.ReportMetric(float64(taken), "snapshots")
	}
}

// population returns a registry of n consumers of the Grouped shape: a
// tenth expired, a tenth stale and the rest active at T0, and the expired
// keys.
func population(impl Impl, n int) (Registry, []presence.Key) {
	return populationOf(impl, Grouped, n)
}

// populationOf is population with keys of the given shape.
func populationOf(impl Impl, shape Shape, n int) (Registry, []presence.Key) {
	keys := shape.Keys(0, n)
	tenth := n / 10
	r := impl.New(keys[2*tenth:], T0)
	for _, k := range keys[tenth : 2*tenth] {
		_ = r.Heartbeat(k, 0, T0.Add(-3*TTL/2))
	}
	for _, k := range keys[:tenth] {
		_ = r.Heartbeat(k, 0, T0.Add(-3*TTL))
	}
	return r, keys[:tenth]
}

// Snapshot takes full snapshots of n consumers.
func Snapshot(b *testing.B, impl Impl, n int) {
	r, _ := population(impl, n)
	settle(b)
	defer onCPU(b)()
	for i := 0; i < b.N; i++ {
		if got := len(r.Snapshot(T0, TTL)); got != n {
			b.Fatalf("snapshot has %d rows, want %d", got, n)
		}
	}
}

// CountActiveByGroup counts the active consumers of every group among n.
func CountActiveByGroup(b *testing.B, impl Impl, n int) {
	r, _ := population(impl, n)
	settle(b)
	for i := 0; i < b.N; i++ {
		r.CountActiveByGroup(T0, TTL)
	}
}

// PruneExpired prunes n consumers of which a tenth are expired; the expired
// ones are put back, with the timer stopped, before every prune.
func PruneExpired(b *testing.B, impl Impl, n int) {
	r, expired := population(impl, n)
	settle(b)
	for i := 0; i < b.N; i++ {
		if i > 0 {
			b.StopTimer()
			for _, k := range expired {
				_ = r.Heartbeat(k, 0, T0.Add(-3*TTL))
			}
			b.StartTimer()
		}
		if got := r.PruneExpired(T0, TTL); got != len(expired) {
			b.Fatalf("pruned %d, want %d", got, len(expired))
		}
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Memory registers n consumers of the given shape into an empty registry
// and reports the live heap it grew by, per consumer, the registry's own
// copies of the key strings included (bytes/consumer); the key bytes alone
// are reported as keybytes/consumer. ns/op is the time to register all n.
func Memory(b *testing.B, impl Impl, n int, shape Shape) {
	keys := shape.Keys(0, n)
	kb := KeyBytes(keys)
	var perConsumer float64
	settle(b)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		before := heapInUse()
		b.StartTimer()
		r := impl.Empty(0)
		for _, k := range keys {
			check(b, r.Heartbeat(k, 0, T0))
		}
		b.StopTimer()
		after := heapInUse()
		perConsumer = (float64(after) - float64(before)) / float64(n)
		runtime.KeepAlive(r)
		b.StartTimer()
	}
	b.ReportMetric(perConsumer, "bytes/consumer")
	b.ReportMetric(float64(kb)/float64(n), "keybytes/consumer")
}

// PruneNone prunes n consumers of the given shape of which none is
// expired: the cost of a sweep that finds nothing to do, a walk over every
// consumer's heartbeat.
func PruneNone(b *testing.B, impl Impl, n int, shape Shape) {
	r := impl.New(shape.Keys(0, n), T0)
	settle(b)
	defer onCPU(b)()
	for i := 0; i < b.N; i++ {
		if got := r.PruneExpired(T0, TTL); got != 0 {
			b.Fatalf("pruned %d, want 0", got)
		}
	}
}

// Statser is implemented by registries that count consumers by state.
type Statser interface {
	Stats(now time.Time, ttl time.Duration) presence.Counts
}

// Stats counts n consumers of the given shape by state.
func Stats(b *testing.B, impl Impl, n int, shape Shape) {
	r, _ := populationOf(impl, shape, n)
	st, ok := r.(Statser)
	if !ok {
		b.Skipf("%s has no Stats", impl.Name)
	}
	settle(b)
	defer onCPU(b)()
	for i := 0; i < b.N; i++ {
		if got := st.Stats(T0, TTL).Total(); got != n {
			b.Fatalf("stats count %d, want %d", got, n)
		}
	}
}

// GroupViewer is implemented by registries with a per-group snapshot.
type GroupViewer interface {
	SnapshotGroup(g presence.GroupKey, now time.Time, ttl time.Duration) []presence.Consumer
}

// SnapshotGroup snapshots one 100-consumer group among n consumers.
func SnapshotGroup(b *testing.B, impl Impl, n int) {
	r, _ := population(impl, n)
	gv, ok := r.(GroupViewer)
	if !ok {
		b.Skipf("%s has no SnapshotGroup", impl.Name)
	}
	k := Keys(n)[n/2]
	g := presence.GroupKey{Queue: k.Queue, Group: k.Group}
	settle(b)
	for i := 0; i < b.N; i++ {
		if got := len(gv.SnapshotGroup(g, T0, TTL)); got != 100 {
			b.Fatalf("group has %d rows, want 100", got)
		}
	}
}

// onCPU measures a single-goroutine timed loop's CPU time as well as its
// wall time: it pins the goroutine to its thread, and the returned done
// reports the thread's CPU time per operation as cpu-ns/op. On a shared
// machine a thread waits for a core for much of its wall time; its CPU time
// is what the work itself cost. Off Linux done reports nothing.
func onCPU(b *testing.B) (done func()) {
	runtime.LockOSThread()
	c0, ok := threadCPU()
	return func() {
		c1, ok1 := threadCPU()
		runtime.UnlockOSThread()
		if ok && ok1 && b.N > 0 {
			b.ReportMetric(float64(c1-c0)/float64(b.N), "cpu-ns/op")
		}
	}
}

// settle ends a workload's setup: it collects the setup's garbage, so that a
// GC cycle it started does not run into the timed loop, then resets the
// timer and turns on allocation reporting.
func settle(b *testing.B) {
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
}

// Checkpoint writes a checkpoint of n consumers to io.Discard and reports
// its throughput in MB/s and consumers/s.
func Checkpoint(b *testing.B, impl Impl, n int) {
	r := impl.New(Keys(n), T0)
	wt, ok := r.(io.WriterTo)
	if !ok {
		b.Skipf("%s has no WriteTo", impl.Name)
	}
	var size int64
	settle(b)
	done := onCPU(b)
	for i := 0; i < b.N; i++ {
		var err error
		size, err = wt.WriteTo(io.Discard)
		check(b, err)
	}
	done()
	secs := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(size)/1e6/secs, "MB/s")
	b.ReportMetric(float64(n)/secs, "consumers/s")
}

// RefreshDuringCheckpoints is RefreshDuringSnapshots with checkpoints to
// io.Discard, back to back, instead of snapshots.
func RefreshDuringCheckpoints(b *testing.B, n int) {
	keys := Keys(n)
	r := presence.New()
	for _, k := range keys {
		check(b, r.Heartbeat(k, 1, T0))
	}
	stop := whileBusy(func() { _, _ = r.WriteTo(io.Discard) })
	settle(b)
	refreshParallel(b, n, func(j int, now time.Time) error { return r.Heartbeat(keys[j], 1, now) })
	b.StopTimer()
	stop()
}

// refreshParallel runs beat from GOMAXPROCS goroutines over n consumers,
// each goroutine walking its own share of them round-robin with its own
// clock, and fails the benchmark on the first error.
//
// The shares do not overlap. When they did (every goroutine walking all n
// from its own start), a goroutine whose clock had fallen behind another's
// found its beats older than the ones stored, and Refresh returns early on
// stale news without writing anything: that goroutine then ran several
// times faster, and the figure flipped between two modes from run to run.
// Own consumers, own clock: every beat is news and does the full write.
func refreshParallel(b *testing.B, n int, beat func(j int, now time.Time) error) {
	procs := runtime.GOMAXPROCS(0)
	var id atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		g := int(id.Add(1)-1) % procs
		lo, hi := g*n/procs, (g+1)*n/procs
		if hi == lo { // fewer consumers than goroutines: share them all
			lo, hi = 0, n
		}
		j, now := lo, T0
		for pb.Next() {
			now = now.Add(1)
			if err := beat(j, now); err != nil {
				b.Error(err)
				return
			}
			if j++; j == hi {
				j = lo
			}
		}
	})
}

// whileBusy runs busy back to back in another goroutine until the returned
// stop is called, and returns how many times it ran.
func whileBusy(busy func()) (stop func() int64) {
	done := make(chan struct{})
	var runs atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			busy()
			runs.Add(1)
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		return runs.Load()
	}
}
