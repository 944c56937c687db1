// Package presence tells a queue broker which consumers are alive.
//
// Consumers heartbeat. A Registry records, for every (queue, group,
// consumer), when it registered, when it last beat and how many leases it
// reported, and classifies it against a TTL as Active, Stale or Expired (see
// Classify). Aliveness is heartbeat-driven: an idle poller with no pending
// deliveries is active, and a dead worker that still holds leases is not.
//
// The registry never reads the clock: every method takes now, as
// golang.org/x/time/rate does, so that tests drive time and brokers reuse a
// timestamp they already took.
package presence

// Concurrency design
//
// Refresh. A heartbeat for a registered consumer hashes its key once, loads
// the entry from its shard's xsync.MapOf (a lock-free read), and updates the
// entry's own atomic words: a CAS that only moves the heartbeat time
// forwards, a CAS that stores the lease count, and a load of the change mark
// for mirrors (entry.Entry.Refresh). No mutex, no bucket lock, no shared
// counter, no allocation. A Handle skips the hash and the lookup too, by
// keeping the entry pointer.
//
// Removal. An entry is never simply deleted from its map. It is first
// retired: a CAS moves its heartbeat word from the value the remover looked
// at to nanotime.Retired, a value no time converts to. Only the remover whose
// CAS succeeded deletes it from the map, and only if the map still holds that
// very entry. PruneExpired retires with CAS(seen, Retired), where seen is the
// time it classified as Expired.
//
// Prune versus heartbeat. The race that loses heartbeats in a naive design is
// "prune loads the entry, finds it expired; heartbeat stores a fresh time;
// prune deletes the entry". Here both sides meet on one word. If the
// heartbeat's CAS lands first, the prune's CAS fails because the word no
// longer holds the time it saw, and the consumer stays. If the prune's CAS
// lands first, the heartbeat finds the word retired and registers the
// consumer again, replacing the retired entry under the map's bucket lock.
// Either way, once Heartbeat(t) returns, the consumer is in the map with a
// heartbeat >= t, unless a later Deregister or a later prune that judged t
// itself expired removed it.
//
// Invariant. A non-retired entry is always the map's current entry for its
// key: entries enter the map live, and leave it, or are replaced, only after
// they are retired. So writing to a live entry is always visible, and a
// Handle's cached entry stays valid until the moment it is retired.
//
// Reads. Snapshot, PruneExpired and the other whole-registry walks visit one
// shard at a time through MapOf.Range, which holds one bucket lock only while
// it copies that bucket's entry pointers; the per-group views and counts walk
// the group index (index.go), one group lock at a time. None of them stops
// the world; in exchange they are weakly consistent, like sync.Map.Range.

import (
	"cmp"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
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

// Consumer is one row of a snapshot.
type Consumer struct {
	Key
	// RegisteredAt is the time of the first heartbeat since the consumer
	// was last registered. It never changes while the consumer stays.
	RegisteredAt time.Time
	// LastHeartbeat is the time of the newest heartbeat: when the consumer
	// was last seen.
	LastHeartbeat time.Time
	// LastActive is the time of the newest heartbeat that reported
	// Leases > 0: when the consumer last had work. It is the zero Time if
	// no heartbeat since registration has. A poller that beats but never
	// gets messages is alive (LastHeartbeat is recent) but idle
	// (LastActive is old or zero).
	LastActive time.Time
	// Age is now minus LastHeartbeat for the now of the read, never
	// negative.
	Age time.Duration
	// Leases is the lease count reported by the newest heartbeat. The
	// registry stores it verbatim and never infers aliveness from it.
	Leases uint32
	// State classifies Age under the TTL of the read.
	State State
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
)

// Registry records consumer heartbeats. All its methods are safe for
// concurrent use; a Registry must not be copied after first use.
//
// The zero Registry is not usable; create one with New.
type Registry struct {
	seed   uint64
	shift  uint // 64 - log2(len(shards)); a shard is picked by h >> shift
	shards []shard
	max    int64 // 0: no limit
	// total counts live entries registry-wide. It is only maintained when
	// max > 0, since only the limit needs an exact global figure.
	total       atomic.Int64
	maxPerGroup int // 0: no limit
	ix          index
	events      events
	ctr         *counters // nil unless WithCounters
}

// Option configures a Registry in New.
type Option func(*config)

type config struct {
	shards      int
	max         int
	maxPerGroup int
	presize     int
	counters    bool
}

// WithShards sets the number of shards. n is rounded up to a power of two,
// at most 65536; n <= 0 keeps the default, four shards per GOMAXPROCS.
func WithShards(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.shards = roundShards(n)
		}
	}
}

// WithMaxConsumers limits the registry to n consumers: a heartbeat that would
// register one more returns ErrTooManyConsumers and changes nothing, while
// heartbeats of registered consumers always succeed. n <= 0 means no limit,
// the default.
func WithMaxConsumers(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.max = n
		} else {
			c.max = 0
		}
	}
}

// WithMaxConsumersPerGroup limits every (queue, group) to n consumers, as
// Kafka's group.max.size does: a heartbeat that would register one more in a
// full group returns ErrGroupFull and changes nothing. Refreshes always
// succeed. n <= 0 means no limit, the default. The registry-wide limit of
// WithMaxConsumers applies as well.
func WithMaxConsumersPerGroup(n int) Option {
	return func(c *config) { c.maxPerGroup = max(n, 0) }
}

// maxPresize caps WithPresize, so that a wild hint cannot allocate gigabytes
// up front; the maps still grow past it on demand.
const maxPresize = 1 << 24

// WithPresize sizes the shards for about n consumers up front, so that a
// broker that knows its fleet pays no map growth while it registers. n is
// capped at 16,777,216; n <= 0 keeps the default, small maps that grow.
func WithPresize(n int) Option {
	return func(c *config) { c.presize = min(n, maxPresize) }
}

// New returns an empty Registry.
func New(opts ...Option) *Registry {
	c := config{shards: defaultShards()}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	r := &Registry{
		shards:      make([]shard, c.shards),
		shift:       uint(64 - log2(c.shards)),
		max:         int64(c.max),
		maxPerGroup: c.maxPerGroup,
		seed:        newSeed(),
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

func log2(n int) int {
	l := 0
	for n > 1 {
		n >>= 1
		l++
	}
	return l
}

// seedCounter makes two registries created in the same nanosecond differ.
var seedCounter atomic.Uint64

func newSeed() uint64 {
	var b [16]byte
	n := uint64(time.Now().UnixNano())
	c := seedCounter.Add(1)
	for i := 0; i < 8; i++ {
		b[i] = byte(n >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	return xxhash.Sum64(b[:])
}

func (r *Registry) shardOf(h uint64) *shard {
	return &r.shards[h>>r.shift&uint64(len(r.shards)-1)]
}

// Heartbeat records that consumer k was alive at now and held leases
// leases.
//
// The first heartbeat of k registers it with RegisteredAt = LastHeartbeat =
// now. A later one with now at or after LastHeartbeat moves LastHeartbeat to
// now and sets Leases; one with now before LastHeartbeat is stale news and
// changes nothing. Heartbeat returns nil in all three cases.
//
// Refreshing a registered consumer takes no lock and allocates nothing.
// Registering one allocates twice and takes one xsync bucket lock; it fails
// with ErrTooManyConsumers beyond WithMaxConsumers and with ErrKeyTooLong for
// keys over 4 GiB. The registry copies k's strings and keeps no reference to
// them.
//
// Once Heartbeat returns nil, k is present with LastHeartbeat >= now until a
// later Deregister, or a later PruneExpired that finds now itself expired,
// removes it.
func (r *Registry) Heartbeat(k Key, leases uint32, now time.Time) error {
	ns := nanotime.FromTime(now)
	h := hashKey(r.seed, &k)
	s := r.shardOf(h)
	if e, ok := s.m.Load(mkey{h: h, k: k}); ok && e.Refresh(ns, leases) {
		if r.ctr != nil {
			r.ctr.heartbeats.Inc()
		}
		return nil
	}
	_, err := r.register(s, h, &k, leases, ns)
	return err
}

// register is the slow path of a heartbeat: the consumer is absent, or its
// entry was retired. It inserts a new entry, or refreshes the live one that a
// concurrent heartbeat inserted first, and returns the live entry.
func (r *Registry) register(s *shard, h uint64, k *Key, leases uint32, now int64) (*entry.Entry, error) {
	if uint64(len(k.Queue))+uint64(len(k.Group))+uint64(len(k.Consumer)) > entry.MaxKeyBytes {
		return nil, ErrKeyTooLong
	}
	fresh, mk := newEntry(h, k, now, leases)
	return r.upsert(s, mk, fresh, now, true, func(e *entry.Entry) bool { return e.Refresh(now, leases) })
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
			if err = r.admit(mk.k, fresh); err != nil {
				// Keep a retired entry for its remover to delete;
				// an absent key stays absent.
				return cur, !loaded
			}
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
// gives back its slot, takes it out of its group and its shard, and
// reports the event.
func (r *Registry) remove(s *shard, mk mkey, e *entry.Entry, kind EventKind, now int64) {
	s.live.Add(-1)
	r.unreserve()
	r.ix.leave(GroupKey{Queue: mk.k.Queue, Group: mk.k.Group}, e)
	unlink(s, mk, e)
	if r.ctr != nil {
		if kind == EventExpired {
			r.ctr.expired.Inc()
		} else {
			r.ctr.left.Inc()
		}
	}
	r.events.emit(kind, mk.k, now)
}

// unlink deletes e from s's map if the map still holds e. mk must be the
// map's key for e: its strings are e's own, so nothing of a caller's ends up
// in the map even if a racing registration means the compute keeps cur.
func unlink(s *shard, mk mkey, e *entry.Entry) {
	if cur, ok := s.m.Load(mk); !ok || cur != e {
		return // a registration already replaced e; skip the bucket lock
	}
	s.m.Compute(mk, func(cur *entry.Entry, loaded bool) (*entry.Entry, bool) {
		return cur, !loaded || cur == e
	})
}

// Deregister removes consumer k, as on a graceful shutdown, and reports
// whether it was present. A heartbeat after Deregister registers k again.
func (r *Registry) Deregister(k Key) bool {
	h := hashKey(r.seed, &k)
	s := r.shardOf(h)
	for {
		e, ok := s.m.Load(mkey{h: h, k: k})
		if !ok {
			return false
		}
		mk := mkey{h: h, k: entryKey(e)}
		if e.Retire() {
			r.remove(s, mk, e, EventLeft, noTime)
			return true
		}
		// Another remover retired e and has not unlinked it yet; help,
		// then look again, since a heartbeat may have registered k anew.
		unlink(s, mk, e)
	}
}

// row builds the snapshot row of a live entry.
func row(k Key, e *entry.Entry, now int64, ttl time.Duration) (Consumer, bool) {
	hb := e.HB()
	if hb == nanotime.Retired {
		return Consumer{}, false
	}
	age, st := classifyAt(now, hb, ttl)
	return Consumer{
		Key:           k,
		RegisteredAt:  nanotime.ToTime(e.Registered()),
		LastHeartbeat: nanotime.ToTime(hb),
		LastActive:    e.ActiveTime(),
		Age:           age,
		Leases:        e.Leases(),
		State:         st,
	}, true
}

func compareConsumers(a, b Consumer) int {
	return CompareKeys(a.Key, b.Key)
}

// CompareKeys orders keys by Queue, then Group, then Consumer, byte-wise: the
// order of Snapshot. It returns -1, 0 or +1.
func CompareKeys(a, b Key) int {
	if c := cmp.Compare(a.Queue, b.Queue); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Group, b.Group); c != 0 {
		return c
	}
	return cmp.Compare(a.Consumer, b.Consumer)
}

// PruneExpired removes every consumer that is Expired at now under ttl, and
// returns how many it removed. It visits the shards one at a time, like
// Snapshot, in O(n). A heartbeat that races with the removal of its consumer
// is never lost: either the heartbeat lands first and the consumer stays, or
// the removal does and the heartbeat registers the consumer again.
//
// Each pass also emits the Stale, Revived and Expired events of the consumers
// it visits (see EventKind). Run it on a timer with a Sweeper.
func (r *Registry) PruneExpired(now time.Time, ttl time.Duration) int {
	ns := nanotime.FromTime(now)
	n := 0
	for i := range r.shards {
		s := &r.shards[i]
		s.m.Range(func(mk mkey, e *entry.Entry) bool {
			for {
				hb := e.HB()
				if hb == nanotime.Retired {
					return true
				}
				if _, st := classifyAt(ns, hb, ttl); st != Expired {
					r.observe(mk.k, e, st, ns)
					return true
				}
				if e.RetireIf(hb) {
					r.remove(s, mk, e, EventExpired, ns)
					n++
					return true
				}
			}
		})
	}
	return n
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
