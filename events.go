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
type Subscription struct {
	// C delivers the events, in the order each emitting goroutine emitted
	// them. It is closed by Close.
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
// read from C. Close is idempotent.
func (s *Subscription) Close() {
	s.ev.remove(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.c)
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

// observe records the state a PruneExpired pass found a live entry in, and
// emits Stale or Revived when it differs from the previous pass's.
func (r *Registry) observe(k Key, e *entry.Entry, st State, now int64) {
	switch st {
	case Stale:
		if e.SetFlag(entry.FlagStale, true) {
			r.events.emit(EventStale, k, now)
		}
	case Active:
		if e.Flags()&entry.FlagStale != 0 && e.SetFlag(entry.FlagStale, false) {
			r.events.emit(EventRevived, k, now)
		}
	}
}
