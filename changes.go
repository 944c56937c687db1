package presence

import (
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
// A change that lands while CollectChanged runs is either in the row it
// passes or marks the consumer again for the next call: nothing is missed.
// If fn cannot deliver a row, call MarkChanged so that the next call
// passes it again. CollectChanged walks the shards like Snapshot, in O(n).
func (r *Registry) CollectChanged(fn func(Consumer)) int {
	n := 0
	r.walk(func(_ *shard, mk mkey, e *entry.Entry) bool {
		if e.Flags()&entry.FlagDirty == 0 || !e.SetFlag(entry.FlagDirty, false) {
			return true
		}
		// Cleared before reading: a refresh writes its values, then
		// marks; so either we read its values or it marks again.
		if c, ok := row(mk.k, e, 0, 0); ok {
			c.Age, c.State = 0, Active
			fn(c)
			n++
		}
		return true
	})
	return n
}

// MarkChanged marks consumer k changed, so that the next CollectChanged
// passes it. It reports whether k is registered.
func (r *Registry) MarkChanged(k Key) bool {
	sl, ok := r.lookup(&k)
	if ok {
		sl.e.SetFlag(entry.FlagDirty, true)
	}
	return ok
}

// MarkAllChanged marks every consumer changed: the next CollectChanged
// passes them all. A mirror calls it when its copy may have been lost.
func (r *Registry) MarkAllChanged() {
	r.walk(func(_ *shard, _ mkey, e *entry.Entry) bool {
		e.SetFlag(entry.FlagDirty, true)
		return true
	})
}

// Merge folds a row from elsewhere (another broker, a mirror) into the
// registry, as ReadFrom does for each checkpoint row: the later
// LastHeartbeat (with its Leases) and LastActive and the earlier
// RegisteredAt win, and an absent consumer is registered with the row's
// times. Age and State are ignored. Limits apply. A row whose times are out
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
