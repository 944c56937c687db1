package presence

import (
	"errors"
	"hash/maphash"
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/seed351623e9/presence/internal/entry"
	"github.com/seed351623e9/presence/internal/nanotime"
)

// Key names one consumer: the queue it reads, its consumer group and its own
// name. Any strings are valid, including empty ones, invalid UTF-8 and NUL
// bytes; the three fields are kept apart, so {"a\x00b", "c", ""} and
// {"a", "b\x00c", ""} are different consumers.
type Key struct {
	Queue, Group, Consumer string
}

// GroupKey names one consumer group of one queue.
type GroupKey struct {
	Queue, Group string
}

var (
	// ErrTooManyConsumers is returned by a heartbeat that would register a
	// consumer beyond the limit set by WithMaxConsumers.
	ErrTooManyConsumers = errors.New("presence: too many consumers")
	// ErrKeyTooLong is returned by a heartbeat whose key strings add up to
	// more than 4 GiB - 1 bytes.
	ErrKeyTooLong = errors.New("presence: key longer than 4 GiB")
	// ErrGroupFull is returned by a heartbeat that would register a
	// consumer in a group that already has the number of consumers set by
	// WithMaxConsumersPerGroup.
	ErrGroupFull = errors.New("presence: consumer group full")
	// ErrNilHandle is returned by Heartbeat on a nil *Handle.
	ErrNilHandle = errors.New("presence: nil handle")
	// ErrZeroTime is returned by a heartbeat whose time is the zero
	// time.Time, a caller's bug (an unset field), and by MergeAt, Merge,
	// ReadFromAt for a zero now or a row with a zero LastHeartbeat or
	// RegisteredAt. Nothing is changed.
	ErrZeroTime = errors.New("presence: zero time")
	// ErrFutureTime is wrapped by the errors of MergeAt and ReadFromAt for
	// rows whose LastHeartbeat is more than the clock step
	// (WithMaxClockStep) ahead of their now: a time the reader's clock
	// proves wrong. Such rows are not restored.
	ErrFutureTime = errors.New("presence: time ahead of the reader's clock")
)

// Registry records consumer heartbeats. All its methods are safe for
// concurrent use; a Registry must not be copied after first use.
//
// The zero Registry is not usable; create one with New.
type Registry struct {
	seed   maphash.Seed // random, per registry; see hashKey
	step   uint64       // WithMaxClockStep in nanoseconds, > 0
	shift  uint         // 64 - log2(len(shards)); a shard is picked by h >> shift
	shards []shard
	max    int64 // 0: no limit
	// total counts live entries registry-wide. It is only maintained when
	// max > 0, since only the limit needs an exact global figure.
	total       atomic.Int64
	maxPerGroup int // 0: no limit
	ix          index
	events      events
	ctr         *counters // nil unless WithCounters
	clockSteps  atomic.Int64
	dels        deletions // deregistrations kept for a mirror; see changes.go
}

// New returns an empty Registry.
func New(opts ...Option) *Registry {
	c := config{shards: defaultShards(), maxStep: DefaultMaxClockStep}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	r := &Registry{
		shards:      make([]shard, c.shards),
		shift:       uint(64 - bits.Len(uint(c.shards)-1)),
		max:         int64(c.max),
		maxPerGroup: c.maxPerGroup,
		seed:        maphash.MakeSeed(),
		step:        uint64(c.maxStep),
		ix:          newIndex(),
	}
	r.events.dropped = xsync.NewCounter()
	if c.counters {
		r.ctr = newCounters()
	}
	per := 0
	if c.presize > 0 {
		per = c.presize/c.shards + 1
	}
	for i := range r.shards {
		r.shards[i] = newShard(per)
	}
	return r
}

func (r *Registry) shardOf(h uint64) *shard {
	return &r.shards[h>>r.shift&uint64(len(r.shards)-1)]
}

// Heartbeat records that consumer k was alive at now and held leases
// leases.
//
// The first heartbeat of k registers it with RegisteredAt = LastHeartbeat =
// now. A later one with now at or after LastHeartbeat moves LastHeartbeat to
// now and sets Leases; one with now before LastHeartbeat by at most the
// clock step (WithMaxClockStep) is stale news and changes nothing; one
// before it by more than the step corrects a clock error and replaces it.
// Heartbeat returns nil in all these cases. A zero now is refused with
// ErrZeroTime.
//
// Refreshing a registered consumer takes no lock and allocates nothing.
// Registering one allocates twice and takes one xsync bucket lock; it fails
// with ErrTooManyConsumers beyond WithMaxConsumers, with ErrGroupFull beyond
// WithMaxConsumersPerGroup and with ErrKeyTooLong for keys over MaxKeyBytes.
// The registry copies k's strings and keeps no reference to them.
//
// Once Heartbeat returns nil, k is present with LastHeartbeat >= now until a
// later Deregister, a later PruneExpired that finds now itself expired, or a
// later heartbeat that corrects the clock, changes that.
func (r *Registry) Heartbeat(k Key, leases uint32, now time.Time) error {
	ns := nanotime.FromTime(now)
	if ns == nanotime.Min && now.IsZero() {
		return ErrZeroTime
	}
	sl, ok := r.lookup(&k)
	if ok {
		if o := sl.e.Beat(ns, leases, r.step); o != entry.Retired {
			r.beaten(o)
			return nil
		}
	}
	_, err := r.register(sl.s, sl.h, &k, leases, ns)
	return err
}

// beaten counts a heartbeat that found its entry live.
func (r *Registry) beaten(o entry.Outcome) {
	if o == entry.Corrected {
		r.clockSteps.Add(1)
	}
	if r.ctr != nil {
		r.ctr.heartbeats.Inc()
	}
}

// register is the slow path of a heartbeat: the consumer is absent, or its
// entry was retired. It inserts a new entry, or refreshes the live one that a
// concurrent heartbeat inserted first, and returns the live entry.
func (r *Registry) register(s *shard, h uint64, k *Key, leases uint32, now int64) (*entry.Entry, error) {
	if uint64(len(k.Queue))+uint64(len(k.Group))+uint64(len(k.Consumer)) > entry.MaxKeyBytes {
		return nil, ErrKeyTooLong
	}
	fresh, mk := newEntry(h, k, now, leases)
	return r.upsert(s, mk, fresh, now, true, func(e *entry.Entry) bool {
		o := e.Beat(now, leases, r.step)
		if o == entry.Corrected {
			r.clockSteps.Add(1)
		}
		return o != entry.Retired
	})
}

// upsert inserts fresh under mk, unless a live entry is already there, in
// which case it applies update to that one instead. update reports false if
// the entry was retired meanwhile; upsert then tries again. at is the time
// of the Joined event; beat says whether this is a heartbeat, for the
// counters.
func (r *Registry) upsert(s *shard, mk mkey, fresh *entry.Entry, at int64, beat bool, update func(*entry.Entry) bool) (*entry.Entry, error) {
	for {
		var live *entry.Entry
		var err error
		s.m.Compute(mk, func(cur *entry.Entry, loaded bool) (*entry.Entry, bool) {
			if loaded && cur.Live() {
				live = cur
				return cur, false
			}
			if loaded && cur.SetFlag(entry.FlagFreed, true) {
				// A retired predecessor whose remover has not got here
				// yet: fresh takes over its slots, so that it never
				// counts against the limits its successor is admitted
				// under, and no other registration can take them in
				// between.
				r.ix.replace(GroupKey{Queue: mk.k.Queue, Group: mk.k.Group}, cur, fresh)
				s.live.Add(1)
				return fresh, false
			}
			if err = r.admit(mk.k, fresh); err != nil {
				// Keep a retired entry for its remover to delete;
				// an absent key stays absent.
				return cur, !loaded
			}
			r.dels.forget(mk.h, mk.k)
			s.live.Add(1)
			return fresh, false
		})
		switch {
		case err != nil:
			if r.ctr != nil {
				r.ctr.rejected.Inc()
			}
			return nil, err
		case live == nil:
			if r.ctr != nil {
				r.ctr.registrations.Inc()
				if beat {
					r.ctr.heartbeats.Inc()
				}
			}
			r.events.emit(EventJoined, mk.k, at)
			return fresh, nil
		case update(live):
			if r.ctr != nil && beat {
				r.ctr.heartbeats.Inc()
			}
			return live, nil
		}
		// The live entry was retired between Compute and update: go round
		// again, this time replacing it.
	}
}

// admit checks the limits for a new entry and enters it in the group
// index. It runs under the shard's bucket lock, before the entry becomes
// visible in the shard.
func (r *Registry) admit(k Key, e *entry.Entry) error {
	if !r.reserve() {
		return ErrTooManyConsumers
	}
	if err := r.ix.join(GroupKey{Queue: k.Queue, Group: k.Group}, e, r.maxPerGroup); err != nil {
		r.unreserve()
		return err
	}
	return nil
}

// reserve takes one slot under the registry-wide limit, if there is one.
func (r *Registry) reserve() bool {
	if r.max == 0 {
		return true
	}
	if r.total.Add(1) > r.max {
		r.total.Add(-1)
		return false
	}
	return true
}

func (r *Registry) unreserve() {
	if r.max != 0 {
		r.total.Add(-1)
	}
}

// remove finishes the removal of e, whose retire CAS this caller won: it
// takes it out of its shard, gives back its slots (unless its successor took
// them over), and reports the event.
func (r *Registry) remove(s *shard, mk mkey, e *entry.Entry, kind EventKind, now int64) {
	s.live.Add(-1)
	r.detach(s, mk, e)
	if r.ctr != nil {
		if kind == EventExpired {
			r.ctr.expired.Inc()
		} else {
			r.ctr.left.Inc()
		}
	}
	r.events.emit(kind, mk.k, now)
}

// detach takes retired entry e out of s's map, if the map still holds it,
// and gives back the slots e holds under the limits, the registry-wide one
// and its group's, unless a registration of the same key already took them
// over (FlagFreed marks that one of the two did). Both happen in one compute
// on e's key, under the bucket lock that a registration of the key holds
// while it is admitted: a successor either takes e's slots over or finds
// them given back, never still held. mk must be the map's key for e: its
// strings are e's own, so nothing of a caller's ends up in the map even if
// the compute keeps a newer entry.
func (r *Registry) detach(s *shard, mk mkey, e *entry.Entry) {
	if e.Flags()&entry.FlagFreed != 0 {
		if cur, ok := s.m.Load(mk); !ok || cur != e {
			return // a successor replaced e and took its slots: no lock needed
		}
	}
	s.m.Compute(mk, func(cur *entry.Entry, loaded bool) (*entry.Entry, bool) {
		if e.SetFlag(entry.FlagFreed, true) {
			r.unreserve()
			r.ix.leave(GroupKey{Queue: mk.k.Queue, Group: mk.k.Group}, e)
		}
		return cur, !loaded || cur == e
	})
}

// Deregister removes consumer k, as on a graceful shutdown, and reports
// whether it was present. A heartbeat after Deregister registers k again.
func (r *Registry) Deregister(k Key) bool {
	for {
		sl, ok := r.lookup(&k)
		if !ok {
			return false
		}
		mk := mkey{h: sl.h, k: entryKey(sl.e)}
		// Recorded before the entry is retired, so that a registration
		// that replaces it finds the record and drops it.
		r.dels.record(sl.h, mk.k)
		if sl.e.Retire() {
			r.remove(sl.s, mk, sl.e, EventLeft, nanotime.None)
			return true
		}
		// Another remover retired the entry and has not detached it yet;
		// help, then look again, since a heartbeat may have registered k
		// anew.
		r.detach(sl.s, mk, sl.e)
	}
}

// PruneExpired removes every consumer that is Expired at now under ttl, and
// returns how many it removed. A consumer whose LastHeartbeat is more than
// the clock step (WithMaxClockStep) ahead of now is removed as well: its
// heartbeat came from a clock that was ahead, so its real last beat is
// unknown, and it is counted in Counters.ClockSteps. A consumer whose last
// correctly stamped heartbeat was at t is thus gone after the first prune
// past t + 2·ttl, whatever time a faulty clock stamped on a later beat. It visits the shards one at a time, like
// Snapshot, in O(n). A heartbeat that races with the removal of its consumer
// is never lost: either the heartbeat lands first and the consumer stays, or
// the removal does and the heartbeat registers the consumer again.
//
// Each pass also emits the Stale, Revived and Expired events of the consumers
// it visits (see EventKind). Run it on a timer with a Sweeper.
func (r *Registry) PruneExpired(now time.Time, ttl time.Duration) int {
	ns := nanotime.FromTime(now)
	n := 0
	r.walk(func(s *shard, mk mkey, e *entry.Entry) bool {
		for {
			hb := e.HB()
			if hb == nanotime.None {
				return true
			}
			future := r.ahead(hb, ns)
			if _, st := classifyAt(ns, hb, ttl); st != Expired && !future {
				r.observe(mk.k, e, st, ns)
				return true
			}
			if e.RetireIf(hb) {
				if future {
					r.clockSteps.Add(1)
				}
				r.remove(s, mk, e, EventExpired, ns)
				n++
				return true
			}
		}
	})
	return n
}

// ahead reports whether time t is more than the clock step ahead of now:
// impossible by the clock that read now.
func (r *Registry) ahead(t, now int64) bool {
	return t > now && uint64(t)-uint64(now) > r.step // exact: t > now
}

// Len returns the number of registered consumers, whatever their state. It
// sums one counter per shard and does not walk the entries. Like the views
// it is weakly consistent: while registrations and removals race in
// different shards, it may count one that has just left together with one
// that has just joined.
func (r *Registry) Len() int {
	var n int64
	for i := range r.shards {
		n += r.shards[i].live.Load()
	}
	return int(min(max(n, 0), math.MaxInt))
}
