// Package syncmapreg is the registry's design on a single sync.Map instead
// of sharded xsync maps: the same entries, the same retire-then-unlink
// removal, but boxed keys and the standard library's map. It exists to be
// benchmarked next to the registry.
package syncmapreg

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/internal/entry"
	"github.com/seed351623e9/presence/internal/nanotime"
)

// Registry is a presence registry on a sync.Map.
type Registry struct {
	m sync.Map // presence.Key -> *entry.Entry
	n atomic.Int64
}

// New returns an empty Registry.
func New() *Registry { return &Registry{} }

// Heartbeat records a heartbeat; see presence.Registry.Heartbeat.
func (r *Registry) Heartbeat(k presence.Key, leases uint32, now time.Time) error {
	ns := nanotime.FromTime(now)
	if v, ok := r.m.Load(k); ok && v.(*entry.Entry).Refresh(ns, leases) {
		return nil
	}
	fresh := entry.New(k.Queue, k.Group, k.Consumer, ns, leases)
	q, g, c := fresh.Key()
	own := presence.Key{Queue: q, Group: g, Consumer: c}
	for {
		v, loaded := r.m.LoadOrStore(own, fresh)
		if !loaded {
			r.n.Add(1)
			return nil
		}
		cur := v.(*entry.Entry)
		if cur.Refresh(ns, leases) {
			return nil
		}
		if r.m.CompareAndSwap(own, cur, fresh) {
			r.n.Add(1)
			return nil
		}
	}
}

// Deregister removes k and reports whether it was present.
func (r *Registry) Deregister(k presence.Key) bool {
	v, ok := r.m.Load(k)
	if !ok {
		return false
	}
	e := v.(*entry.Entry)
	if !e.Retire() {
		return false
	}
	r.n.Add(-1)
	r.m.CompareAndDelete(k, e)
	return true
}

func (r *Registry) each(now time.Time, ttl time.Duration, f func(k presence.Key, e *entry.Entry, hb int64, st presence.State)) {
	ns := nanotime.FromTime(now)
	r.m.Range(func(key, value any) bool {
		e := value.(*entry.Entry)
		hb := e.HB()
		if hb == nanotime.None {
			return true
		}
		f(key.(presence.Key), e, hb, presence.Classify(nanotime.Age(ns, hb), ttl))
		return true
	})
}

// Snapshot returns every consumer in key order.
func (r *Registry) Snapshot(now time.Time, ttl time.Duration) []presence.Consumer {
	ns := nanotime.FromTime(now)
	out := make([]presence.Consumer, 0, r.Len())
	r.each(now, ttl, func(k presence.Key, e *entry.Entry, hb int64, st presence.State) {
		out = append(out, presence.Consumer{
			Key: k, RegisteredAt: nanotime.ToTime(e.Registered()), LastHeartbeat: nanotime.ToTime(hb),
			LastActive: e.ActiveTime(),
			Age:        nanotime.Age(ns, hb), Leases: e.Leases(), State: st,
		})
	})
	slices.SortFunc(out, func(a, b presence.Consumer) int { return presence.CompareKeys(a.Key, b.Key) })
	return out
}

// CountActiveByGroup counts Active consumers per group.
func (r *Registry) CountActiveByGroup(now time.Time, ttl time.Duration) map[presence.GroupKey]int {
	out := make(map[presence.GroupKey]int)
	r.each(now, ttl, func(k presence.Key, _ *entry.Entry, _ int64, st presence.State) {
		if st == presence.Active {
			out[presence.GroupKey{Queue: k.Queue, Group: k.Group}]++
		}
	})
	return out
}

// PruneExpired removes every Expired consumer and returns how many.
func (r *Registry) PruneExpired(now time.Time, ttl time.Duration) int {
	n := 0
	r.each(now, ttl, func(k presence.Key, e *entry.Entry, hb int64, st presence.State) {
		if st == presence.Expired && e.RetireIf(hb) {
			r.n.Add(-1)
			r.m.CompareAndDelete(k, e)
			n++
		}
	})
	return n
}

// Len returns the number of consumers.
func (r *Registry) Len() int { return int(r.n.Load()) }
