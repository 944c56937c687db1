package presence

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed351623e9/presence/internal/entry"
	"github.com/seed351623e9/presence/internal/nanotime"
)

// Support for mirrors: packages such as presenceredis that copy the registry
// elsewhere, sending only what changed.

// CollectChanged calls fn with the row of every consumer that changed since
// the last CollectChanged (every consumer, the first time), and clears their
// change marks. Rows carry the stored times and leases; Age and State are
// not set. It returns the number of rows.
//
// Rows come in no particular order: CollectChanged reads the registry's
// walk lists (walklist.go), holding a list's lock only while it copies the
// list's header, and passes a consumer at most once.
//
// A change that lands while CollectChanged runs is either in the row it
// passes or marks the consumer again for the next call: nothing is missed.
// If fn cannot deliver a row, call MarkChanged so that the next call
// passes it again. CollectChanged costs O(n).
func (r *Registry) CollectChanged(fn func(Consumer)) int {
	n := 0
	r.walk(func(ms []*entry.Entry) bool {
		for _, e := range ms {
			if e.Flags()&entry.FlagDirty == 0 || !e.SetFlag(entry.FlagDirty, false) {
				continue
			}
			// Cleared before reading: a refresh writes its values, then
			// marks; so either we read its values or it marks again.
			if c, ok := row(entryKey(e), e, 0, 0); ok {
				c.Age, c.State = 0, Active
				fn(c)
				n++
			}
		}
		return true
	})
	return n
}

// MarkChanged marks consumer k changed, so that the next CollectChanged
// passes it. It reports whether k is registered.
func (r *Registry) MarkChanged(k Key) bool {
	sl, ok := r.lookup(&k)
	if ok && sl.e.Live() {
		sl.e.SetFlag(entry.FlagDirty, true)
		return true
	}
	// A registration in progress has put its entry in its group and its
	// walk list, where CollectChanged may have passed it and cleared its
	// mark, but not yet in its shard, where lookup looks. Its compute holds the key's bucket
	// lock until the entry is in the shard, so a compute on the key finds
	// it there, or finds the key absent for good.
	found := false
	sl.s.compute(&mkey{h: sl.h, k: k}, func(cur *entry.Entry, loaded bool) (*entry.Entry, bool) {
		if loaded && cur.Live() {
			cur.SetFlag(entry.FlagDirty, true)
			found = true
		}
		return cur, !loaded // an absent key stays absent
	})
	return found
}

// MarkAllChanged marks every consumer changed: the next CollectChanged
// passes them all. A mirror calls it when its copy may have been lost.
func (r *Registry) MarkAllChanged() {
	r.walk(func(ms []*entry.Entry) bool {
		for _, e := range ms {
			e.SetFlag(entry.FlagDirty, true)
		}
		return true
	})
}

// Merge folds a row from elsewhere (another broker, a mirror) into the
// registry, as ReadFrom does for each checkpoint row: the later
// LastHeartbeat (with its Leases) and LastActive and the earlier
// RegisteredAt win, and an absent consumer is registered with the row's
// times. The row's TTL (clamped to WithTTLBounds; 0 declares nothing)
// travels with its LastHeartbeat: it becomes the consumer's declared TTL
// unless the consumer's own heartbeat is newer. Age and State are ignored.
// Limits apply. A row whose times are out
// of order (RegisteredAt or LastActive after LastHeartbeat) is refused with
// ErrBadCheckpoint, one with a zero RegisteredAt or LastHeartbeat with
// ErrZeroTime.
//
// Merge has no clock, so it cannot tell a row stamped by a clock that was
// ahead; MergeAt can.
func (r *Registry) Merge(c Consumer) error {
	return r.mergeAt(c, nanotime.Max)
}

// MergeAt is Merge for a reader whose clock reads now: a row whose
// LastHeartbeat is more than the clock step (WithMaxClockStep) after now
// is refused with an error wrapping ErrFutureTime, and counted in
// Counters.ClockSteps, instead of being imported. A zero now is refused
// with ErrZeroTime.
func (r *Registry) MergeAt(c Consumer, now time.Time) error {
	if now.IsZero() {
		return ErrZeroTime
	}
	return r.mergeAt(c, nanotime.FromTime(now))
}

func (r *Registry) mergeAt(c Consumer, now int64) error {
	if c.LastHeartbeat.IsZero() || c.RegisteredAt.IsZero() {
		return ErrZeroTime
	}
	rec := record{
		k:          c.Key,
		registered: nanotime.FromTime(c.RegisteredAt),
		hb:         nanotime.FromTime(c.LastHeartbeat),
		active:     nanotime.None,
		ttl:        int64(c.TTL),
		leases:     c.Leases,
	}
	if !c.LastActive.IsZero() {
		rec.active = nanotime.FromTime(c.LastActive)
	}
	if err := rec.validate(); err != nil {
		return err
	}
	return r.restore(rec, now)
}

// deletionParts is the number of independently locked parts of a
// registry's deletion records, picked by the low bits of a key's hash.
const deletionParts = 64

// deletions records, for a mirror, the consumers deregistered since it last
// collected them, so that it deletes each of them elsewhere whatever their
// number: unlike events, nothing is dropped. A record is made by
// Deregister once it has retired the entry, and holds the entry's own key
// strings; there is at most one per key, so the records never outnumber
// the distinct consumers deregistered since the last collection.
type deletions struct {
	on    atomic.Bool  // set by the first CollectDeleted
	n     atomic.Int64 // records held
	parts [deletionParts]deletionPart
}

type deletionPart struct {
	mu sync.Mutex
	m  map[Key]struct{}
}

// record notes that k, whose hash is h, was deregistered.
func (d *deletions) record(h uint64, k Key) {
	if !d.on.Load() {
		return
	}
	p := &d.parts[h%deletionParts]
	p.mu.Lock()
	if _, ok := p.m[k]; !ok {
		if p.m == nil {
			p.m = map[Key]struct{}{}
		}
		p.m[k] = struct{}{}
		d.n.Add(1)
	}
	p.mu.Unlock()
}

// CollectDeleted calls fn with the key of every consumer deregistered since
// the last CollectDeleted, and forgets them. It returns the number of keys.
//
// A consumer that registered again since is passed too, and marked changed
// (see MarkChanged): a mirror that deletes what CollectDeleted passes, then
// writes what the next CollectChanged passes, ends with the consumer's new
// registration rather than a merge of the old one and the new.
//
// The first call starts the recording: a registry that no mirror collects
// keeps no records. From then on every Deregister is recorded, however many
// there are between two calls, at most once per key. If fn cannot deliver a
// key, call MarkDeleted so that the next call passes it again.
//
// fn runs under the lock of a part of the records: it must not call
// Deregister or MarkDeleted, and should not block.
func (r *Registry) CollectDeleted(fn func(Key)) int {
	r.mustBeMade()
	d := &r.dels
	d.on.Store(true)
	n := 0
	for i := range d.parts {
		p := &d.parts[i]
		p.mu.Lock()
		for k := range p.m {
			delete(p.m, k)
			d.n.Add(-1)
			r.MarkChanged(k) // if it came back, write it after the delete
			fn(k)
			n++
		}
		p.mu.Unlock()
	}
	return n
}

// MarkDeleted records k as deregistered again: a mirror calls it for a key
// from CollectDeleted that it could not delete. If k is registered again
// meanwhile, the next CollectDeleted passes it and marks it changed, so the
// mirror deletes it and writes its new row.
func (r *Registry) MarkDeleted(k Key) {
	r.mustBeMade()
	r.dels.record(r.hash(&k), k)
}

// At returns c with Age and State computed for now and ttl, as the
// registry's own reads compute them: Age is now minus LastHeartbeat, never
// negative and saturating at the largest Duration, and State classifies it
// (see Classify), under c.TTL if the consumer declared one, else under ttl.
// A mirror calls it on rows it reads back from elsewhere.
func (c Consumer) At(now time.Time, ttl time.Duration) Consumer {
	c.Age, c.State = classifyAt(nanotime.FromTime(now), nanotime.FromTime(c.LastHeartbeat), judge(c.TTL, ttl))
	return c
}
