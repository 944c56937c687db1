package presence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// The mirror protocol: what every backend that copies a registry elsewhere
// (presenceredis, or a NATS KV or Postgres one) shares. A backend implements
// [Backend]; [Mirror] collects the changes and deletes, batches them by part,
// re-marks what a failed part did not take, and resends a part that lost its
// data. Timing (intervals, backoff, periodic resync) stays with the caller,
// which calls [Mirror.Flush] when it wants and [Registry.MarkAllChanged] to
// resync.

// ErrBadBackend is wrapped by the error of a part whose [Backend.Write]
// returned fewer results than it was given batches.
var ErrBadBackend = errors.New("presence: mirror: backend returned too few results")

// Batch is one part's share of one round of a flush: the consumers
// deregistered and the consumers changed, in the order collected. A backend
// should apply Deletes before Writes, so that a consumer that left and came
// back ends up written.
type Batch struct {
	Part    int
	Deletes []Key
	Writes  []Consumer // rows as [Registry.CollectChanged] passes them
}

// BatchResult is a backend's outcome for one [Batch].
type BatchResult struct {
	// Err, if not nil, means the part took none of the batch: its writes
	// are marked changed again and its deletes recorded again, and the
	// part is skipped for the rest of the flush.
	Err error
	// Written is the number of consumers the store reports written.
	Written int
	// Lost reports that the part was found to have lost data: every
	// consumer of the part is resent at the next flush.
	Lost bool
}

// Backend is a store that a [Mirror] copies a registry into. The store is
// split into parts (buckets, shards, slots, or a single part 0), each of
// which can fail or lose its data on its own; all consumers of one group
// live in one part.
//
// A Mirror calls Check and Write from one flush at a time, but Write may
// run on another goroutine while the next batch is collected, so PartOf
// must be safe to call concurrently with Write.
type Backend interface {
	// PartOf returns the part that holds the consumers of group.
	PartOf(group GroupKey) int
	// Check, called at the start of each flush, returns the parts that
	// lost data since this backend last wrote them, and the parts it
	// could not check, with their errors.
	Check(ctx context.Context) (lost []int, failed map[int]error)
	// Write stores batches, each of a different part, and returns one
	// result per batch, in order.
	Write(ctx context.Context, batches []Batch) []BatchResult
	// Each calls fn with every consumer stored, and returns an error for
	// what it could not read; see [Mirror.Restore].
	Each(ctx context.Context, fn func(Consumer)) error
}

// MirrorOptions configure a [Mirror]. The zero value is usable.
type MirrorOptions struct {
	// Batch bounds the consumers and deletes one round of Write carries,
	// over all parts; default 10000.
	Batch int
}

// Mirror runs the mirror protocol of a registry into a [Backend]. Its
// methods are safe for concurrent use; flushes run one at a time. A
// registry should have one Mirror, since mirrors share its change marks.
type Mirror struct {
	reg   *Registry
	b     Backend
	batch int
	mu    sync.Mutex // serialises flushes
}

// NewMirror returns a Mirror of r into b. From then on r records every
// deregistration for the mirror to delete (see [Registry.CollectDeleted]).
func NewMirror(r *Registry, b Backend, opt MirrorOptions) *Mirror {
	if opt.Batch <= 0 {
		opt.Batch = 10000
	}
	r.CollectDeleted(func(Key) {}) // starts the recording
	return &Mirror{reg: r, b: b, batch: opt.Batch}
}

// FlushResult describes one [Mirror.Flush].
type FlushResult struct {
	Written int           // consumers written, as the backend reported
	Deleted int           // deletes the backend took
	Batches int           // batches the backend took (one per part and round)
	Rounds  int           // calls of Backend.Write
	Lost    int           // parts found to have lost data: their consumers are resent
	Failed  map[int]error // parts that failed, with their first error; nil if none
	Took    time.Duration // wall time
}

// Err returns nil if no part failed, else an error naming how many did and
// wrapping the first error of the lowest one.
func (r FlushResult) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	ps := make([]int, 0, len(r.Failed))
	for p := range r.Failed {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return fmt.Errorf("presence: mirror: %d parts failed, first %d: %w", len(ps), ps[0], r.Failed[ps[0]])
}

// Flush sends the deletes recorded and the consumers changed since the last
// flush. It first asks the backend which parts lost data, and marks their
// consumers changed so that this flush resends them. Deletes go first, all
// of them. A part that fails is skipped for the rest of the flush while the
// others are written: what it did not take stays marked or recorded for a
// later flush, so nothing is dropped while the store, or part of it, is
// away. One round of Write is in flight while the next is collected.
func (m *Mirror) Flush(ctx context.Context) FlushResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := time.Now()
	f := &flushRun{m: m, ctx: ctx, pending: map[int]*Batch{}}
	lost, failed := m.b.Check(ctx)
	for p, err := range failed {
		f.fail(p, err)
	}
	f.res.Lost += len(lost)
	m.resend(lost)
	f.addDeletes()
	m.reg.CollectChanged(f.add)
	f.send()
	f.wait()
	m.resend(f.lost) // found while writing: resent at the next flush
	f.res.Took = time.Since(start)
	return f.res
}

// Restore merges every consumer the backend holds into the registry with
// [Registry.MergeAt] at now, typically at startup, and returns how many it
// merged. A row stamped further ahead of now than the registry's clock step
// is not merged: the error then wraps [ErrFutureTime].
func (m *Mirror) Restore(ctx context.Context, now time.Time) (int, error) {
	n := 0
	var mergeErr error
	err := m.b.Each(ctx, func(c Consumer) {
		if err := m.reg.MergeAt(c, now); err != nil {
			mergeErr = errors.Join(mergeErr, err)
			return
		}
		n++
	})
	return n, errors.Join(err, mergeErr)
}

// resend marks changed every consumer whose group lives in one of parts.
// It walks the groups, and the members of the groups it wants only.
func (m *Mirror) resend(parts []int) {
	if len(parts) == 0 {
		return
	}
	for gk := range m.reg.CountByGroup(time.Time{}, 0) {
		if !slices.Contains(parts, m.b.PartOf(gk)) {
			continue
		}
		for _, c := range m.reg.SnapshotGroup(gk, time.Time{}, 0) {
			m.reg.MarkChanged(c.Key)
		}
	}
}

// flushRun is the state of one Flush.
type flushRun struct {
	m    *Mirror
	ctx  context.Context
	res  FlushResult
	lost []int // parts whose writes reported a loss

	pending map[int]*Batch // the round being collected, by part
	order   []int          // its parts, in the order first seen
	count   int            // consumers and deletes in it

	inFlight func() // waits for the round in flight and settles it
	last     struct {
		gk   GroupKey
		part int
		ok   bool
	}
}

// batchFor returns the pending batch of k's part, or nil if that part
// failed in this flush. Rows come a group at a time, so the part of the
// last group is reused.
func (f *flushRun) batchFor(k Key) *Batch {
	if gk := (GroupKey{Queue: k.Queue, Group: k.Group}); !f.last.ok || f.last.gk != gk {
		f.last.gk, f.last.part, f.last.ok = gk, f.m.b.PartOf(gk), true
	}
	p := f.last.part
	if f.res.Failed[p] != nil {
		return nil
	}
	b := f.pending[p]
	if b == nil {
		b = &Batch{Part: p}
		f.pending[p] = b
		f.order = append(f.order, p)
	}
	return b
}

// addDeletes queues every delete recorded since the last flush, before the
// changes, so that a consumer that left and came back is deleted first.
func (f *flushRun) addDeletes() {
	var ks []Key
	f.m.reg.CollectDeleted(func(k Key) { ks = append(ks, k) })
	for _, k := range ks {
		b := f.batchFor(k)
		if b == nil { // its part is away: keep it for later
			f.m.reg.MarkDeleted(k)
			continue
		}
		b.Deletes = append(b.Deletes, k)
		f.grew()
	}
}

// add queues one changed consumer.
func (f *flushRun) add(c Consumer) {
	b := f.batchFor(c.Key)
	if b == nil { // its part is away: keep it marked for later
		f.m.reg.MarkChanged(c.Key)
		return
	}
	b.Writes = append(b.Writes, c)
	f.grew()
}

// grew counts one more item in the round, and sends the round when full.
func (f *flushRun) grew() {
	if f.count++; f.count >= f.m.batch {
		f.send()
	}
}

// send starts the pending round on another goroutine, after settling the
// round in flight.
func (f *flushRun) send() {
	if len(f.order) == 0 {
		return
	}
	batches := make([]Batch, len(f.order))
	for i, p := range f.order {
		batches[i] = *f.pending[p]
	}
	clear(f.pending)
	f.order, f.count = f.order[:0], 0
	f.wait()
	// A part that failed in the round just settled takes no more: its
	// share of this round is marked again without being sent.
	batches = slices.DeleteFunc(batches, func(b Batch) bool {
		if err := f.res.Failed[b.Part]; err != nil {
			f.settle(&b, BatchResult{Err: err})
			return true
		}
		return false
	})
	if len(batches) == 0 {
		return
	}
	done := make(chan []BatchResult, 1)
	go func() { done <- f.m.b.Write(f.ctx, batches) }()
	f.inFlight = func() {
		rs := <-done
		for i := range batches {
			r := BatchResult{Err: ErrBadBackend}
			if i < len(rs) {
				r = rs[i]
			}
			f.settle(&batches[i], r)
		}
	}
	f.res.Rounds++
}

// wait settles the round in flight, if any.
func (f *flushRun) wait() {
	if settle := f.inFlight; settle != nil {
		f.inFlight = nil
		settle()
	}
}

// fail records that part p failed, keeping its first error.
func (f *flushRun) fail(p int, err error) {
	if f.res.Failed == nil {
		f.res.Failed = map[int]error{}
	}
	if f.res.Failed[p] == nil {
		f.res.Failed[p] = err
	}
}

// settle records the outcome of one batch: a failed one is marked and
// recorded again, whole.
func (f *flushRun) settle(b *Batch, r BatchResult) {
	if r.Err != nil {
		f.fail(b.Part, r.Err)
		for _, c := range b.Writes {
			f.m.reg.MarkChanged(c.Key)
		}
		for _, k := range b.Deletes {
			f.m.reg.MarkDeleted(k)
		}
		return
	}
	if r.Lost {
		f.lost = append(f.lost, b.Part)
		f.res.Lost++
	}
	f.res.Written += r.Written
	f.res.Deleted += len(b.Deletes)
	f.res.Batches++
}
