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
	e, err := h.r.register(h.s, h.h, &h.k, leases, ns)
	if err != nil {
		return err
	}
	h.e.Store(e)
	return nil
}
