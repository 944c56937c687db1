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
// re-marks what a failed part did not take, resends a part that lost its
// data, and ([Mirror.Run]) times the flushes: the interval, the backoff
// after failures and the periodic resync.

// ErrBadBackend is wrapped by the error of a part whose [Backend.Write]
// returned fewer results than it was given batches.
var ErrBadBackend = errors.New("presence: mirror: backend returned too few results")

// Batch is one part's share of one round of a flush: the consumers
// deregistered and the consumers changed, in the order collected. A backend
// should apply Deletes before Writes, so that a consumer that left and came
// back ends up written.
type Batch struct {
	Part    int // the part that takes the batch, from [Backend.PartOf]
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

// PartCheck is a backend's finding on one part at the start of a flush
// (see [Backend.Check]).
type PartCheck struct {
	Part int // the part checked
	// Lost reports that the part lost data since the backend last wrote
	// it: every consumer of the part is resent in this flush.
	Lost bool
	// Err, if not nil, means the part could not be checked: it takes
	// nothing in this flush, and what it would have taken stays marked.
	Err error
}

// Backend is a store that a [Mirror] copies a registry into. The store is
// split into parts (buckets, shards, slots, or a single part 0), each of
// which can fail or lose its data on its own; all consumers of one group
// live in one part. A backend supplies the storage calls only: what to
// send, when, and what to do about a failure or a loss is the Mirror's.
//
// A Mirror calls Check and Write from one flush at a time, so state they
// share needs no lock of its own; but Write may run on another goroutine
// while the next batch is collected, so PartOf must be safe to call
// concurrently with Write. A backend that can tell a reply of its store
// from a failure to reach it also implements [Replier]. ExampleMirror
// shows a whole backend.
type Backend interface {
	// PartOf returns the part that holds the consumers of group.
	PartOf(group GroupKey) int
	// Check, called at the start of each flush, returns its finding on
	// each part it checked: those that lost data since this backend last
	// wrote them, and those it could not check. A backend that cannot
	// tell a loss returns nil, and relies on the periodic resync of
	// [RunOptions.ResyncEvery].
	Check(ctx context.Context) []PartCheck
	// Write stores batches, each of a different part, and returns one
	// result per batch, in order. It must not keep the batches' slices
	// once it returns: the Mirror reuses them for the next rounds.
	Write(ctx context.Context, batches []Batch) []BatchResult
	// Each calls fn with every consumer stored, and returns an error for
	// what it could not read; see [Mirror.Restore].
	Each(ctx context.Context, fn func(Consumer)) error
}

// Replier is an optional interface of a [Backend] that can tell, of an
// error its Check or Write returned, whether the store replied with it: it
// is up but refused, as a Redis Cluster answers CLUSTERDOWN while a replica
// takes over, rather than out of reach. [Mirror.Run] retries soon after a
// failed flush that the store replied to, and backs off only when it did
// not reply at all (see [FlushResult.Answered]).
type Replier interface {
	Replied(err error) bool
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
	// Reached reports that some part was checked or took a batch.
	Reached bool
	// Answered reports that the store answered: Reached, or some error
	// was one the store replied with (see [Replier]).
	Answered bool
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
	var lost []int
	for _, c := range m.b.Check(ctx) {
		switch {
		case c.Err != nil:
			f.fail(c.Part, c.Err)
		case c.Lost:
			lost = append(lost, c.Part)
			f.res.Reached = true
		default:
			f.res.Reached = true
		}
	}
	f.res.Lost += len(lost)
	m.resend(lost)
	f.addDeletes()
	m.reg.CollectChanged(f.add)
	f.send()
	f.wait()
	m.resend(f.lost) // found while writing: resent at the next flush
	f.res.Answered = f.res.Answered || f.res.Reached
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

// RunOptions configure [Mirror.Run]. The zero value is usable.
type RunOptions struct {
	// Interval is the time between flushes; default 1s.
	Interval time.Duration
	// MaxBackoff caps the wait after flushes that failed with no answer
	// from the store (see [FlushResult.Answered]); default 5s, so that a
	// mirror is back within 5s of its store.
	MaxBackoff time.Duration
	// Retry is the wait after a flush that failed although the store
	// answered: a part is down while the others work, or the store is
	// failing over. Default min(Interval, 250ms): the working parts keep
	// being written, and the end of a failover is seen soon.
	Retry time.Duration
	// ResyncEvery makes Run mark every consumer changed on this period
	// ([Registry.MarkAllChanged]), so that writes the store acknowledged
	// and then lost unnoticed are repaired; default 5m, negative disables.
	ResyncEvery time.Duration
	// FinalTimeout bounds the flush that Run makes once its context is
	// done; default 5s.
	FinalTimeout time.Duration
	// OnFlush, if set, is called after each flush of Run with its result
	// and the wait before the next flush; after the final flush, with a
	// wait of 0. It runs on Run's goroutine: a slow OnFlush delays the
	// next flush.
	OnFlush func(r FlushResult, next time.Duration)
}

// withDefaults returns o with its zero fields set to their defaults.
func (o RunOptions) withDefaults() RunOptions {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = min(o.Interval, 250*time.Millisecond)
	}
	if o.ResyncEvery == 0 {
		o.ResyncEvery = 5 * time.Minute
	}
	if o.FinalTimeout <= 0 {
		o.FinalTimeout = 5 * time.Second
	}
	return o
}

// next returns the wait after a flush that gave r, when the wait before it
// was prev: the interval after success, Retry after a failure that the
// store answered, and otherwise exponential backoff from the interval up
// to MaxBackoff. o has its defaults.
func (o RunOptions) next(prev time.Duration, r FlushResult) time.Duration {
	switch {
	case len(r.Failed) == 0:
		return o.Interval
	case r.Answered:
		return o.Retry
	}
	return min(max(2*prev, o.Interval), o.MaxBackoff)
}

// Run flushes (see [Mirror.Flush]) every opt.Interval until ctx is done,
// then flushes once more, within opt.FinalTimeout, and returns ctx's error
// joined with that last flush's ([FlushResult.Err]). After a failed flush
// the next one comes sooner or later as [RunOptions] says, and every
// opt.ResyncEvery it marks every consumer changed first. Only one Run
// should be active on a Mirror at a time.
func (m *Mirror) Run(ctx context.Context, opt RunOptions) error {
	opt = opt.withDefaults()
	report := func(r FlushResult, next time.Duration) {
		if opt.OnFlush != nil {
			opt.OnFlush(r, next)
		}
	}
	wait := opt.Interval
	lastResync := time.Now()
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opt.FinalTimeout)
			r := m.Flush(fctx)
			cancel()
			report(r, 0)
			return errors.Join(ctx.Err(), r.Err())
		case <-t.C:
		}
		if opt.ResyncEvery > 0 && time.Since(lastResync) >= opt.ResyncEvery {
			m.reg.MarkAllChanged()
			lastResync = time.Now()
		}
		r := m.Flush(ctx)
		wait = opt.next(wait, r)
		report(r, wait)
		t.Reset(wait)
	}
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
	free    [][]Consumer   // Writes of settled batches, for reuse

	inFlight func() // waits for the round in flight and settles it
	last     struct {
		gk   GroupKey
		part int
		ok   bool
	}
}

// batchFor returns the pending batch of k's part, or nil if that part
// failed in this flush. Consecutive rows often share a group (consumers
// registered together sit together in the walk lists), so the part of the
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
		if n := len(f.free); n > 0 {
			b.Writes, f.free = f.free[n-1], f.free[:n-1]
		}
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

// fail records that part p failed, keeping its first error, and whether
// the store replied with err.
func (f *flushRun) fail(p int, err error) {
	if rp, ok := f.m.b.(Replier); ok && !f.res.Answered && rp.Replied(err) {
		f.res.Answered = true
	}
	if f.res.Failed == nil {
		f.res.Failed = map[int]error{}
	}
	if f.res.Failed[p] == nil {
		f.res.Failed[p] = err
	}
}

// settle records the outcome of one batch: a failed one is marked and
// recorded again, whole. Its Writes slice is then free for reuse.
func (f *flushRun) settle(b *Batch, r BatchResult) {
	if r.Err != nil {
		f.fail(b.Part, r.Err)
		for _, c := range b.Writes {
			f.m.reg.MarkChanged(c.Key)
		}
		for _, k := range b.Deletes {
			f.m.reg.MarkDeleted(k)
		}
	} else {
		if r.Lost {
			f.lost = append(f.lost, b.Part)
			f.res.Lost++
		}
		f.res.Written += r.Written
		f.res.Deleted += len(b.Deletes)
		f.res.Batches++
		f.res.Reached = true
	}
	if b.Writes != nil {
		f.free = append(f.free, b.Writes[:0])
	}
}
