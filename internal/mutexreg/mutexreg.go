// Package mutexreg is the seed's design in Go: one sync.Mutex around a plain
// map, held for every operation, snapshot and sort included. It has the
// Registry's method set and semantics and is written to be obviously
// correct, not fast.
//
// It serves twice: as the reference model that tests and fuzzers compare
// the registry with, and as the baseline of the benchmarks.
package mutexreg

import (
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/internal/nanotime"
)

type entry struct {
	registered int64
	hb         int64
	active     int64 // latest hb with leases > 0; hasActive says whether there is one
	hasActive  bool
	leases     uint32
}

func (e entry) lastActive() time.Time {
	if !e.hasActive {
		return time.Time{}
	}
	return nanotime.ToTime(e.active)
}

// Registry is the mutex-guarded reference registry.
type Registry struct {
	mu          sync.Mutex
	m           map[presence.Key]entry
	max         int
	maxPerGroup int
}

// New returns an empty Registry limited to max consumers; max <= 0 means no
// limit.
func New(max int) *Registry {
	return &Registry{m: make(map[presence.Key]entry), max: max}
}

// NewWithGroupLimit is New with a limit of perGroup consumers in each
// (queue, group) as well; perGroup <= 0 means no limit.
func NewWithGroupLimit(max, perGroup int) *Registry {
	r := New(max)
	r.maxPerGroup = perGroup
	return r
}

// clone copies k's strings, as the registry does, so that the map never
// holds a caller's memory.
func clone(k presence.Key) presence.Key {
	return presence.Key{
		Queue:    strings.Clone(k.Queue),
		Group:    strings.Clone(k.Group),
		Consumer: strings.Clone(k.Consumer),
	}
}

// Heartbeat records a heartbeat; see presence.Registry.Heartbeat. The clock
// step is presence.DefaultMaxClockStep.
func (r *Registry) Heartbeat(k presence.Key, leases uint32, now time.Time) error {
	if now.IsZero() {
		return presence.ErrZeroTime
	}
	ns := nanotime.FromTime(now)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.m[k]; ok {
		if ns < e.hb && tooFar(e.hb, ns) {
			// A clock correction: the stored times from the future go.
			e.hb = ns
			e.registered = min(e.registered, ns)
			e.active = min(e.active, ns)
		}
		if ns >= e.hb {
			e.hb = ns
			e.leases = leases
			if leases > 0 {
				e.active, e.hasActive = ns, true
			}
			r.m[k] = e
		}
		return nil
	}
	if uint64(len(k.Queue))+uint64(len(k.Group))+uint64(len(k.Consumer)) > presence.MaxKeyBytes {
		return presence.ErrKeyTooLong
	}
	if r.max > 0 && len(r.m) >= r.max {
		return presence.ErrTooManyConsumers
	}
	if r.maxPerGroup > 0 {
		n := 0
		for other := range r.m {
			if other.Queue == k.Queue && other.Group == k.Group {
				n++
			}
		}
		if n >= r.maxPerGroup {
			return presence.ErrGroupFull
		}
	}
	r.m[clone(k)] = entry{registered: ns, hb: ns, leases: leases, active: ns, hasActive: leases > 0}
	return nil
}

// tooFar reports whether later is after earlier by more than
// presence.DefaultMaxClockStep: a step of the clock, not a reordering.
func tooFar(later, earlier int64) bool {
	return new(big.Int).Sub(big.NewInt(later), big.NewInt(earlier)).Cmp(big.NewInt(int64(presence.DefaultMaxClockStep))) > 0
}

// Handle is a key-bound heartbeat, with no fast path.
type Handle struct {
	r *Registry
	k presence.Key
}

// Handle returns a Handle for k.
func (r *Registry) Handle(k presence.Key) *Handle { return &Handle{r: r, k: clone(k)} }

// Heartbeat is Registry.Heartbeat for the handle's key.
func (h *Handle) Heartbeat(leases uint32, now time.Time) error {
	return h.r.Heartbeat(h.k, leases, now)
}

// Key returns the handle's key.
func (h *Handle) Key() presence.Key { return h.k }

// Deregister removes k and reports whether it was present.
func (r *Registry) Deregister(k presence.Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[k]
	delete(r.m, k)
	return ok
}

// Snapshot returns every consumer in key order, built and sorted under the
// lock, as the seed does.
func (r *Registry) Snapshot(now time.Time, ttl time.Duration) []presence.Consumer {
	ns := nanotime.FromTime(now)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]presence.Consumer, 0, len(r.m))
	for k, e := range r.m {
		age := nanotime.Age(ns, e.hb)
		out = append(out, presence.Consumer{
			Key:           k,
			RegisteredAt:  nanotime.ToTime(e.registered),
			LastHeartbeat: nanotime.ToTime(e.hb),
			LastActive:    e.lastActive(),
			Age:           age,
			Leases:        e.leases,
			State:         presence.Classify(age, ttl),
		})
	}
	slices.SortFunc(out, func(a, b presence.Consumer) int { return presence.CompareKeys(a.Key, b.Key) })
	return out
}

// CountActiveByGroup counts Active consumers per group, from a snapshot, as
// the seed does.
func (r *Registry) CountActiveByGroup(now time.Time, ttl time.Duration) map[presence.GroupKey]int {
	out := make(map[presence.GroupKey]int)
	for _, c := range r.Snapshot(now, ttl) {
		if c.State == presence.Active {
			out[presence.GroupKey{Queue: c.Queue, Group: c.Group}]++
		}
	}
	return out
}

// PruneExpired removes every Expired consumer, and every one whose
// heartbeat is further ahead of now than the clock step, and returns how
// many.
func (r *Registry) PruneExpired(now time.Time, ttl time.Duration) int {
	ns := nanotime.FromTime(now)
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, e := range r.m {
		if presence.Classify(nanotime.Age(ns, e.hb), ttl) == presence.Expired || e.hb > ns && tooFar(e.hb, ns) {
			delete(r.m, k)
			n++
		}
	}
	return n
}

// Len returns the number of consumers.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// filter returns the rows of Snapshot for which keep is true.
func (r *Registry) filter(now time.Time, ttl time.Duration, keep func(presence.Key) bool) []presence.Consumer {
	out := []presence.Consumer{}
	for _, c := range r.Snapshot(now, ttl) {
		if keep(c.Key) {
			out = append(out, c)
		}
	}
	return out
}

// Lookup returns k's row from a snapshot.
func (r *Registry) Lookup(k presence.Key, now time.Time, ttl time.Duration) (presence.Consumer, bool) {
	rows := r.filter(now, ttl, func(x presence.Key) bool { return x == k })
	if len(rows) == 0 {
		return presence.Consumer{}, false
	}
	return rows[0], true
}

// SnapshotGroup returns the snapshot rows of group g.
func (r *Registry) SnapshotGroup(g presence.GroupKey, now time.Time, ttl time.Duration) []presence.Consumer {
	return r.filter(now, ttl, func(x presence.Key) bool { return x.Queue == g.Queue && x.Group == g.Group })
}

// SnapshotQueue returns the snapshot rows of queue q.
func (r *Registry) SnapshotQueue(q string, now time.Time, ttl time.Duration) []presence.Consumer {
	return r.filter(now, ttl, func(x presence.Key) bool { return x.Queue == q })
}

// Stats counts a snapshot's rows by state.
func (r *Registry) Stats(now time.Time, ttl time.Duration) presence.Counts {
	var st presence.Counts
	for _, c := range r.Snapshot(now, ttl) {
		st.Add(c.State)
	}
	return st
}

// CountByGroup counts a snapshot's rows by group and state.
func (r *Registry) CountByGroup(now time.Time, ttl time.Duration) map[presence.GroupKey]presence.Counts {
	out := map[presence.GroupKey]presence.Counts{}
	for _, c := range r.Snapshot(now, ttl) {
		g := presence.GroupKey{Queue: c.Queue, Group: c.Group}
		n := out[g]
		n.Add(c.State)
		out[g] = n
	}
	return out
}
