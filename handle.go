package presence

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/seed351623e9/presence/internal/entry"
	"github.com/seed351623e9/presence/internal/nanotime"
)

// Handle is a consumer's heartbeat fast path, for a broker that holds one per
// connection. It is bound to one key and caches that consumer's entry, so
// that while the consumer stays registered Heartbeat does no hashing and no
// map lookup: a few atomic operations on the consumer's own words.
//
// A Handle is safe for concurrent use. It stays valid for the life of its
// Registry: if the consumer is pruned or deregistered, the next Heartbeat
// registers it again.
type Handle struct {
	// e and r come first: the fast path reads only them, and in the first
	// 16 bytes of the object they share one cache line.
	e atomic.Pointer[entry.Entry]
	r *Registry
	s *shard
	h uint64
	k Key // copies of the caller's strings, in one buffer
}

// Handle returns a Handle for consumer k. It registers nothing: the consumer
// appears with the Handle's first Heartbeat, or is already present if it
// beat by key before. Handle copies k's strings, hashes k once and looks it
// up once.
func (r *Registry) Handle(k Key) *Handle {
	var b strings.Builder // one allocation for all three strings
	b.Grow(len(k.Queue) + len(k.Group) + len(k.Consumer))
	b.WriteString(k.Queue)
	b.WriteString(k.Group)
	b.WriteString(k.Consumer)
	buf := b.String()
	q, g := len(k.Queue), len(k.Group)
	own := Key{Queue: buf[:q], Group: buf[q : q+g], Consumer: buf[q+g:]}
	sl, ok := r.lookup(&own)
	hd := &Handle{r: r, s: sl.s, h: sl.h, k: own}
	if ok {
		hd.e.Store(sl.e)
	}
	return hd
}

// Key returns the key the Handle is bound to. A nil Handle returns the zero
// Key.
func (h *Handle) Key() Key {
	if h == nil {
		return Key{}
	}
	return h.k
}

// Heartbeat is Registry.Heartbeat for the Handle's key, with the same rules
// and guarantees. While the consumer is registered it takes no lock, does no
// map lookup and allocates nothing. On a nil Handle it returns ErrNilHandle.
func (h *Handle) Heartbeat(leases uint32, now time.Time) error {
	if h == nil || h.r == nil {
		return ErrNilHandle
	}
	ns := nanotime.FromTime(now)
	if ns == nanotime.Min && now.IsZero() {
		return ErrZeroTime
	}
	if e := h.e.Load(); e != nil {
		if o := e.Beat(ns, leases, h.r.step); o != entry.Retired {
			h.r.beaten(o)
			return nil
		}
	}
	return h.register(leases, 0, ns)
}

// HeartbeatWithTTL is Registry.HeartbeatWithTTL for the Handle's key: the
// consumer declares heartbeat budget ttl (clamped to WithTTLBounds; ttl <= 0
// declares nothing). While the consumer is registered, a beat that
// re-declares the budget it has costs Heartbeat's few atomic operations plus
// one load. On a nil Handle it returns ErrNilHandle.
func (h *Handle) HeartbeatWithTTL(leases uint32, ttl time.Duration, now time.Time) error {
	if h == nil || h.r == nil {
		return ErrNilHandle
	}
	ns := nanotime.FromTime(now)
	if ns == nanotime.Min && now.IsZero() {
		return ErrZeroTime
	}
	d := h.r.declare(ttl)
	if e := h.e.Load(); e != nil {
		if o := e.BeatTTL(ns, leases, d, h.r.step); o != entry.Retired {
			h.r.beaten(o)
			return nil
		}
	}
	return h.register(leases, d, ns)
}

// register is the slow path of the Handle's heartbeats: the consumer is
// absent or its cached entry retired; it registers the consumer and caches
// the live entry.
func (h *Handle) register(leases uint32, ttl uint32, now int64) error {
	e, err := h.r.register(h.s, h.h, &h.k, leases, ttl, now)
	if err != nil {
		return err
	}
	h.e.Store(e)
	return nil
}
