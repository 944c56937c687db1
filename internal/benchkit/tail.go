package benchkit

import (
	"io"
	"math"
	"math/bits"
	"testing"
	"time"

	"github.com/seed351623e9/presence"
)

// Load is the background work a tail-latency measurement runs against.
type Load string

// The loads of Tail: each runs back to back in a goroutine of its own.
const (
	LoadNone       Load = "none"       // nothing: the floor the machine itself sets
	LoadSnapshot   Load = "snapshot"   // full snapshots
	LoadPrune      Load = "prune"      // PruneExpired passes that find nothing to remove
	LoadCheckpoint Load = "checkpoint" // checkpoints to io.Discard
	LoadStorm      Load = "storm"      // StormSize new consumers register, then deregister
)

// Loads lists the loads in report order.
var Loads = []Load{LoadNone, LoadSnapshot, LoadPrune, LoadCheckpoint, LoadStorm}

// StormSize is the number of new consumers one registration storm brings.
const StormSize = 100000

// deregisterer is implemented by registries that remove consumers by key.
type deregisterer interface {
	Deregister(k presence.Key) bool
}

// loadFunc returns one unit of load l on r, or false if r cannot run it.
func loadFunc(r Registry, l Load, n int) (func(), bool) {
	switch l {
	case LoadNone:
		return func() { time.Sleep(time.Millisecond) }, true
	case LoadSnapshot:
		return func() { r.Snapshot(T0, TTL) }, true
	case LoadPrune:
		return func() { r.PruneExpired(T0.Add(time.Second), TTL) }, true
	case LoadCheckpoint:
		wt, ok := r.(io.WriterTo)
		return func() { _, _ = wt.WriteTo(io.Discard) }, ok
	case LoadStorm:
		d, ok := r.(deregisterer)
		storm := Grouped.Keys(n, StormSize)
		return func() {
			for _, k := range storm {
				_ = r.Heartbeat(k, 1, T0)
			}
			for _, k := range storm {
				d.Deregister(k)
			}
		}, ok
	}
	return nil, false
}

// TailInterval is the spacing of the heartbeats that Tail times: 50,000
// a second.
const TailInterval = 20 * time.Microsecond

// Tail measures the latency of single keyed heartbeats over n consumers
// while another goroutine runs load back to back, for d of wall time, and
// reports the 50th, 99th and 99.9th percentiles and the maximum in
// nanoseconds (p50-ns, p99-ns, p999-ns, max-ns), and how many units of
// load ran (loads).
//
// The heartbeats are scheduled every TailInterval, and each one's latency
// runs from the time it was scheduled, not from when it started: a
// heartbeat stuck behind a lock for 100 ms delays the 10,000 scheduled
// after it, and all of them count. Timing only the calls that happen
// (a closed loop) would hide exactly that (coordinated omission). The run
// ends after d of wall time whatever happened; heartbeats that were due and
// never ran count as late by d minus their due time.
func Tail(b *testing.B, impl Impl, n int, l Load, d time.Duration) {
	keys := Keys(n)
	r := impl.New(keys, T0)
	busy, ok := loadFunc(r, l, n)
	if !ok {
		b.Skipf("%s cannot run load %s", impl.Name, l)
	}
	var h histogram
	settle(b)
	for i := 0; i < b.N; i++ {
		stop := whileBusy(busy)
		start := time.Now()
		now := T0
		end := start.Add(d)
		for j := 0; ; j++ {
			due := start.Add(time.Duration(j) * TailInterval)
			if !due.Before(end) {
				break
			}
			t := time.Now()
			for ; t.Before(due); t = time.Now() {
			}
			if !t.Before(end) {
				h.add(end.Sub(due)) // due, never ran
				continue
			}
			now = now.Add(1)
			check(b, r.Heartbeat(keys[j%n], 1, now))
			h.add(time.Since(due))
		}
		b.ReportMetric(float64(stop()), "loads")
	}
	for _, q := range []struct {
		unit string
		p    float64
	}{{"p50-ns", 0.5}, {"p99-ns", 0.99}, {"p999-ns", 0.999}} {
		b.ReportMetric(h.quantile(q.p), q.unit)
	}
	b.ReportMetric(float64(h.max), "max-ns")
}

// histogram counts durations in log-linear buckets: 16 sub-buckets per
// power of two, so a quantile is exact to within 1/16 of its value.
type histogram struct {
	counts [64 * 16]uint64
	total  uint64
	max    time.Duration
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	e := bits.Len64(v) - 1 // v in [2^e, 2^(e+1))
	if e < 4 {
		return int(v) // small values have a bucket each
	}
	return e*16 + int(v>>(e-4)&15)
}

// lowerBound returns the smallest duration in bucket i.
func lowerBound(i int) float64 {
	if i < 64 {
		return float64(i)
	}
	e, m := i/16, i%16
	return float64(uint64(16+m) << (e - 4))
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.total++
	h.max = max(h.max, d)
}

// quantile returns the lower bound of the bucket that holds quantile p.
func (h *histogram) quantile(p float64) float64 {
	if h.total == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(p * float64(h.total)))
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= max(rank, 1) {
			return lowerBound(i)
		}
	}
	return float64(h.max)
}
