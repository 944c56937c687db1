package presence

import (
	"context"
	"errors"
	"time"
)

// Sweeper runs PruneExpired on a timer, so that dead consumers leave the
// registry and Stale, Revived and Expired events are emitted without the
// broker calling anything. Configure its fields, then call Run; a Sweeper
// must not be changed while it runs.
type Sweeper struct {
	// Registry is the registry to sweep. Required.
	Registry *Registry
	// TTL is the heartbeat budget the sweeps classify with the consumers
	// that declared none; zero or negative means DefaultTTL. A consumer
	// that declared its own (Registry.HeartbeatWithTTL) is judged by that.
	TTL time.Duration
	// Interval is the time between sweeps. Zero or negative means half the
	// shortest TTL in play: TTL, or the shortest TTL that a registered
	// consumer has declared, if shorter (at least 1 ms). So a consumer is
	// removed at most half its own TTL after it expires, and its Stale
	// event comes as late. The sweeper re-reads the shortest declared TTL
	// after every sweep: it speeds up when a consumer declares a shorter
	// one, and slows down again after the sweep that finds the consumers
	// that declared it gone. A fixed Interval is used as it is.
	Interval time.Duration
	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// Ticks, if set, replaces the internal ticker: each value received
	// starts a sweep, and closing it ends Run, which then returns nil.
	// Tests drive sweeps with it, without sleeping.
	Ticks <-chan time.Time
	// OnSweep, if set, is called after every sweep with its now and the
	// number of consumers it removed.
	OnSweep func(now time.Time, pruned int)
}

// ErrNoRegistry is returned by Sweeper.Run without a Registry.
var ErrNoRegistry = errors.New("presence: sweeper has no registry")

// Run sweeps until ctx is done, then returns ctx's error, or until Ticks is
// closed, then returns nil. It starts no
// goroutine: the sweeps run on the caller's, and a sweep in progress when
// ctx is done completes before Run returns.
func (s *Sweeper) Run(ctx context.Context) error {
	if s.Registry == nil {
		return ErrNoRegistry
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	now := s.Now
	if now == nil {
		now = time.Now
	}
	auto := s.Interval <= 0
	every := s.Interval
	if auto {
		every = s.Registry.sweepEvery(ttl)
	}
	ticks, stop := tickerOr(s.Ticks, every)
	defer func() { stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-ticks:
			if !ok {
				return nil // Ticks was closed: no more sweeps
			}
			at := now()
			n := s.Registry.PruneExpired(at, ttl)
			if s.OnSweep != nil {
				s.OnSweep(at, n)
			}
			if auto {
				if d := s.Registry.sweepEvery(ttl); d != every {
					every = d
					stop()
					ticks, stop = tickerOr(s.Ticks, every)
				}
			}
		}
	}
}

// sweepEvery returns the default sweep interval for a Sweeper whose TTL is
// ttl: half the shorter of ttl and the shortest declared TTL, at least 1 ms.
func (r *Registry) sweepEvery(ttl time.Duration) time.Duration {
	if d := time.Duration(r.shortest.Load()); d > 0 {
		ttl = min(ttl, d)
	}
	return max(ttl/2, time.Millisecond)
}

// tickerOr returns ticks if it is set, else the channel of a new ticker
// firing every every; stop releases the ticker.
func tickerOr(ticks <-chan time.Time, every time.Duration) (c <-chan time.Time, stop func()) {
	if ticks != nil {
		return ticks, func() {}
	}
	t := time.NewTicker(every)
	return t.C, t.Stop
}
