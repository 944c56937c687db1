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

// MaxKeyBytes is the largest total length, in bytes, of a key's three
// strings: 16 MiB on every platform. Longer keys are refused with
// ErrKeyTooLong.
const MaxKeyBytes = entry.MaxKeyBytes

// Key names one consumer: the queue it reads, its consumer group and its own
// name. Any strings are valid, including empty ones, invalid UTF-8 and NUL
// bytes; the three fields are kept apart, so {"a\x00b", "c", ""} and
// {"a", "b\x00c", ""} are different consumers.
type Key struct {
	Queue, Group, Consumer string
}

// tooLong reports whether k's strings add up to more than MaxKeyBytes.
func (k *Key) tooLong() bool {
	return uint64(len(k.Queue))+uint64(len(k.Group))+uint64(len(k.Consumer)) > MaxKeyBytes
}

// GroupKey names one consumer group of one queue.
type GroupKey struct {
	Queue, Group string
}

var (
	// ErrTooManyConsumers is returned by a heartbeat that would register a
	// consumer beyond the limit set by WithMaxConsumers.
	ErrTooManyConsumers = errors.New("presence: too many consumers")
	// ErrKeyTooLong is returned by a heartbeat, and by Merge, for a key
	// whose strings add up to more than MaxKeyBytes.
	ErrKeyTooLong = errors.New("presence: key longer than MaxKeyBytes")
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
	hmask  uint64       // all ones, unless a test makes keys collide
	step   uint64       // WithMaxClockStep in nanoseconds, > 0
	shift  uint         // 64 - log2(len(shards)); a shard is picked by h >> shift
	shards []shard
	max    int64 // 0: no limit
	// total counts live entries registry-wide. It is only maintained when
	// max > 0, since only the limit needs an exact global figure.
	total       atomic.Int64
	maxPerGroup int // 0: no limit
	ix          index
	lists       []entryList // every entry, for the walks; see walklist.go
	events      events
	ctr         *counters // nil unless WithCounters
	clockSteps  atomic.Int64
	dels        deletions // deregistrations kept for a mirror; see changes.go
	// ttlMin and ttlMax bound declared TTLs (WithTTLBounds), in
	// nanoseconds; 0 is no bound.
	ttlMin, ttlMax int64
	// shortest is the shortest TTL, in nanoseconds, that a registered
	// consumer declared, 0 if none: the Sweeper's default interval serves
	// it. A declaration lowers it at once; every PruneExpired pass sets it
	// to the shortest among the consumers it kept and the declarations
	// made while it ran (fresh), so it rises again when the consumers
	// that declared it leave.
	shortest, fresh atomic.Int64
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
		hmask:       ^uint64(0) &^ c.hashClear,
		step:        uint64(c.maxStep),
		ttlMin:      int64(c.ttlMin),
		ttlMax:      int64(c.ttlMax),
	}
	r.ix.init(r.seed, r.hmask)
	r.events.dropped = xsync.NewCounter()
	if c.counters {
		r.ctr = newCounters()
	}
	per := 0
	if c.presize > 0 {
		per = c.presize/c.shards + 1
	}
	for i := range r.shards {
		r.shards[i].init(per)
	}
	r.lists = make([]entryList, min(c.shards, maxLists)) // both powers of two
	for i := range r.lists {
		if c.presize > 0 {
			r.lists[i].es = make([]*entry.Entry, 0, c.presize/len(r.lists)+1)
		}
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
// Refreshing a registered consumer takes no lock and allocates nothing (a
// key whose 64-bit hash another registered key holds, about one pair in
// 2^64, is looked up under its shard's spill mutex; see shard.go).
// Registering one allocates twice and takes one xsync bucket lock; it fails
// with ErrTooManyConsumers beyond WithMaxConsumers, with ErrGroupFull beyond
// WithMaxConsumersPerGroup and with ErrKeyTooLong for keys over MaxKeyBytes.
// The registry copies k's strings and keeps no reference to them.
//
// Once Heartbeat returns nil, k is present with LastHeartbeat >= now until a
// later Deregister, a later PruneExpired that finds now itself expired, or a
// later heartbeat that corrects the clock, changes that.
//
// Heartbeat declares no TTL: a consumer that never declared one is judged
// by the TTL of each read, and one that did keeps its declaration.
func (r *Registry) Heartbeat(k Key, leases uint32, now time.Time) error {
	return r.heartbeat(&k, leases, 0, now)
}

// HeartbeatWithTTL is Heartbeat for a consumer that declares its own
// heartbeat budget, its session timeout in Kafka's terms (NATS calls it a
// consumer's inactive threshold): from this beat on, every read, count,
// prune and event judges k by ttl instead of the TTL the read passes, and
// rows report it (Consumer.TTL). ttl is clamped to the registry's bounds
// (WithTTLBounds) and kept to the millisecond, rounded up (see
// MaxDeclaredTTL); ttl <= 0 declares nothing, as Heartbeat.
//
// The newest declaration wins: a later beat may declare another budget,
// while a beat that is stale news (older than the stored one) changes
// nothing, its declaration included. Re-declaring the budget the consumer
// already has writes nothing, so a refresh stays as cheap as Heartbeat's:
// lock-free, allocation-free, and one more load.
func (r *Registry) HeartbeatWithTTL(k Key, leases uint32, ttl time.Duration, now time.Time) error {
	return r.heartbeat(&k, leases, r.declare(ttl), now)
}

// heartbeat is Heartbeat declaring ttl, a bounded TTL in entry.TTLUnits
// (0: none).
func (r *Registry) heartbeat(k *Key, leases uint32, ttl uint32, now time.Time) error {
	ns := nanotime.FromTime(now)
	if ns == nanotime.Min && now.IsZero() {
		return ErrZeroTime
	}
	sl, ok := r.lookup(k)
	if ok {
		if o := sl.e.BeatTTL(ns, leases, ttl, r.step); o != entry.Retired {
			r.beaten(o)
			return nil
		}
	}
	_, err := r.register(sl.s, sl.h, k, leases, ttl, ns)
	return err
}

// declare returns the TTL a consumer declaring ttl gets, in entry.TTLUnits:
// ttl within the registry's bounds, rounded up to a whole unit and at most
// MaxDeclaredTTL, or 0 (none) for ttl <= 0. It notes the shortest declared
// TTL for the Sweeper.
func (r *Registry) declare(ttl time.Duration) uint32 {
	if ttl <= 0 {
		return 0
	}
	d := max(int64(ttl), r.ttlMin)
	if r.ttlMax > 0 {
		d = min(d, r.ttlMax)
	}
	units := uint32(min(ceilUnits(time.Duration(d)), math.MaxUint32))
	d = int64(units) * int64(entry.TTLUnit)
	// fresh first: a pass that ends after this reads fresh after it stores
	// shortest, so this declaration ends up in shortest either way.
	keepLowest(&r.fresh, d)
	keepLowest(&r.shortest, d)
	return units
}

// keepLowest lowers w to d > 0 if w is 0 (none) or above d. It writes only
// then, so a steady declaration of the same TTL costs one load.
func keepLowest(w *atomic.Int64, d int64) {
	for {
		cur := w.Load()
		if cur != 0 && cur <= d || w.CompareAndSwap(cur, d) {
			return
		}
	}
}

// ceilUnits returns d >= 0 in entry.TTLUnits, rounded up.
func ceilUnits(d time.Duration) int64 {
	n := int64(d / entry.TTLUnit)
	if d%entry.TTLUnit != 0 {
		n++
	}
	return n
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
func (r *Registry) register(s *shard, h uint64, k *Key, leases uint32, ttl uint32, now int64) (*entry.Entry, error) {
	if k.tooLong() {
		return nil, ErrKeyTooLong
	}
	fresh, mk := newEntry(h, k, now, leases)
	fresh.SetTTL(ttl)
	return r.upsert(s, mk, fresh, now, true, func(e *entry.Entry) bool {
		o := e.BeatTTL(now, leases, ttl, r.step)
		if o == entry.Corrected {
			r.clockSteps.Add(1)
		}
		return o != entry.Retired
	})
}

// upsert inserts fresh under mk, unless a live entry is already there, in
// which case it applies update to that one instead. update reports false if
// the entry was retired meanwhile; upsert then tries again. at is the time
// of the Joined event, which is emitted under the key's bucket lock, so that
// one key's events are emitted in the order they happened (see remove);
// beat says whether this is a heartbeat, for the counters. Under that lock
// a new entry enters its group (admit), then its walk list, then the
// shard's map: a walk can see it before a lookup can, never the other way
// round (MarkChanged relies on that order).
func (r *Registry) upsert(s *shard, mk mkey, fresh *entry.Entry, at int64, beat bool, update func(*entry.Entry) bool) (*entry.Entry, error) {
	for {
		var live *entry.Entry
		var err error
		s.compute(&mk, func(cur *entry.Entry, loaded bool) (*entry.Entry, bool) {
			// An entry is retired only inside the compute that deletes it
			// (remove), so a loaded entry is live here, unless a beat
			// is a few instructions from finding it retired.
			if loaded && cur.Live() {
				live = cur
				return cur, false
			}
			if err = r.admit(mk.k, fresh); err != nil {
				return cur, !loaded // an absent key stays absent
			}
			r.listOf(fresh).add(fresh)
			pause(hookJoined)
			s.live.Add(1)
			r.events.emit(EventJoined, mk.k, at)
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

// remove retires and removes the entry of mk's key in one compute on that
// key, and reports whether it did. With e nil it removes whatever live entry
// the key has (Deregister); otherwise only e, and only if e's heartbeat
// still equals seen (PruneExpired), so that a beat that moved it wins.
//
// Retiring under the key's bucket lock makes the removal one step for
// everyone else who takes that lock: a registration of the key never finds
// an entry that is retired but still holds its slots under the limits, or
// its place in its group, and the Expired or Left event is emitted before
// the Joined event of a successor. A refresh takes no lock and meets the
// remover on the heartbeat word alone, as the design comment in doc.go
// describes.
func (r *Registry) remove(s *shard, mk mkey, e *entry.Entry, seen int64, kind EventKind, now int64) bool {
	done := false
	s.compute(&mk, func(cur *entry.Entry, loaded bool) (*entry.Entry, bool) {
		switch {
		case !loaded:
			return cur, true // absent: nothing to delete
		case e == nil && !cur.Retire(), e != nil && (cur != e || !e.RetireIf(seen)):
			return cur, false
		}
		done = true
		s.live.Add(-1)
		r.unreserve()
		r.ix.leave(GroupKey{Queue: mk.k.Queue, Group: mk.k.Group}, cur)
		r.listOf(cur).drop(entryBytes(&mk.k))
		r.events.emit(kind, mk.k, now)
		return cur, true
	})
	if done && r.ctr != nil {
		if kind == EventExpired {
			r.ctr.expired.Inc()
		} else {
			r.ctr.left.Inc()
		}
	}
	return done
}

// Deregister removes consumer k, as on a graceful shutdown, and reports
// whether it was present. A heartbeat after Deregister registers k again.
func (r *Registry) Deregister(k Key) bool {
	sl, ok := r.lookup(&k)
	if !ok {
		return false
	}
	// The key's strings are the entry's own, not k's, so that what the
	// registry keeps of it (the deletion record, the events) never
	// references the caller's memory.
	mk := mkey{h: sl.h, k: entryKey(sl.e)}
	pause(hookDeregisterRecorded)
	if !r.remove(sl.s, mk, nil, 0, EventLeft, nanotime.None) {
		return false
	}
	// Recorded once the entry is retired, not before: a mirror that took
	// the record earlier could write the still-live row after the delete.
	r.dels.record(sl.h, mk.k)
	return true
}

// PruneExpired removes every consumer that is Expired at now under ttl, or
// under its own declared TTL (HeartbeatWithTTL) if it has one, and returns
// how many it removed. A consumer whose LastHeartbeat is more than
// the clock step (WithMaxClockStep) ahead of now is removed as well: its
// heartbeat came from a clock that was ahead, so its real last beat is
// unknown, and it is counted in Counters.ClockSteps. A consumer whose last
// correctly stamped heartbeat was at t is thus gone after the first prune
// past t + 2·ttl, whatever time a faulty clock stamped on a later beat.
//
// It reads every consumer once, in no particular order, in O(n), and takes
// the bucket lock of each consumer it removes. A heartbeat that races with the
// removal of its consumer is never lost: either the heartbeat lands first
// and the consumer stays, or the removal does and the heartbeat registers
// the consumer again.
//
// Each pass also emits the Stale, Revived and Expired events of the consumers
// it visits (see EventKind). Run it on a timer with a Sweeper.
func (r *Registry) PruneExpired(now time.Time, ttl time.Duration) int {
	ns := nanotime.FromTime(now)
	n := 0
	// The shortest declared TTL among the consumers the pass keeps, and
	// those declared while it runs, which it may miss: see shortest.
	r.fresh.Store(0)
	var low time.Duration
	w, latest := newWindow(ns, ttl), r.latest(ns)
	r.walk(func(ms []*entry.Entry) bool {
		for _, e := range ms {
			// The common case inline, with no call: e is Active, not
			// ahead of the clock and not marked Stale, so the pass keeps
			// it and has nothing to observe; only the TTL it declared
			// counts. (A retired entry, whose heartbeat is nanotime.None,
			// passes as Active only where every heartbeat is, or, at the
			// bottom of the time range, within the TTL it declared;
			// keeping it is what pruneOne would do, but the TTL of a
			// consumer that left is not one the pass kept.)
			if e.Flags()&entry.FlagStale == 0 {
				hb, declared := e.HB(), e.TTL()
				st := w.plain(hb)
				if declared != 0 {
					st = w.own(hb, declared)
				}
				if st == Active && hb <= latest {
					if hb != nanotime.None {
						lowerTo(&low, declared)
					}
					continue
				}
			}
			if r.pruneOne(e, &w, latest, &low) {
				n++
			}
		}
		return true
	})
	if f := time.Duration(r.fresh.Load()); f != 0 && (low == 0 || f < low) {
		low = f
	}
	r.shortest.Store(int64(low))
	if f := r.fresh.Load(); f != 0 {
		keepLowest(&r.shortest, f) // declared since the load above
	}
	return n
}

// lowerTo lowers *low, the shortest declared TTL a pass has kept so far (0:
// none yet), to declared, unless declared is 0 (none).
func lowerTo(low *time.Duration, declared time.Duration) {
	if declared != 0 && (*low == 0 || declared < *low) {
		*low = declared
	}
}

// ahead reports whether time t is more than the clock step ahead of now:
// impossible by the clock that read now.
func (r *Registry) ahead(t, now int64) bool {
	return t > r.latest(now)
}

// latest returns the latest time that is not ahead of now: now plus the
// clock step, saturating at the largest int64.
func (r *Registry) latest(now int64) int64 {
	if l := now + int64(r.step); l > now { // r.step is in (0, MaxInt64]
		return l
	}
	return math.MaxInt64 // now+step wrapped around from above the range
}

// pruneOne removes e if it is Expired at ns under ttl, or if its heartbeat
// is more than the clock step ahead of ns, and reports whether it did;
// otherwise it records the state e is in for the events. It hashes e's key
// only to remove it or to emit an event.
func (r *Registry) pruneOne(e *entry.Entry, w *window, latest int64, low *time.Duration) bool {
	ns := w.now
	for {
		hb := e.HB()
		if hb == nanotime.None {
			return false
		}
		future := hb > latest
		declared := e.TTL()
		if st := w.state(hb, declared); st != Expired && !future {
			r.observe(e, st, ns)
			lowerTo(low, declared)
			return false
		}
		pause(hookBeforeRetire)
		s, mk := r.slotOf(e)
		if r.remove(s, mk, e, hb, EventExpired, ns) {
			if future {
				r.clockSteps.Add(1)
			}
			return true
		}
		// A beat moved the heartbeat (classify it again), or e is no
		// longer in the map, and so retired (the loop ends).
	}
}

// slotOf returns the shard of entry e and its key with its hash; the key's
// strings are e's own.
func (r *Registry) slotOf(e *entry.Entry) (*shard, mkey) {
	k := entryKey(e)
	h := r.hash(&k)
	return r.shardOf(h), mkey{h: h, k: k}
}

// Len returns the number of registered consumers, whatever their state. It
// sums one counter per shard and does not walk the entries. Like the views
// it is weakly consistent: while registrations and removals race in
// different shards, it may count one that has just left together with one
// that has just joined.
func (r *Registry) Len() int {
	r.mustBeMade()
	var n int64
	for i := range r.shards {
		n += r.shards[i].live.Load()
	}
	return int(min(max(n, 0), math.MaxInt))
}
