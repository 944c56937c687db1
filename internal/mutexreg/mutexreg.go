// Package mutexreg is the best plain design of a consumer registry: one
// sync.Mutex around a map of pointers to entries. A refresh is one map
// lookup and three stores under the lock, with no defer; registration is a
// second lookup and an insert. Snapshot builds and sorts its rows under the
// lock, as the seed does.
//
// It has the Registry's method set and semantics and is written to be
// obviously correct first and as fast as a plain design can be second. It
// serves twice: as the reference model that tests and fuzzers compare the
// registry with, and as the fair baseline of the benchmarks. Every ratio
// the project quotes against "mutex" is against this design.
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

// entry is one consumer's state, updated in place through its pointer.
type entry struct {
	registered int64
	hb         int64
	active     int64 // latest hb with leases > 0; hasActive says whether there is one
	hasActive  bool
	leases     uint32
}

func (e *entry) lastActive() time.Time {
	if !e.hasActive {
		return time.Time{}
	}
	return nanotime.ToTime(e.active)
}

// Registry is the mutex-guarded registry.
type Registry struct {
	mu          sync.Mutex
	m           map[presence.Key]*entry
	max         int
	maxPerGroup int
	// ttls holds the TTLs that consumers declared, apart from the entries
	// so that a registry where none declares one costs what it did before
	// declarations existed.
	ttls   map[presence.Key]time.Duration
	lo, hi time.Duration // TTL bounds; 0 for none
}

// SetTTLBounds bounds declared TTLs as presence.WithTTLBounds does, and
// clamps the TTLs already declared: the registry is then what a checkpoint
// of it restores into a registry made with those bounds.
func (r *Registry) SetTTLBounds(lo, hi time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lo, r.hi = max(lo, 0), max(hi, 0)
	if r.hi > 0 && r.hi < r.lo {
		r.hi = r.lo
	}
	for k, d := range r.ttls {
		r.ttls[k] = r.bound(d)
	}
}

// bound returns the TTL a consumer declaring ttl gets: 0 for none, else
// ttl within the bounds, rounded up to a whole millisecond, and at most
// presence.MaxDeclaredTTL.
func (r *Registry) bound(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	if ttl < r.lo {
		ttl = r.lo
	}
	if r.hi > 0 && ttl > r.hi {
		ttl = r.hi
	}
	ms := new(big.Int).Div(new(big.Int).Add(big.NewInt(int64(ttl)), big.NewInt(int64(time.Millisecond-1))), big.NewInt(int64(time.Millisecond)))
	if ms.Cmp(big.NewInt(int64(presence.MaxDeclaredTTL/time.Millisecond))) > 0 {
		return presence.MaxDeclaredTTL
	}
	return time.Duration(ms.Int64()) * time.Millisecond
}

// judged returns the TTL consumer k is judged by in a read that passes ttl.
func (r *Registry) judged(k presence.Key, ttl time.Duration) time.Duration {
	if d, ok := r.ttls[k]; ok {
		return d
	}
	return max(ttl, 0)
}

// declareTTL records that registered consumer k declared ttl (not 0).
func (r *Registry) declareTTL(k presence.Key, ttl time.Duration) {
	if r.ttls == nil {
		r.ttls = map[presence.Key]time.Duration{}
	}
	if _, ok := r.ttls[k]; !ok {
		k = clone(k)
	}
	r.ttls[k] = ttl
}

// remove deletes consumer k and its declared TTL.
func (r *Registry) remove(k presence.Key) {
	delete(r.m, k)
	delete(r.ttls, k)
}

// New returns an empty Registry limited to max consumers; max <= 0 means no
// limit.
func New(max int) *Registry {
	return &Registry{m: make(map[presence.Key]*entry), max: max}
}

// NewSized is New(0) with the map presized for n consumers.
func NewSized(n int) *Registry {
	return &Registry{m: make(map[presence.Key]*entry, n)}
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
// step is presence.DefaultMaxClockStep. A refresh is one lookup; only a
// registration looks the key up twice.
func (r *Registry) Heartbeat(k presence.Key, leases uint32, now time.Time) error {
	return r.beat(k, leases, 0, now)
}

// HeartbeatWithTTL records a heartbeat declaring ttl; see
// presence.Registry.HeartbeatWithTTL.
func (r *Registry) HeartbeatWithTTL(k presence.Key, leases uint32, ttl time.Duration, now time.Time) error {
	return r.beat(k, leases, ttl, now)
}

func (r *Registry) beat(k presence.Key, leases uint32, ttl time.Duration, now time.Time) error {
	if now.IsZero() {
		return presence.ErrZeroTime
	}
	ns := nanotime.FromTime(now)
	r.mu.Lock()
	ttl = r.bound(ttl)
	if e := r.m[k]; e != nil {
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
			if ttl != 0 {
				r.declareTTL(k, ttl)
			}
		}
		r.mu.Unlock()
		return nil
	}
	err := r.insert(k, leases, ns)
	if err == nil && ttl != 0 {
		r.declareTTL(k, ttl)
	}
	r.mu.Unlock()
	return err
}

// insert registers k; r.mu is held.
func (r *Registry) insert(k presence.Key, leases uint32, ns int64) error {
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
	r.m[clone(k)] = &entry{registered: ns, hb: ns, leases: leases, active: ns, hasActive: leases > 0}
	return nil
}

// tooFar reports whether later is after earlier by more than
// presence.DefaultMaxClockStep: a step of the clock, not a reordering. The
// difference of two int64s that are in order is exact as a uint64.
func tooFar(later, earlier int64) bool {
	return later > earlier && uint64(later)-uint64(earlier) > uint64(presence.DefaultMaxClockStep)
}

// Handle is a key-bound heartbeat: a keyed refresh, with no fast path of
// its own.
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

// HeartbeatWithTTL is Registry.HeartbeatWithTTL for the handle's key.
func (h *Handle) HeartbeatWithTTL(leases uint32, ttl time.Duration, now time.Time) error {
	return h.r.HeartbeatWithTTL(h.k, leases, ttl, now)
}

// Key returns the handle's key.
func (h *Handle) Key() presence.Key { return h.k }

// Deregister removes k and reports whether it was present.
func (r *Registry) Deregister(k presence.Key) bool {
	r.mu.Lock()
	_, ok := r.m[k]
	r.remove(k)
	r.mu.Unlock()
	return ok
}

// row is e's row at ns, for a consumer that declared TTL declared (0: none)
// read with ttl.
func (e *entry) row(k presence.Key, ns int64, ttl, declared time.Duration) presence.Consumer {
	age := nanotime.Age(ns, e.hb)
	if declared != 0 {
		ttl = declared
	}
	return presence.Consumer{
		Key:           k,
		RegisteredAt:  nanotime.ToTime(e.registered),
		LastHeartbeat: nanotime.ToTime(e.hb),
		LastActive:    e.lastActive(),
		Age:           age,
		Leases:        e.leases,
		State:         presence.Classify(age, ttl),
		TTL:           declared,
	}
}

func byKey(a, b presence.Consumer) int { return presence.CompareKeys(a.Key, b.Key) }

// Snapshot returns every consumer in key order, built and sorted under the
// lock, as the seed does.
func (r *Registry) Snapshot(now time.Time, ttl time.Duration) []presence.Consumer {
	return r.filter(now, ttl, nil)
}

// filter returns, sorted, the rows whose key keep accepts (keep nil: all),
// built and sorted under the lock.
func (r *Registry) filter(now time.Time, ttl time.Duration, keep func(presence.Key) bool) []presence.Consumer {
	ns := nanotime.FromTime(now)
	r.mu.Lock()
	n := len(r.m)
	if keep != nil {
		n = 0
	}
	out := make([]presence.Consumer, 0, n)
	for k, e := range r.m {
		if keep == nil || keep(k) {
			out = append(out, e.row(k, ns, ttl, r.ttls[k]))
		}
	}
	slices.SortFunc(out, byKey)
	r.mu.Unlock()
	return out
}

// state classifies e at ns under ttl.
func (e *entry) state(ns int64, ttl time.Duration) presence.State {
	return presence.Classify(nanotime.Age(ns, e.hb), ttl)
}

// CountActiveByGroup counts Active consumers per group in one pass under
// the lock.
func (r *Registry) CountActiveByGroup(now time.Time, ttl time.Duration) map[presence.GroupKey]int {
	ns := nanotime.FromTime(now)
	out := make(map[presence.GroupKey]int)
	r.mu.Lock()
	for k, e := range r.m {
		if e.state(ns, r.judged(k, ttl)) == presence.Active {
			out[presence.GroupKey{Queue: k.Queue, Group: k.Group}]++
		}
	}
	r.mu.Unlock()
	return out
}

// PruneExpired removes every Expired consumer, and every one whose
// heartbeat is further ahead of now than the clock step, and returns how
// many.
func (r *Registry) PruneExpired(now time.Time, ttl time.Duration) int {
	ns := nanotime.FromTime(now)
	r.mu.Lock()
	n := 0
	for k, e := range r.m {
		if e.state(ns, r.judged(k, ttl)) == presence.Expired || tooFar(e.hb, ns) {
			r.remove(k)
			n++
		}
	}
	r.mu.Unlock()
	return n
}

// Len returns the number of consumers.
func (r *Registry) Len() int {
	r.mu.Lock()
	n := len(r.m)
	r.mu.Unlock()
	return n
}

// Lookup returns k's row.
func (r *Registry) Lookup(k presence.Key, now time.Time, ttl time.Duration) (presence.Consumer, bool) {
	ns := nanotime.FromTime(now)
	r.mu.Lock()
	e := r.m[k]
	var c presence.Consumer
	if e != nil {
		c = e.row(k, ns, ttl, r.ttls[k])
	}
	r.mu.Unlock()
	return c, e != nil
}

// SnapshotGroup returns the rows of group g, in key order.
func (r *Registry) SnapshotGroup(g presence.GroupKey, now time.Time, ttl time.Duration) []presence.Consumer {
	return r.filter(now, ttl, func(x presence.Key) bool { return x.Queue == g.Queue && x.Group == g.Group })
}

// SnapshotQueue returns the rows of queue q, in key order.
func (r *Registry) SnapshotQueue(q string, now time.Time, ttl time.Duration) []presence.Consumer {
	return r.filter(now, ttl, func(x presence.Key) bool { return x.Queue == q })
}

// Stats counts the consumers by state.
func (r *Registry) Stats(now time.Time, ttl time.Duration) presence.Counts {
	ns := nanotime.FromTime(now)
	var st presence.Counts
	r.mu.Lock()
	for k, e := range r.m {
		st.Add(e.state(ns, r.judged(k, ttl)))
	}
	r.mu.Unlock()
	return st
}

// CountByGroup counts the consumers by group and state.
func (r *Registry) CountByGroup(now time.Time, ttl time.Duration) map[presence.GroupKey]presence.Counts {
	ns := nanotime.FromTime(now)
	out := map[presence.GroupKey]presence.Counts{}
	r.mu.Lock()
	for k, e := range r.m {
		g := presence.GroupKey{Queue: k.Queue, Group: k.Group}
		n := out[g]
		n.Add(e.state(ns, r.judged(k, ttl)))
		out[g] = n
	}
	r.mu.Unlock()
	return out
}
