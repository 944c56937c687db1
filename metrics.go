package presence

import "github.com/puzpuzpuz/xsync/v3"

// Counters are a registry's running totals, for metrics. They are kept only
// by a registry created WithCounters, on striped counters (xsync.Counter),
// so that counting heartbeats adds no single contended word to the hot path.
type Counters struct {
	// Heartbeats counts every heartbeat call that returned nil, by key or
	// by handle, including stale ones that changed nothing.
	Heartbeats int64
	// Registrations counts consumers registered (and registered again),
	// restores from checkpoints and mirrors included.
	Registrations int64
	// Expired and Left count consumers removed by PruneExpired and by
	// Deregister.
	Expired, Left int64
	// Rejected counts registrations refused by a limit.
	Rejected int64
	// EventsDropped counts events dropped because a subscriber's buffer
	// was full, over all subscriptions.
	EventsDropped int64
	// ClockSteps counts times taken as clock errors (see
	// WithMaxClockStep): heartbeats that replaced a stored time more than
	// the clock step ahead of them, consumers that PruneExpired removed
	// because their heartbeat was that far ahead of its now, and rows that
	// ReadFromAt and MergeAt refused for the same reason. Like
	// EventsDropped it is kept with or without WithCounters.
	ClockSteps int64
}

type counters struct {
	heartbeats, registrations, expired, left, rejected *xsync.Counter
}

// WithCounters makes the registry keep Counters. Without it the hot path
// does not count, and Counters returns zeros except EventsDropped.
func WithCounters() Option {
	return func(c *config) { c.counters = true }
}

func newCounters() *counters {
	return &counters{
		heartbeats: xsync.NewCounter(), registrations: xsync.NewCounter(),
		expired: xsync.NewCounter(), left: xsync.NewCounter(), rejected: xsync.NewCounter(),
	}
}

// Counters returns the registry's totals so far. Each is summed over its
// stripes; the set is not a consistent cut.
func (r *Registry) Counters() Counters {
	r.mustBeMade()
	c := Counters{EventsDropped: r.events.dropped.Value(), ClockSteps: r.clockSteps.Load()}
	if r.ctr != nil {
		c.Heartbeats = r.ctr.heartbeats.Value()
		c.Registrations = r.ctr.registrations.Value()
		c.Expired = r.ctr.expired.Value()
		c.Left = r.ctr.left.Value()
		c.Rejected = r.ctr.rejected.Value()
	}
	return c
}
