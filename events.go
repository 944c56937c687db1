package presence

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/seed351623e9/presence/internal/entry"
	"github.com/seed351623e9/presence/internal/nanotime"
)

// EventKind is what happened to a consumer.
type EventKind uint8

// The transitions a Subscription reports, and exactly when each is emitted.
//
// Heartbeats never classify: a refresh does no more than store times. Stale
// and Revived are therefore detected by PruneExpired (and so by a Sweeper),
// which compares each consumer's state at its now with the state it saw on
// its previous pass. A consumer that goes stale and comes back between two
// passes emits nothing; one that goes from active to expired between two
// passes emits Expired without Stale.
const (
	// EventJoined: the heartbeat that registered the consumer, or
	// registered it again after it was removed. At is that heartbeat's
	// time.
	EventJoined EventKind = iota + 1
	// EventStale: a PruneExpired pass found the consumer Stale and the
	// previous pass that saw it did not. At is the pass's now.
	EventStale
	// EventRevived: a PruneExpired pass found Active a consumer that the
	// previous pass saw Stale. At is the pass's now.
	EventRevived
	// EventExpired: PruneExpired removed the consumer. At is its now.
	EventExpired
	// EventLeft: Deregister removed the consumer. At is the zero Time,
	// since Deregister takes no time.
	EventLeft
)

var eventNames = [...]string{EventJoined: "joined", EventStale: "stale", EventRevived: "revived", EventExpired: "expired", EventLeft: "left"}

// String returns "joined", "stale", "revived", "expired" or "left".
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one transition of one consumer.
type Event struct {
	Kind EventKind
	Key  Key
	At   time.Time
}

// Subscription receives a registry's events on C until Close. Delivery never
// blocks the registry: an event that finds C's buffer full is dropped and
// counted by Dropped.
//
// Ordering: the events of one consumer arrive in the order the registry
// applied them, whichever goroutines caused them, because each is emitted
// under the lock of that consumer's map bucket: Joined, then any Stale and
// Revived, then Expired or Left, then Joined again if it comes back. So a
// subscriber can keep the set of consumers from the events alone, adding on
// Joined and removing on Expired and Left (see the example), as long as
// Dropped stays 0; after a drop it must start again from a Snapshot. Events
// of different consumers may arrive in any order relative to each other.
type Subscription struct {
	// C delivers the events. It is closed by Close.
	C <-chan Event

	c       chan Event
	mu      sync.RWMutex // guards c against a send after close
	closed  bool
	dropped atomic.Uint64
	ev      *events
}

// DefaultEventBuffer is the buffer of a Subscription made with buffer <= 0.
const DefaultEventBuffer = 1024

// Subscribe returns a Subscription whose channel buffers up to buffer events
// (DefaultEventBuffer if buffer <= 0). With no subscriber, emitting an event
// costs one atomic load; a refresh emits none in any case.
func (r *Registry) Subscribe(buffer int) *Subscription {
	r.mustBeMade()
	if buffer <= 0 {
		buffer = DefaultEventBuffer
	}
	c := make(chan Event, buffer)
	s := &Subscription{C: c, c: c, ev: &r.events}
	r.events.add(s)
	return s
}

// Dropped returns how many events this subscription has dropped because
// its buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes and closes C. Events buffered before Close can still be
// read from C. Close is idempotent, and does nothing on a zero or nil
// Subscription.
func (s *Subscription) Close() {
	if s == nil {
		return
	}
	if s.ev != nil {
		s.ev.remove(s)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		if s.c != nil {
			close(s.c)
		}
	}
}

func (s *Subscription) send(e Event, dropped *xsync.Counter) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	select {
	case s.c <- e:
	default:
		s.dropped.Add(1)
		dropped.Inc()
	}
}

// events is a registry's subscriber list, copied on write.
type events struct {
	mu      sync.Mutex // serialises writers
	subs    atomic.Pointer[[]*Subscription]
	dropped *xsync.Counter
}

func (ev *events) add(s *Subscription) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var next []*Subscription
	if cur := ev.subs.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, s)
	ev.subs.Store(&next)
}

func (ev *events) remove(s *Subscription) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	cur := ev.subs.Load()
	if cur == nil {
		return
	}
	var next []*Subscription
	for _, x := range *cur {
		if x != s {
			next = append(next, x)
		}
	}
	ev.subs.Store(&next)
}

// any reports whether there is a subscriber.
func (ev *events) any() bool {
	subs := ev.subs.Load()
	return subs != nil && len(*subs) > 0
}

func (ev *events) emit(kind EventKind, k Key, at int64) {
	subs := ev.subs.Load()
	if subs == nil || len(*subs) == 0 {
		return
	}
	e := Event{Kind: kind, Key: k}
	if at != nanotime.None {
		e.At = nanotime.ToTime(at)
	}
	for _, s := range *subs {
		s.send(e, ev.dropped)
	}
}

// observe records the state a PruneExpired pass found live entry e in, and
// emits Stale or Revived when it differs from the previous pass's. The event
// is emitted under the bucket lock of e's key, and only if e is still live
// and the map's entry for it, so that it takes its place among the key's
// Joined, Expired and Left events. e's key is hashed only then: a pass that
// emits nothing reads each entry and nothing else.
func (r *Registry) observe(e *entry.Entry, st State, now int64) {
	var kind EventKind
	switch {
	case st == Stale && e.SetFlag(entry.FlagStale, true):
		kind = EventStale
	case st == Active && e.Flags()&entry.FlagStale != 0 && e.SetFlag(entry.FlagStale, false):
		kind = EventRevived
	default:
		return
	}
	if !r.events.any() {
		return
	}
	s, mk := r.slotOf(e)
	s.compute(&mk, func(cur *entry.Entry, loaded bool) (*entry.Entry, bool) {
		if loaded && cur == e && e.Live() {
			r.events.emit(kind, mk.k, now)
		}
		return cur, !loaded
	})
}
